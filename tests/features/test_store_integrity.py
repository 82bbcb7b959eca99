"""Damage, leftovers and the wrong kind of path: each refused with a StoreError naming the file, nothing lost."""
from __future__ import annotations

import dataclasses
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from emocache.errors import ExitCode
import features
from features import StoreError, open_store
from features.cli import cli
from features.convert import merge
from features.lock import StaleLockWarning
from features.provenance import Provenance
from features.records import SegmentIndex
from features.writer import LAST_SEQ
from manifests import Utterance, write_manifest

PROV = Provenance(encoder="test:integrity", manifest_hash="9" * 64, dtype="float16", dim=4, host="h", created="2026-01-01")
SUFFIXES = [".h5", ".zarr"]


def finished(path: str, ids=("u0", "u1", "u2")) -> None:
    with open_store(path, "a") as store, store.writer("audio", PROV, frame_rate=50.0) as w:
        for i, utt_id in enumerate(ids):
            w.write(utt_id, np.full((i + 1, 4), i, dtype=np.float32))
        w.fail("u9", "load", "cannot decode u9.wav")


def unfinished(path: str) -> None:
    """A store whose writer committed segments and was never closed (as after kill -9)."""
    code = (
        "import sys, os, signal, numpy as np; sys.path.insert(0, %r)\n"
        "import features\n"
        "from features.provenance import Provenance\n"
        "p = Provenance(encoder='test:integrity', manifest_hash='9'*64, dtype='float16', dim=4, host='h', created='2026-01-01')\n"
        "s = features.open_store(%r, 'a'); w = s.writer('audio', p, frame_rate=50.0)\n"
        "w.write('a', np.ones((3, 4))); w.commit(); w.write('b', np.ones((2, 4))); w.commit()\n"
        "os.kill(os.getpid(), 9)\n"
    ) % (str(Path(__file__).resolve().parents[2]), path)
    subprocess.run([sys.executable, "-c", code], check=False)


def set_record(path: str) -> Path:
    return Path(path + ".parts/audio/set.json") if path.endswith(".h5") else Path(path) / "audio" / "zarr.json"


# -- damaged metadata and vanished sets


@pytest.mark.parametrize("suffix", SUFFIXES)
@pytest.mark.parametrize("damage", ["not utf-8", "renamed key", "missing key"])
def test_a_damaged_set_record_is_a_store_error_naming_the_file_and_verify_fails(tmp_path, suffix, damage):
    path = str(tmp_path / f"s{suffix}")
    unfinished(path)  # the set's record is a file of its own until the store is finished
    record = set_record(path)
    data = json.loads(record.read_text())
    if damage == "not utf-8":
        record.write_bytes(record.read_bytes().replace(b"test:integrity", b"test:\xff\xfeegrity"))
    elif damage == "renamed key":  # the case: a set's record vanishing made verify report "ok: 0 in 0 sets"
        record.write_text(json.dumps(data).replace('"attributes"' if suffix == ".zarr" else '"provenance"', '"attributez"', 1))
    else:
        (data["attributes"]["emocache"] if suffix == ".zarr" else data).pop("frame_rate")
        record.write_text(json.dumps(data))
    with open_store(path) as store:
        assert store.set_names() == ["audio"]
        with pytest.raises(StoreError, match=rf"{record}.*damaged"):
            store["audio"]
    result = CliRunner().invoke(cli, ["verify", path])
    assert result.exit_code == ExitCode.INCOMPLETE
    assert result.stdout.startswith("audio\t\tunreadable\t") and "ok:" not in result.output
    result = CliRunner().invoke(cli, ["info", path])
    assert result.exit_code == 1 and str(record) in result.output


@pytest.mark.parametrize("suffix", SUFFIXES)
def test_a_set_whose_record_is_deleted_is_reported_not_skipped(tmp_path, suffix):
    path = str(tmp_path / f"s{suffix}")
    unfinished(path)
    set_record(path).unlink()
    report = features.verify(path)
    assert [(p[0], p[2]) for p in report.problems] == [("audio", "unreadable")] and "missing" in report.problems[0][3]


