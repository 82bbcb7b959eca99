"""Fixtures of the store tests that read and write by URL: a small two-set store, a real S3 server."""
from __future__ import annotations

import json
import logging
import socket
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from features import open_store
from features.provenance import Provenance

Values = dict[tuple[str, str], np.ndarray]


def _build_store(path: str | Path) -> Values:
    """Two sets (audio: (T, 6); video: 3 layers of (T, 4)) of seven utterances, committed in two segments,
    with one failure each; returns the arrays written, keyed by (set, utterance)."""
    rng = np.random.default_rng(5)
    values: Values = {}
    with open_store(str(path), "a") as store:
        for name, dim, layers in (("audio", 6, None), ("video", 4, 3)):
            p = Provenance.now(encoder=f"test:{name}", manifest_hash="d" * 64, dtype="float16", dim=dim)
            with store.writer(name, p, frame_rate=50.0, layers=layers, part="w0") as w:
                for i in range(7):
                    shape = (int(rng.integers(1, 30)), dim) if layers is None else (layers, int(rng.integers(1, 30)), dim)
                    values[name, f"{name}{i}"] = rng.standard_normal(shape).astype(np.float16)
                    w.write(f"{name}{i}", values[name, f"{name}{i}"])
                    if i == 3:
                        w.commit()
                w.fail(f"{name}_bad", "decode", "damaged file")
    return values


@pytest.fixture
def small_store() -> Callable[[str | Path], Values]:
    """Builds the small two-set Zarr store at a path (see ``_build_store``)."""
    return _build_store


@pytest.fixture(scope="session")
def s3_endpoint():
    """A real S3-compatible server (moto's standalone server) on a free localhost port; yields its URL."""
    from moto.server import ThreadedMotoServer

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


@dataclass(frozen=True)
class S3Bucket:
    """A fresh bucket on the test server: ``fs`` an s3fs client of it, ``name`` the bucket."""

    fs: Any
    name: str

    def url(self, key: str) -> str:
        return f"s3://{self.name}/{key}"

    def files(self, key: str) -> list[str]:
        """The files under ``key``, relative to it."""
        self.fs.invalidate_cache()
        return sorted(p[len(f"{self.name}/{key}/"):] for p in self.fs.find(f"{self.name}/{key}"))

    def listing(self, key: str) -> dict[str, tuple[int, str]]:
        """Each file under ``key``: (size, ETag); any write changes it."""
        self.fs.invalidate_cache()
        return {p: (info["size"], info["ETag"]) for p, info in self.fs.find(f"{self.name}/{key}", detail=True).items()}

    @staticmethod
    def local_files(path: Path) -> list[str]:
        """The files of a local store relative to it, dot names (locks, temporaries) left out: what uploads."""
        return sorted(p.relative_to(path).as_posix() for p in path.rglob("*")
                      if p.is_file() and not any(part.startswith(".") for part in p.relative_to(path).parts))


@pytest.fixture
def s3(s3_endpoint, monkeypatch) -> S3Bucket:
    """An empty bucket on the S3 server; dummy credentials and the endpoint for emocache in the environment."""
    import s3fs

    for name, value in (("AWS_ACCESS_KEY_ID", "testing"), ("AWS_SECRET_ACCESS_KEY", "testing"),
                        ("AWS_SESSION_TOKEN", "testing"), ("AWS_DEFAULT_REGION", "us-east-1")):
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    monkeypatch.setenv("EMOCACHE_STORAGE_OPTIONS", json.dumps({"s3": {"client_kwargs": {"endpoint_url": s3_endpoint}}}))
    bucket = "lab-features"
    fs = s3fs.S3FileSystem(client_kwargs={"endpoint_url": s3_endpoint}, skip_instance_cache=True)
    if fs.exists(bucket):
        fs.rm(bucket, recursive=True)
    fs.mkdir(bucket)
    fs.invalidate_cache()
    return S3Bucket(fs, bucket)

