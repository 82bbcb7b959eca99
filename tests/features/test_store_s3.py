"""A Zarr store published to S3 reads by ``s3://`` URL like a local one, against a real S3 server
(moto's standalone server on 127.0.0.1, ``conftest.py``) with s3fs as the client; the endpoint comes
through EMOCACHE_STORAGE_OPTIONS, as it would for a lab's MinIO or Ceph. Extracting into S3:
``test_store_s3_write.py``."""
from __future__ import annotations

import json
import os
import socket

import numpy as np
import pytest
from click.testing import CliRunner

from extract.cli import cli as extract_cli
from features import StoreError, open_store
from features.cli import cli as features_cli
from features.upload import PUBLISH_LOCK


def test_zarr_store_reads_from_s3(tmp_path, s3, small_store):
    local = tmp_path / "lab.zarr"
    values = small_store(local)
    s3.fs.put(str(local), f"{s3.name}/lab.zarr", recursive=True)
    url = s3.url("lab.zarr")

    with open_store(url) as remote, open_store(str(local)) as here:
        assert remote.format == "zarr" and remote.set_names() == ["audio", "video"]
        for name in ("audio", "video"):
            r, l = remote[name], here[name]
            assert r.info == l.info and r.ids == l.ids and r.failures() == l.failures()
            assert r.read_all().data.tobytes() == l.read_all().data.tobytes()
            for (set_name, utt_id), array in values.items():
                if set_name == name:
                    assert np.array_equal(r.read(utt_id), array)

    result = CliRunner().invoke(features_cli, ["info", url, "--json"])
    assert result.exit_code == 0, result.output
    local_info = CliRunner().invoke(features_cli, ["info", str(local), "--json"])
    assert json.loads(result.stdout)["sets"] == json.loads(local_info.stdout)["sets"]


def test_a_missing_s3_store_is_a_clear_error(s3):
    with pytest.raises(StoreError, match=rf"^cannot open Zarr store s3://{s3.name}/absent\.zarr: "):
        open_store(s3.url("absent.zarr")).set_names()


def test_extract_locally_then_upload_then_read_from_s3(tmp_path, s3):
    """`extract run` into a path, `features upload` it; a rerun uploads what changed."""
    import soundfile

    root = tmp_path / "corpus"
    root.mkdir()
    rng = np.random.default_rng(0)
    rows = []
    for i in range(6):
        soundfile.write(root / f"u{i}.wav", (0.1 * rng.standard_normal(8000 + 1600 * i)).astype(np.float32), 16000)
        rows.append({"utt_id": f"u{i}", "label": "neu" if i % 2 else "ang", "group": str(1 + i % 2), "audio": f"u{i}.wav"})
    manifest = root / "m.jsonl"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    local = tmp_path / "lab.zarr"
    url = s3.url("lab.zarr")

    runner = CliRunner()
    first = runner.invoke(extract_cli, ["run", "--modality", "audio", "--manifest", str(manifest), "--store", str(local), "--limit", "3"])
    assert first.exit_code == 0, first.output
    up = runner.invoke(features_cli, ["upload", str(local), url, "--json"])
    assert up.exit_code == 0, up.output
    assert json.loads(up.stdout)["removed"] == 0
    assert s3.files("lab.zarr") == s3.local_files(local)
    with open_store(url) as remote:
        assert sorted(remote["audio"].ids) == ["u0", "u1", "u2"]

    second = runner.invoke(extract_cli, ["run", "--modality", "audio", "--manifest", str(manifest), "--store", str(local)])
    assert second.exit_code == 0, second.output
    before = s3.files("lab.zarr")
    up = runner.invoke(features_cli, ["upload", str(local), url])
    assert up.exit_code == 0, up.output
    stale = set(before) - set(s3.local_files(local))
    assert up.stdout.startswith(f"uploaded {len(s3.local_files(local))} files (")
    assert up.stdout.endswith(f"; removed {len(stale)} stale file(s)\n")
    assert s3.files("lab.zarr") == s3.local_files(local)  # segments compacted away locally are gone remotely too
    with open_store(url) as remote, open_store(str(local)) as here:
        assert sorted(remote["audio"].ids) == [f"u{i}" for i in range(6)]
        assert remote["audio"].info == here["audio"].info
        assert remote["audio"].read_all().data.tobytes() == here["audio"].read_all().data.tobytes()