@pytest.mark.parametrize("suffix", SUFFIXES)
def test_ids_a_store_cannot_hold_are_refused_naming_them(tmp_path, suffix):
    with open_store(str(tmp_path / f"s{suffix}"), "a") as store, store.writer("audio", PROV) as w:
        for bad in ("a\x00b", "tab\there", "\udcff"):
            with pytest.raises(StoreError, match="holds a control character or invalid UTF-8; fix it in the manifest"):
                w.write(bad, np.ones((1, 4)))
        w.write("fine-é", np.ones((1, 4)))
    with open_store(str(tmp_path / f"s{suffix}")) as store:
        assert store["audio"].ids == ["fine-é"]


@pytest.mark.parametrize("suffix", SUFFIXES)
def test_failures_of_ids_a_store_cannot_hold_are_refused_naming_them(tmp_path, suffix):
    with open_store(str(tmp_path / f"s{suffix}"), "a") as store, store.writer("audio", PROV) as w:
        with pytest.raises(StoreError, match=r"set 'audio': utterance ids must be non-empty strings, got 123"):
            w.fail(123, "load", "cannot decode")
        with pytest.raises(StoreError, match="holds a control character or invalid UTF-8; fix it in the manifest"):
            w.fail("a\udcffb", "load", "cannot decode")
        w.fail("fine", "load", "cannot decode")
    with open_store(str(tmp_path / f"s{suffix}")) as store:
        assert [f.utt_id for f in store["audio"].failures()] == ["fine"]


@pytest.mark.parametrize("suffix", SUFFIXES)
def test_names_with_a_trailing_newline_are_refused(tmp_path, suffix):
    assert features.records.check_name("set", "audio") == "audio"
    with pytest.raises(StoreError, match=r"invalid set name 'audio\\n': use 1-128 letters"):
        features.records.check_name("set", "audio\n")
    with open_store(str(tmp_path / f"s{suffix}"), "a") as store:
        with pytest.raises(StoreError, match=r"invalid set name 'audio\\n'"):
            store.writer("audio\n", PROV)
        with pytest.raises(StoreError, match=r"invalid part name 'main\\n'"):
            store.writer("audio", PROV, part="main\n")
        with store.writer("audio", PROV) as w, pytest.raises(StoreError, match=r"invalid count name 'frames\\n'"):
            w.write("u0", np.ones((1, 4)), {"frames\n": 1})
        assert store.set_names() == ["audio"]


@pytest.mark.parametrize("suffix", SUFFIXES)
@pytest.mark.parametrize("setting, message", [
    ({"layers": True}, "layers must be None or a positive int, got True"),
    ({"dim": True}, "provenance.dim must be a positive int, got True"),
    ({"frame_rate": True}, "frame_rate must be None or a positive number of frames per second, got True"),
    ({"frame_rate": "50"}, "frame_rate must be None or a positive number of frames per second, got '50'"),
    ({"frame_rate": float("inf")}, "frame_rate must be None or a positive number of frames per second, got inf"),
])
def test_writer_settings_of_the_wrong_type_are_refused_before_anything_is_written(tmp_path, suffix, setting, message):
    # bool is an int to Python: layers=True used to be recorded, and every later ls, rm or compact called the store damaged.
    path = str(tmp_path / f"s{suffix}")
    finished(path)
    prov = dataclasses.replace(PROV, dim=setting["dim"]) if "dim" in setting else PROV
    with open_store(path, "a") as store, pytest.raises(StoreError, match=rf"set 'video': {re.escape(message)}"):
        store.writer("video", prov, **{k: v for k, v in setting.items() if k != "dim"})
    with open_store(path) as store:
        assert store.set_names() == ["audio"]
    result = CliRunner().invoke(cli, ["ls", path])
    assert result.exit_code == 0, result.output
    with open_store(path, "a") as store, store.writer("video", PROV, frame_rate=np.float32(25.0), layers=2) as w:
        w.write("v0", np.ones((2, 1, 4)))
    with open_store(path) as store:
        assert (store["video"].info.frame_rate, store["video"].info.layers) == (25.0, 2)


