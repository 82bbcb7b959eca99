"""A Zarr store published by a plain static file server reads by URL, like a local one."""
from __future__ import annotations

import re
import socket
import subprocess
import sys
import time
import urllib.request

import numpy as np
import pytest

from features import StoreError, open_store, verify


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


def test_a_chunk_missing_from_a_served_store_is_an_error_not_zeros(tmp_path, served, small_store):
    """A store copied in part: the server answers 404 for a chunk, which zarr would read as zeros."""
    path = tmp_path / "lab.zarr"
    values = small_store(path)
    (path / "audio" / "data" / "c" / "0" / "0").unlink()
    (path / "video" / "data" / "c" / "0" / "0" / "0").unlink()
    url = f"{served}/lab.zarr"
    way_out = f"; it was copied or uploaded only in part: copy or upload it again, then check it with `features verify {url}`"
    with open_store(url) as remote:
        audio = remote["audio"]
        with pytest.raises(StoreError) as caught:
            audio.read("audio2")  # frames 44:49, after audio0 (20) and audio1 (24)
        assert str(caught.value) == (f"the store at {url} is missing chunk audio/data/c/0/0 (frames 44:49 of set 'audio', "
                                     f"utterance(s) 'audio2'){way_out}")
        with pytest.raises(StoreError, match=re.escape(
                "missing chunk audio/data/c/0/0 (frames 0:114 of set 'audio', utterance(s) 'audio0', 'audio1', 'audio2' and 4 more)")):
            audio.read_all()
        with pytest.raises(StoreError, match=re.escape(f"the store at {url} is missing chunk video/data/c/0/0/0 (frames 0:14 of set 'video', "
                                                       "utterance(s) 'video0')")):
            remote["video"].read("video0")
    report = verify(url)
    assert not report.ok
    assert sorted(u for _, u, _, _ in report.problems) == sorted(u for _, u in values)
    assert {kind for _, _, kind, _ in report.problems} == {"missing"}
