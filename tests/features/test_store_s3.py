"""A Zarr store published to S3 reads by ``s3://`` URL like a local one, against a real S3 server
(moto's standalone server on 127.0.0.1) with s3fs as the client; the endpoint comes through
EMOCACHE_STORAGE_OPTIONS, as it would for a lab's MinIO or Ceph."""
from __future__ import annotations

import json
import logging
import socket

import numpy as np
import pytest
import s3fs
from click.testing import CliRunner
from moto.server import ThreadedMotoServer

from extract.cli import cli as extract_cli
from features import StoreError, open_store
from features.cli import cli as features_cli
from features.provenance import Provenance

BUCKET = "lab-features"


@pytest.fixture(scope="module")
def s3_endpoint():
    """A real S3-compatible server on a free localhost port for this module; yields its URL."""
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


@pytest.fixture
def s3(s3_endpoint, monkeypatch):
    """An s3fs client of the server with a fresh bucket; dummy credentials and the endpoint for emocache."""
    for name, value in (("AWS_ACCESS_KEY_ID", "testing"), ("AWS_SECRET_ACCESS_KEY", "testing"),
                        ("AWS_SESSION_TOKEN", "testing"), ("AWS_DEFAULT_REGION", "us-east-1")):
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    monkeypatch.setenv("EMOCACHE_STORAGE_OPTIONS", json.dumps({"s3": {"client_kwargs": {"endpoint_url": s3_endpoint}}}))
    fs = s3fs.S3FileSystem(client_kwargs={"endpoint_url": s3_endpoint}, skip_instance_cache=True)
    if fs.exists(BUCKET):
        fs.rm(BUCKET, recursive=True)
    fs.mkdir(BUCKET)
    fs.invalidate_cache()
    return fs


def _local_store(path) -> dict:
    rng = np.random.default_rng(5)
    values = {}
    with open_store(str(path), "a") as store:
        for name, dim, layers in (("audio", 6, None), ("video", 4, 3)):
            p = Provenance.now(encoder=f"test:{name}", manifest_hash="d" * 64, dtype="float16", dim=dim)
            with store.writer(name, p, frame_rate=50.0, layers=layers, part="w0") as w:
                for i in range(6):
                    shape = (int(rng.integers(1, 20)), dim) if layers is None else (layers, int(rng.integers(1, 20)), dim)
                    values[name, f"{name}{i}"] = rng.standard_normal(shape).astype(np.float16)
                    w.write(f"{name}{i}", values[name, f"{name}{i}"])
                    if i == 2:
                        w.commit()
                w.fail(f"{name}_bad", "decode", "damaged file")
    return values


def test_zarr_store_reads_from_s3(tmp_path, s3):
    local = tmp_path / "lab.zarr"
    values = _local_store(local)
    s3.put(str(local), f"{BUCKET}/lab.zarr", recursive=True)
    url = f"s3://{BUCKET}/lab.zarr"

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
    with pytest.raises(StoreError, match=rf"^cannot open Zarr store s3://{BUCKET}/absent\.zarr: "):
        open_store(f"s3://{BUCKET}/absent.zarr").set_names()


def test_extracting_into_s3_is_refused_before_anything_is_written(s3, tmp_path):
    """Writers need rename, fsync and exclusive lock files, which S3 lacks: extract locally, then upload."""
    manifest = tmp_path / "m.jsonl"
    manifest.write_text(json.dumps({"utt_id": "u1", "label": "neu", "group": "1", "audio": "u1.wav"}) + "\n")
    url = f"s3://{BUCKET}/new.zarr"
    result = CliRunner().invoke(extract_cli, ["run", "--modality", "audio", "--manifest", str(manifest), "--store", url])
    assert result.exit_code == 1
    assert result.stderr == (
        f"Error: {url} is remote: remote stores open read-only (mode='r'); write locally and publish\n"
    )
    s3.invalidate_cache()
    assert s3.ls(BUCKET) == []


def _remote_files(s3, key: str) -> list[str]:
    s3.invalidate_cache()
    return sorted(p[len(f"{BUCKET}/{key}/"):] for p in s3.find(f"{BUCKET}/{key}"))


def _local_files(path) -> list[str]:
    return sorted(p.relative_to(path).as_posix() for p in path.rglob("*")
                  if p.is_file() and not any(part.startswith(".") for part in p.relative_to(path).parts))


def test_extract_locally_then_upload_then_read_from_s3(tmp_path, s3):
    """The way to extract into S3: `extract run` into a path, `features upload` it; a rerun uploads what changed."""
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
    url = f"s3://{BUCKET}/lab.zarr"

    runner = CliRunner()
    first = runner.invoke(extract_cli, ["run", "--modality", "audio", "--manifest", str(manifest), "--store", str(local), "--limit", "3"])
    assert first.exit_code == 0, first.output
    up = runner.invoke(features_cli, ["upload", str(local), url, "--json"])
    assert up.exit_code == 0, up.output
    assert json.loads(up.stdout)["removed"] == 0
    assert _remote_files(s3, "lab.zarr") == _local_files(local)
    with open_store(url) as remote:
        assert sorted(remote["audio"].ids) == ["u0", "u1", "u2"]

    second = runner.invoke(extract_cli, ["run", "--modality", "audio", "--manifest", str(manifest), "--store", str(local)])
    assert second.exit_code == 0, second.output
    before = _remote_files(s3, "lab.zarr")
    up = runner.invoke(features_cli, ["upload", str(local), url])
    assert up.exit_code == 0, up.output
    stale = set(before) - set(_local_files(local))
    assert up.stdout.startswith(f"uploaded {len(_local_files(local))} files (")
    assert up.stdout.endswith(f"; removed {len(stale)} stale file(s)\n")
    assert _remote_files(s3, "lab.zarr") == _local_files(local)  # segments compacted away locally are gone remotely too
    with open_store(url) as remote, open_store(str(local)) as here:
        assert sorted(remote["audio"].ids) == [f"u{i}" for i in range(6)]
        assert remote["audio"].info == here["audio"].info
        assert remote["audio"].read_all().data.tobytes() == here["audio"].read_all().data.tobytes()


def test_upload_errors_are_messages(tmp_path, s3):
    runner = CliRunner()
    result = runner.invoke(features_cli, ["upload", str(tmp_path / "none.zarr"), f"s3://{BUCKET}/x.zarr"])
    assert result.exit_code == 1 and result.stderr.startswith(f"Error: no zarr feature store at {tmp_path / 'none.zarr'}")
    assert not (tmp_path / "none.zarr").exists()
    _local_store(tmp_path / "lab.zarr")
    result = runner.invoke(features_cli, ["upload", str(tmp_path / "lab.zarr"), "https://example.org/lab.zarr"])
    assert result.exit_code == 1 and result.stderr == "Error: https://example.org/lab.zarr: stores upload to s3:// URLs only\n"
    result = runner.invoke(features_cli, ["upload", str(tmp_path / "lab.zarr"), "s3://no-such-bucket/lab.zarr"])
    assert result.exit_code == 1
    assert result.stderr.startswith(f"Error: uploading {tmp_path / 'lab.zarr'} to s3://no-such-bucket/lab.zarr failed after 0 bytes (")