@pytest.mark.parametrize("suffix", SUFFIXES)
def test_a_vanished_finished_set_is_reported_not_skipped(tmp_path, suffix):
    path = str(tmp_path / f"s{suffix}")
    finished(path)
    if suffix == ".zarr":
        node = Path(path) / "audio" / "zarr.json"
        node.write_text(node.read_text().replace('"attributes"', '"attributez"'))
    else:
        import h5py

        with h5py.File(path, "r+") as f:
            f.move("audio", "hidden")
    report = features.verify(path)
    assert not report.ok and [(p[0], p[2]) for p in report.problems] == [("audio", "unreadable")]
    assert report.checked == {}


@pytest.mark.parametrize("suffix", SUFFIXES)
def test_verify_with_a_manifest_names_its_absent_utterances(tmp_path, suffix):
    path = str(tmp_path / f"s{suffix}")
    finished(path)
    (tmp_path / "a.wav").touch()
    manifest = tmp_path / "m.jsonl"
    write_manifest([Utterance(u, "neu", "1", str(tmp_path / "a.wav")) for u in ("u0", "u1", "u2", "u7", "u9")], manifest)
    result = CliRunner().invoke(cli, ["verify", path, "--manifest", str(manifest)])
    assert result.exit_code == ExitCode.INCOMPLETE
    assert result.stdout.splitlines() == [
        f"audio\tu7\tabsent\tin {manifest} but not in the set (never extracted)",
        f"audio\tu9\tabsent\tin {manifest} but not in the set (failed at load: cannot decode u9.wav)",
    ]
    write_manifest([Utterance(u, "neu", "1", str(tmp_path / "a.wav")) for u in ("u0", "u2")], manifest)
    assert CliRunner().invoke(cli, ["verify", path, "--manifest", str(manifest)]).exit_code == 0


@pytest.mark.filterwarnings("ignore::features.lock.StaleLockWarning")  # the killed writer's lock, taken over
@pytest.mark.parametrize("suffix", SUFFIXES)
def test_a_covers_list_that_would_lose_data_is_refused_not_obeyed(tmp_path, suffix):
    path = str(tmp_path / f"s{suffix}")
    unfinished(path)
    with open_store(path, "a") as store:
        backend = store.backend
        meta = backend.read_set_meta("audio")
        (a,) = [s for s in backend.segments("audio") if s.ids == ("a",)]
        (b,) = [s for s in backend.segments("audio") if s.ids == ("b",)]
        # A well-formed segment (its digest matches) that claims to cover segment a but holds only 'b'.
        index = dataclasses.replace(b.index, covers=(a.seq, b.seq))
        block = np.ones((2, 4), dtype=np.float16)
        backend.write_segment("audio", meta, "main", b.seq + 1, index, [block])
        with pytest.raises(StoreError, match=r"says it covers segment .* but lacks 1 of its utterances \('a'\.\.\.\); refusing to delete"):
            store.writer("audio", PROV)
    with open_store(path) as store:
        segments = store.backend.segments("audio")
        assert sorted(s.seq for s in segments) == [a.seq, b.seq, b.seq + 1], "nothing was deleted"


@pytest.mark.parametrize("suffix", SUFFIXES)
def test_a_part_out_of_segment_numbers_is_refused_not_written_under_a_name_readers_skip(tmp_path, suffix):
    path = str(tmp_path / f"s{suffix}")
    finished(path)
    with open_store(path, "a") as store:
        backend = store.backend
        backend.write_segment("audio", backend.read_set_meta("audio"), "late", LAST_SEQ, SegmentIndex([], [], []), [])
        w = store.writer("audio", PROV, part="late")
        w.write("x", np.ones((1, 4)))
        with pytest.raises(StoreError, match=r"part 'late' of set 'audio' in .* has used every segment number; close its writers and run `features compact"):
            w.close()
    with open_store(path) as store:
        assert store["audio"].ids == ["u0", "u1", "u2"]


