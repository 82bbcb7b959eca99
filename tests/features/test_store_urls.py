"""URL schemes are an explicit allow-list: http, https, s3 and file://; anything else (memory://,
ftp://, sftp://, reference://, fsspec chains) is a StoreError naming the allowed schemes, and a missing
optional package names the install command."""
from __future__ import annotations

import sys

import numpy as np
import pytest
from click.testing import CliRunner

from features import StoreError, open_store
from features.cli import cli
from features.provenance import Provenance
from features.urls import is_remote, storage_options

ALLOWED = "http://, https://, s3://, file://"


@pytest.mark.parametrize("url, scheme", [
    ("memory://lab.zarr", "memory"),
    ("ftp://example.org/lab.zarr", "ftp"),
    ("sftp://example.org/lab.zarr", "sftp"),
    ("reference://lab.zarr", "reference"),
    ("GCS://bucket/lab.zarr", "gcs"),
])
def test_unlisted_schemes_are_refused(url, scheme):
    with pytest.raises(StoreError) as err:
        open_store(url)
    assert str(err.value) == (
        f"{url}: the URL scheme {scheme!r} is not supported for feature stores; use a local path or one of {ALLOWED}"
    )


@pytest.mark.parametrize("url, first", [("filecache::file:///tmp/lab.zarr", "filecache"),
                                        ("simplecache::s3://bucket/lab.zarr", "simplecache")])
def test_fsspec_chains_are_refused(url, first):
    with pytest.raises(StoreError) as err:
        open_store(url)
    assert str(err.value) == (
        f"{url}: fsspec URL chains ({first}::...) are not supported for feature stores; use a local path or one of {ALLOWED}"
    )


def test_paths_that_merely_contain_colons_stay_paths(tmp_path):
    odd = f"{tmp_path}/a::b/x://y/lab.zarr"
    assert not is_remote(odd)
    with open_store(odd, "a") as store:
        assert store.set_names() == []
    assert (tmp_path / "a::b" / "x:" / "y" / "lab.zarr" / "zarr.json").is_file()


def test_refused_in_the_cli_with_the_exact_message():
    result = CliRunner().invoke(cli, ["info", "memory://lab.zarr"])
    assert result.exit_code == 1
    assert result.stderr == (
        f"Error: memory://lab.zarr: the URL scheme 'memory' is not supported for feature stores; use a local path or one of {ALLOWED}\n"
    )


def test_a_missing_package_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "s3fs", None)  # what Python does for a package that is not installed
    with pytest.raises(StoreError) as err:
        open_store("s3://bucket/lab.zarr")
    assert str(err.value) == 's3://bucket/lab.zarr: reading s3:// stores needs the package s3fs: pip install "emocache[s3]"'


def test_paths_and_file_urls_are_local(tmp_path):
    assert not is_remote(str(tmp_path / "x.zarr")) and not is_remote(f"file://{tmp_path}/x.zarr")
    assert is_remote("https://example.org/x.zarr") and is_remote("s3://bucket/x.zarr")
    path = tmp_path / "lab.zarr"
    with open_store(f"file://{path}", "a") as store:
        p = Provenance.now(encoder="test:a", manifest_hash="c" * 64, dtype="float16", dim=2)
        with store.writer("audio", p) as w:
            w.write("u1", np.ones((3, 2), dtype=np.float16))
    with open_store(str(path)) as store:
        assert store["audio"].ids == ["u1"]


def test_storage_options_come_from_the_environment(monkeypatch):
    monkeypatch.delenv("EMOCACHE_STORAGE_OPTIONS", raising=False)
    assert storage_options("s3://b/x.zarr") == {}
    monkeypatch.setenv("EMOCACHE_STORAGE_OPTIONS", '{"s3": {"anon": true}}')
    assert storage_options("s3://b/x.zarr") == {"anon": True} and storage_options("https://h/x.zarr") == {}
    monkeypatch.setenv("EMOCACHE_STORAGE_OPTIONS", '{"s3": ')
    with pytest.raises(StoreError, match=r"^the environment variable EMOCACHE_STORAGE_OPTIONS is not valid JSON \("):
        storage_options("s3://b/x.zarr")
    monkeypatch.setenv("EMOCACHE_STORAGE_OPTIONS", '{"s3": true}')
    with pytest.raises(StoreError, match="must be a JSON object of objects keyed by scheme"):
        storage_options("s3://b/x.zarr")
