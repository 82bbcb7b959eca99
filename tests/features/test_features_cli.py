"""The `features` command line, on real stores, with exact messages and exit codes."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from emocache.errors import ExitCode
from features import open_store
from features.cli import cli
from features.provenance import Provenance

PROV = Provenance(encoder="test:cli", manifest_hash="d" * 64, dtype="float16", dim=4, host="h", created="2026-01-01T00:00:00+00:00")


@pytest.fixture(params=[".h5", ".zarr"])
def store(request, tmp_path) -> str:
    path = str(tmp_path / f"s{request.param}")
    with open_store(path, "a") as s:
        with s.writer("audio", PROV, frame_rate=50.0) as w:
            for i in range(3):
                w.write(f"u{i}", np.full((i + 2, 4), i, dtype=np.float32))
            w.fail("u9", "load", "cannot decode u9.wav")
        with s.writer("text", PROV) as w:
            w.write("u0", np.ones((5, 4)))
    return path


def invoke(*args: str):
    return CliRunner().invoke(cli, list(args))


def test_ls(store):
    result = invoke("ls", store)
    assert result.exit_code == 0, result.output
    assert result.output == (
        "audio\t3 utterances\t4 dims\tfloat16\t1 failed\n"
        "text\t1 utterances\t4 dims\tfloat16\t0 failed\n"
    )


def test_info_json_and_text(store):
    result = invoke("info", "--json", store)
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    audio = data["sets"]["audio"]
    assert (audio["count"], audio["dim"], audio["failed"], audio["layers"], audio["frame_rate"]) == (3, 4, 1, None, 50.0)
    assert audio["nbytes"] == (2 + 3 + 4) * 4 * 2
    assert audio["provenance"] == PROV.to_json() and audio["identity"] == PROV.identity()
    assert audio["failures"] == [{"utt_id": "u9", "stage": "load", "error": "cannot decode u9.wav", "time": audio["failures"][0]["time"]}]
    assert data["sets"]["text"]["frame_rate"] is None
    assert (audio["finished"], audio["parts"]) == (True, [])
    text = invoke("info", store).output
    assert "    u9\tload\t" in text and text.endswith("  failed       0\n")  # the last set, text, has none
    assert f"  identity     {PROV.identity()}" in text
    assert "  finished     yes\n  parts        -\n" in text


def test_verify_ok_then_names_the_corrupt_utterance(store):
    result = invoke("verify", store)
    assert result.exit_code == 0, result.output
    assert "ok: 4 utterances in 2 sets match their checksums" in result.output
    # Damage u1's frames (rows 2..4 of audio, value 1.0 = 0x3c00 in float16) where they lie on disk.
    needle = np.full((3, 4), 1, dtype=np.float16).tobytes()
    # A finished store: HDF5 is the one file (audio's data comes before text's), Zarr a tree.
    files = [Path(store)] if store.endswith(".h5") else [p for p in Path(store).rglob("*") if p.is_file() and "audio" in str(p)]
    hits = [p for p in files if needle in p.read_bytes()]
    assert len(hits) == 1
    blob = bytearray(hits[0].read_bytes())
    blob[blob.index(needle) + 5] ^= 0xFF
    hits[0].write_bytes(bytes(blob))
    result = invoke("verify", store)
    assert result.exit_code == ExitCode.INCOMPLETE
    assert result.stdout.startswith("audio\tu1\tcorrupt\tsha256 ") and result.stdout.count("\n") == 1
    assert result.stderr.splitlines()[-1] == f"FAILED: 1 problems in {store}"
    report = json.loads(invoke("verify", "--json", store).stdout)
    assert [(p["set"], p["utt_id"], p["kind"]) for p in report["problems"]] == [("audio", "u1", "corrupt")]


def test_convert_and_merge(store, tmp_path):
    other = str(tmp_path / ("out.zarr" if store.endswith(".h5") else "out.h5"))
    result = invoke("convert", store, other)
    assert result.exit_code == 0, result.output
    assert result.stdout == "audio: 3 utterances copied, 1 failures carried\ntext: 1 utterances copied, 0 failures carried\n"
    result = invoke("merge", other, store, "--set", "audio")
    assert result.exit_code == 0, result.output
    assert result.stdout == "audio: 0 utterances copied, 3 already there, 0 failures carried\n"
    result = invoke("convert", store, other)
    assert result.exit_code == 1
    assert result.stderr.splitlines()[-1] == f"Error: {other} already exists; convert writes a new store (use `features merge` to add to one)"


def test_merge_refuses_differing_identity(store, tmp_path):
    other = str(tmp_path / "other.zarr")
    different = Provenance(encoder="test:else", manifest_hash="d" * 64, dtype="float16", dim=4)
    with open_store(other, "a") as s, s.writer("audio", different) as w:
        w.write("z", np.ones((1, 4)))
    result = invoke("merge", store, other)
    assert result.exit_code == 1
    assert result.stderr.splitlines()[-1] == (
        f"Error: cannot merge set 'audio': {other} has identity {different.identity()} but {store} has identity "
        f"{PROV.identity()}; they were made differently (see `features info`)"
    )


def missing(path) -> str:
    kind = "hdf5" if str(path).endswith(".h5") else "zarr"
    return (
        f"Error: no {kind} feature store at {path}: check the path, or create it with `extract run --store {path}` "
        "(from Python: open_store(path, mode='a'))\n"
    )


def test_missing_store_and_unknown_suffix(tmp_path):
    result = invoke("info", str(tmp_path / "none.zarr"))
    assert result.exit_code == 1
    assert result.output == missing(tmp_path / "none.zarr")
    result = invoke("ls", str(tmp_path / "x.npz"))
    assert result.exit_code == 1
    assert "cannot tell the store format of" in result.output and ".zarr (zarr)" in result.output


@pytest.mark.parametrize("args", [["verify", "NOPE"], ["convert", "NOPE", "OUT"], ["merge", "OUT", "NOPE"]])
def test_a_missing_store_is_reported_alone_without_a_progress_bar(tmp_path, args):
    places = {"NOPE": str(tmp_path / "nope.h5"), "OUT": str(tmp_path / "out.zarr")}
    result = invoke(*(places.get(a, a) for a in args))
    assert (result.exit_code, result.output) == (1, missing(places["NOPE"]))


def test_formats_lists_the_registry():
    result = invoke("formats")
    assert result.output == "hdf5\t.h5 .hdf5\nzarr\t.zarr\n"


def test_rm_deletes_a_set_and_names_what_it_refuses(store):
    result = invoke("rm", store, "text")
    assert (result.exit_code, result.output) == (0, f"deleted set 'text' from {store}\n")
    assert invoke("ls", store).output == "audio\t3 utterances\t4 dims\tfloat16\t1 failed\n"
    result = invoke("rm", store, "text")
    assert (result.exit_code, result.output) == (1, f"Error: no feature set 'text' in {store}; sets there: ['audio']\n")
    with open_store(store, "a") as s, s.writer("audio", PROV, part="w1"):
        lock = s.backend.lock_path("audio", "w1")
        record = json.loads(lock.read_text())
        result = invoke("rm", store, "audio")
    assert result.exit_code == 1
    assert result.output == (
        f"Error: set 'audio' part 'w1' of {store} is locked by another writer: host {record['host']}, pid {record['pid']}, "
        f"since {record['since']} (lock file {lock}). Wait for it to finish, or give this writer another part.\n"
    )
    with open_store(store) as s:  # refused: nothing was deleted
        assert s.set_names() == ["audio"] and s["audio"].ids == ["u0", "u1", "u2"]


@pytest.mark.parametrize("command, said", [("compact", "finished"), ("consolidate", "consolidated")])
@pytest.mark.parametrize("suffix", [".h5", ".zarr"])
def test_compact_and_its_old_name_consolidate_finish_a_store(tmp_path, suffix, command, said):
    path = str(tmp_path / f"s{suffix}")
    with open_store(path, "a") as s:
        for part in ("w0", "w1"):  # parallel parts, as a Dask run leaves them for one finish
            with s.writer("audio", PROV, frame_rate=50.0, part=part, finish=False) as w:
                w.write(f"{part}-a", np.full((2, 4), 1, dtype=np.float32))
    assert json.loads(invoke("info", "--json", path).stdout)["sets"]["audio"]["parts"] == ["w0", "w1"]
    with open_store(path, "a") as s, s.writer("audio", PROV, part="w2"):
        lock = s.backend.writers_lock_path()
        result = invoke(command, path)
    assert result.exit_code == 1
    assert result.output == (
        f"Error: {path} has writers open (lock file {lock}); run `features compact {path}` once they have closed\n"
    )
    result = invoke(command, path)
    assert (result.exit_code, result.output) == (0, f"{said} {path}\n")
    audio = json.loads(invoke("info", "--json", path).stdout)["sets"]["audio"]
    assert (audio["finished"], audio["parts"], audio["count"]) == (True, [], 2)
    assert sorted(p.name for p in tmp_path.iterdir()) == [Path(path).name]
    assert invoke("verify", path).stdout == "ok: 2 utterances in 1 sets match their checksums\n"
