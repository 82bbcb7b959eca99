"""A Zarr store published by a plain static file server reads by URL, like a local one."""
from __future__ import annotations

import socket
import subprocess
import sys
import time
import urllib.request

import numpy as np
import pytest

from features import StoreError, open_store


@pytest.fixture
def served(tmp_path):
    """``python -m http.server`` on 127.0.0.1 and a free port, serving ``tmp_path``; yields the base URL."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(
        [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1", "--directory", str(tmp_path)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(200):
            try:
                urllib.request.urlopen(url, timeout=1).close()
                break
            except OSError:
                time.sleep(0.05)
        else:
            pytest.fail("http.server did not start")
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_zarr_store_reads_over_http(tmp_path, served, small_store):
    path = str(tmp_path / "lab.zarr")
    values = small_store(path)
    with open_store(f"{served}/lab.zarr") as remote, open_store(path) as local:
        assert remote.set_names() == ["audio", "video"]
        for name in ("audio", "video"):
            r, l = remote[name], local[name]
            assert r.info == l.info and r.ids == l.ids and r.failures() == l.failures()
            assert r.read_all().data.tobytes() == l.read_all().data.tobytes()
            for (set_name, utt_id), array in values.items():
                if set_name == name:
                    assert np.array_equal(r.read(utt_id), array)
        with pytest.raises(StoreError, match="remote stores open read-only"):
            open_store(f"{served}/lab.zarr", "a")


def test_missing_remote_store_is_a_clear_error(served):
    with pytest.raises(StoreError, match=r"cannot open Zarr store http://127\.0\.0\.1:\d+/absent\.zarr"):
        open_store(f"{served}/absent.zarr")["audio"]


def test_hdf5_urls_are_refused_with_the_way_out():
    with pytest.raises(StoreError, match=r"http://example\.org/lab\.h5: hdf5 stores are read from a path, not a URL; convert it to Zarr"):
        open_store("http://example.org/lab.h5")