# -- leftovers of killed writers


@pytest.mark.parametrize("suffix", SUFFIXES)
def test_a_writer_removes_the_leftovers_of_a_killed_one_and_resumes(tmp_path, suffix):
    path = str(tmp_path / f"s{suffix}")
    unfinished(path)
    dead = json.dumps({"host": os.uname().nodename, "pid": 999999, "since": "2026-01-01T00:00:00+00:00"})
    if suffix == ".zarr":
        root = Path(path)
        leftovers = [root / "zarr.json.0123abcd.partial", root / "audio" / "parts" / "main" / "zarr.json.ffff.partial",
                     root / ".create.lock", root / "audio" / "parts" / "main" / ".tmp-00000009-999999"]
    else:
        parts = Path(path + ".parts")
        leftovers = [tmp_path / ".s.h5.tmp-999999", tmp_path / ".s.h5.create.lock", parts / ".create.lock",
                     parts / "audio" / "main" / ".tmp-00000009-999999.h5"]
    for leftover in leftovers:
        leftover.write_text(dead)
    with pytest.warns(StaleLockWarning, match="taking over a stale lock on set 'audio' part 'main'"):
        store = open_store(path, "a")
        w = store.writer("audio", PROV)
    with store, w:
        assert w.done == {"a", "b"}
        assert not [p for p in leftovers if p.exists()]
        w.write("c", np.zeros((1, 4)))
    assert sorted(p.name for p in tmp_path.iterdir()) == [Path(path).name]
    with open_store(path) as store:
        assert store["audio"].ids == ["a", "b", "c"]
    assert features.verify(path).ok


def test_a_zarr_store_killed_during_creation_resumes(tmp_path):
    path = tmp_path / "new.zarr"
    path.mkdir()
    # What a kill between zarr writing the root's temporary file and renaming it leaves.
    (path / "zarr.json.5d41402abc4b2a76.partial").write_text('{"zarr_format": 3, "node_')
    (path / ".create.lock").write_text("")
    with open_store(str(path), "a") as store, store.writer("audio", PROV) as w:
        w.write("a", np.ones((1, 4)))
    assert sorted(p.name for p in path.iterdir()) == ["audio", "zarr.json"]
    assert features.verify(str(path)).ok


# -- locks and temporaries never follow symlinks


@pytest.mark.parametrize("suffix", SUFFIXES)
def test_a_symlink_planted_as_a_writer_lock_is_refused_and_its_target_untouched(tmp_path, suffix):
    path = str(tmp_path / f"s{suffix}")
    unfinished(path)
    target = tmp_path / "precious.txt"
    target.write_text("keep me")
    with open_store(path, "a") as store:
        lock = store.backend.lock_path("audio", "main")
        lock.unlink(missing_ok=True)
        lock.symlink_to(target)
        with pytest.raises(StoreError, match=rf"{lock} is a symbolic link; refusing to follow it"):
            store.writer("audio", PROV)
    assert target.read_text() == "keep me" and lock.is_symlink()
    lock.unlink()
    fifo = lock
    os.mkfifo(fifo)
    with open_store(path, "a") as store, pytest.raises(StoreError, match="is not a regular file; refusing to use it"):
        store.writer("audio", PROV)
    fifo.unlink()


@pytest.mark.filterwarnings("ignore::features.lock.StaleLockWarning")
@pytest.mark.parametrize("suffix", SUFFIXES)
def test_a_symlink_planted_at_a_temporary_name_is_not_written_through(tmp_path, suffix):
    path = str(tmp_path / f"s{suffix}")
    unfinished(path)  # two segments committed; the next commit takes the number after theirs
    target = tmp_path / "precious"
    target.mkdir() if suffix == ".zarr" else target.write_text("keep me")
    with open_store(path, "a") as store, store.writer("audio", PROV) as w:
        part = store.backend.lock_path("audio", "main").parent
        following = 1 + max(s.seq for s in store.backend.segments("audio"))
        (part / (f".tmp-{following:08d}-{os.getpid()}" + (".h5" if suffix == ".h5" else ""))).symlink_to(target)
        w.write("c", np.ones((2, 4)))
        w.commit()
    assert (not list(target.iterdir())) if suffix == ".zarr" else target.read_text() == "keep me"
    with open_store(path) as store:
        assert store["audio"].ids == ["a", "b", "c"]