def test_upload_errors_are_messages(tmp_path, s3, small_store):
    runner = CliRunner()
    result = runner.invoke(features_cli, ["upload", str(tmp_path / "none.zarr"), s3.url("x.zarr")])
    assert result.exit_code == 1 and result.stderr.startswith(f"Error: no zarr feature store at {tmp_path / 'none.zarr'}")
    assert not (tmp_path / "none.zarr").exists()
    small_store(tmp_path / "lab.zarr")
    result = runner.invoke(features_cli, ["upload", str(tmp_path / "lab.zarr"), "https://example.org/lab.zarr"])
    assert result.exit_code == 1 and result.stderr == "Error: https://example.org/lab.zarr: stores upload to s3:// URLs only\n"
    result = runner.invoke(features_cli, ["upload", str(tmp_path / "lab.zarr"), "s3://no-such-bucket/lab.zarr"])
    assert result.exit_code == 1
    assert result.stderr.startswith(f"Error: uploading {tmp_path / 'lab.zarr'} to s3://no-such-bucket/lab.zarr failed after 0 bytes (")
    with open_store(str(tmp_path / "lab.zarr"), "a") as store:
        with store.writer("audio", store["audio"].info.provenance):  # a writer at work: its files would change under the upload
            result = runner.invoke(features_cli, ["upload", str(tmp_path / "lab.zarr"), s3.url("lab.zarr")])
    assert result.exit_code == 1
    assert result.stderr == (f"Error: {tmp_path / 'lab.zarr'} has writers open (lock file {tmp_path / 'lab.zarr' / '.writers.lock'}); "
                             "upload it once they have closed\n")
    assert s3.files("lab.zarr") == []


def test_two_uploads_to_one_url_exclude_each_other(tmp_path, s3, small_store):
    """An upload holds a lock object, created only if absent (a conditional PUT); a second one is refused,
    unless the holder was a process of this host that is gone (killed mid-upload): that lock is taken over."""
    small_store(tmp_path / "lab.zarr")
    url, lock = s3.url("lab.zarr"), f"{s3.name}/lab.zarr/{PUBLISH_LOCK}"
    holder = {"host": "other-node", "pid": 4242, "since": "2026-01-01T00:00:00+00:00", "local": "/scratch/lab.zarr"}
    s3.fs.pipe_file(lock, json.dumps(holder).encode())
    result = CliRunner().invoke(features_cli, ["upload", str(tmp_path / "lab.zarr"), url])
    assert result.exit_code == 1
    assert result.stderr == (
        f"Error: {url} is being published by another run (host other-node, pid 4242, since 2026-01-01T00:00:00+00:00, "
        f"from /scratch/lab.zarr); wait for it to finish, or if it is gone, delete {url}/{PUBLISH_LOCK} and run again\n"
    )
    assert s3.files("lab.zarr") == [PUBLISH_LOCK]

    # A pid no process of this host has: pids stay below pid_max.
    dead = int(open("/proc/sys/kernel/pid_max").read()) if os.path.exists("/proc/sys/kernel/pid_max") else 2**22
    s3.fs.pipe_file(lock, json.dumps({**holder, "host": socket.gethostname(), "pid": dead}).encode())
    with pytest.warns(UserWarning, match=f"taking over the publish lock of {url}: its holder \\(pid {dead}, "):
        result = CliRunner().invoke(features_cli, ["upload", str(tmp_path / "lab.zarr"), url])
    assert result.exit_code == 0, result.output
    assert s3.files("lab.zarr") == s3.local_files(tmp_path / "lab.zarr")  # the lock is gone with the upload


def test_a_chunk_missing_from_an_s3_store_is_an_error_not_zeros(tmp_path, s3, small_store):
    local = tmp_path / "lab.zarr"
    small_store(local)
    s3.fs.put(str(local), f"{s3.name}/lab.zarr", recursive=True)
    s3.fs.rm(f"{s3.name}/lab.zarr/audio/data/c/0/0")
    url = s3.url("lab.zarr")
    with open_store(url) as remote:
        with pytest.raises(StoreError, match=rf"^the store at {url} is missing chunk audio/data/c/0/0 \(frames 0:20 of set 'audio', "
                                             r"utterance\(s\) 'audio0'\); it was copied or uploaded only in part"):
            remote["audio"].read("audio0")
        assert remote["video"].read_all().data.any()  # the sets whose chunks are all there read as before