# -- store paths of the wrong kind


def test_store_paths_of_the_wrong_kind_name_the_path(tmp_path):
    a_file = tmp_path / "notes.txt"
    a_file.write_text("mine")
    zarr_file = tmp_path / "file.zarr"
    zarr_file.write_text("not a folder")
    folder_h5 = tmp_path / "folder.h5"
    folder_h5.mkdir()
    cases = [
        (str(zarr_file), "r", f"{zarr_file} is a file, not a Zarr folder"),
        (str(zarr_file), "a", f"{zarr_file} is a file, not a Zarr folder"),
        (str(folder_h5), "r", f"{folder_h5} is a folder, not an HDF5 file"),
        (str(folder_h5), "a", f"{folder_h5} is a folder, not an HDF5 file"),
        (str(a_file / "x.h5"), "a", f"{a_file / 'x.h5'}: {a_file} is a file, not a folder"),
        (str(a_file / "sub" / "x.zarr"), "r", f"{a_file / 'sub' / 'x.zarr'}: {a_file} is a file, not a folder"),
    ]
    for location, mode, message in cases:
        with pytest.raises(StoreError) as caught:
            open_store(location, mode)
        assert str(caught.value).startswith(message), (location, mode, str(caught.value))
    assert a_file.read_text() == "mine" and zarr_file.read_text() == "not a folder" and not list(folder_h5.iterdir())
    result = CliRunner().invoke(cli, ["info", str(folder_h5)])
    assert result.exit_code == 1 and result.output.startswith(f"Error: {folder_h5} is a folder, not an HDF5 file")


@pytest.mark.parametrize("suffix", SUFFIXES)
def test_a_read_only_store_opened_for_writing_says_read_only(tmp_path, suffix):
    shelf = tmp_path / "shelf"
    shelf.mkdir()
    path = str(shelf / f"s{suffix}")
    finished(path)
    code = (
        "import sys; sys.path.insert(0, %r)\n"
        "import features\n"
        "try:\n"
        "    features.open_store(%r, 'a')\n"
        "except features.StoreError as e:\n"
        "    print(e)\n"
    ) % (str(Path(__file__).resolve().parents[2]), path)
    if os.geteuid() == 0:  # permission bits do not stop root: a read-only bind mount does
        script = 'mount --bind "$1" "$1" && mount -o remount,bind,ro "$1" && shift && exec "$@"'
        proc = subprocess.run(["unshare", "-m", "sh", "-c", script, "sh", str(shelf), sys.executable, "-c", code],
                              capture_output=True, text=True)
    else:
        subprocess.run(["chmod", "-R", "a-w", str(shelf)], check=True)
        try:
            proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
        finally:
            subprocess.run(["chmod", "-R", "u+w", str(shelf)], check=True)
    assert proc.stdout.startswith("read-only: "), proc.stdout + proc.stderr
    assert str(shelf) in proc.stdout


@pytest.mark.parametrize("suffix", SUFFIXES)
def test_merge_with_a_bad_part_is_refused_before_the_new_store_is_created(tmp_path, suffix):
    source = str(tmp_path / f"src{suffix}")
    finished(source)
    destination = tmp_path / f"dst{suffix}"
    with pytest.raises(StoreError, match=r"invalid part name '\.\./up': use 1-128 letters"):
        merge(str(destination), [source], part="../up")
    result = CliRunner().invoke(cli, ["merge", str(destination), source, "--part", "a/b"])
    assert result.exit_code == 1 and "invalid part name 'a/b'" in result.output
    assert not destination.exists() and sorted(p.name for p in tmp_path.iterdir()) == [Path(source).name]
