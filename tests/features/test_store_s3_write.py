"""Extracting INTO an ``s3://`` Zarr store, against a real S3 server on localhost (``conftest.py``):
the run writes a local staging copy and publishes it when the set is complete."""
from __future__ import annotations

import json
import sys
import threading

import numpy as np
import pytest
import zarr
from click.testing import CliRunner

from extract.cli import cli as extract_cli
from features import open_store
from features.cli import cli as features_cli
from features.records import StoreLockedError
from features.staging import StagedStore, default_staging_dir
from features.testing import provenance
from features.upload import RemoteChangedError, upload_store

ENCODER = "opensmile:eGeMAPSv02"


def _extract(manifest, store, *more: str):
    result = CliRunner().invoke(
        extract_cli, ["run", "--modality", "audio", "--encoder", ENCODER, "--manifest", str(manifest), "--store", str(store), *more]
    )
    return result


def _same_set(a, b) -> None:
    """Same utterances with the same frames (their order follows the batches of each run), same identity."""
    ids = sorted(b.ids)
    assert sorted(a.ids) == ids and a.failures() == b.failures() and a.info.identity == b.info.identity
    assert a.read_all(ids).data.tobytes() == b.read_all(ids).data.tobytes()


@pytest.fixture(scope="module")
def local_extraction(demo_manifest, tmp_path_factory):
    """The demo manifest extracted into a local store, the reference for every run into S3."""
    path = tmp_path_factory.mktemp("local") / "lab.zarr"
    result = _extract(demo_manifest, path)
    assert result.exit_code == 0, result.output
    return path


def test_extract_into_s3_reads_back_equal_to_a_local_extraction(demo_manifest, local_extraction, tmp_path, s3):
    url, staging = s3.url("lab.zarr"), tmp_path / "staging"
    copy = StagedStore.for_url(url, staging).local
    result = _extract(demo_manifest, url, "--staging", str(staging))
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].startswith(f"extracted 40 utterances into set 'audio' of {url} in ")
    assert lines[1].startswith(f"published {url}: {len(s3.local_files(copy))} files (")
    assert lines[1].endswith(f" bytes) uploaded and checked, 0 stale file(s) removed; staging copy kept in {copy}")
    assert s3.files("lab.zarr") == s3.local_files(copy)

    with open_store(url) as remote, open_store(str(local_extraction)) as here:
        assert remote.set_names() == ["audio"]
        _same_set(remote["audio"], here["audio"])
        expected = here["audio"].read_all()
    # Plain zarr-python over s3fs, as FORMAT.md tells a reader without emocache.
    group = zarr.open_group(url, mode="r", storage_options={"client_kwargs": s3.fs.client_kwargs})
    assert list(group["audio/ids"][:]) == list(expected.ids)
    assert np.array_equal(group["audio/offsets"][:], expected.offsets)
    assert group["audio/data"][:].tobytes() == expected.data.tobytes()


@pytest.mark.slow
def test_a_dask_run_into_s3_stages_locally_and_publishes_once(demo_manifest, local_extraction, tmp_path, s3):
    """local:N workers write parts of the staging copy; the run finishes it and publishes it once."""
    url = s3.url("lab.zarr")
    result = _extract(demo_manifest, url, "--staging", str(tmp_path / "staging"), "--scheduler", "local:2")
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[0].startswith(f"extracted 40 utterances into set 'audio' of {url} in ")
    with open_store(url) as remote, open_store(str(local_extraction)) as here:
        _same_set(remote["audio"], here["audio"])


def test_a_rerun_against_a_complete_remote_does_nothing_even_without_staging(demo_manifest, tmp_path, s3):
    url, staging = s3.url("lab.zarr"), tmp_path / "staging"
    assert _extract(demo_manifest, url, "--staging", str(staging)).exit_code == 0
    before = s3.listing("lab.zarr")
    other = tmp_path / "elsewhere"
    result = _extract(demo_manifest, url, "--staging", str(other))
    assert result.exit_code == 0, result.output
    assert result.stdout == f"set 'audio' in {url} is already complete for this manifest: 40 utterances present, nothing to do\n"
    assert not other.exists()  # read from the remote: nothing fetched, nothing staged
    assert s3.listing("lab.zarr") == before  # nothing written


def test_an_interrupted_run_resumes_from_staging_and_publishes_the_whole_set(demo_manifest, local_extraction, tmp_path, s3):
    url, staging = s3.url("lab.zarr"), tmp_path / "staging"
    copy = StagedStore.for_url(url, staging).local
    first = _extract(demo_manifest, url, "--staging", str(staging), "--limit", "7")
    assert first.exit_code == 0, first.output
    assert first.stdout.splitlines()[1] == (
        f"not published to {url} yet: 33 utterance(s) of the manifest still to extract; run again to finish the set "
        f"and publish it; the work is kept in {copy}"
    )
    assert s3.files("lab.zarr") == []
    second = _extract(demo_manifest, url, "--staging", str(staging))
    assert second.exit_code == 0, second.output
    assert second.stdout.startswith(f"extracted 33 utterances into set 'audio' of {url} in ")
    assert "(7 already present, 0 failed)" in second.stdout and f"published {url}: " in second.stdout
    with open_store(url) as remote, open_store(str(local_extraction)) as here:
        _same_set(remote["audio"], here["audio"])


@pytest.mark.slow
def test_a_partial_remote_without_staging_is_fetched_then_resumed(demo_manifest, local_extraction, tmp_path, s3):
    """The remote holds part of the set (uploaded from elsewhere): the run fetches it, extracts the rest, publishes."""
    partial = tmp_path / "partial.zarr"
    assert _extract(demo_manifest, partial, "--limit", "10").exit_code == 0
    url = s3.url("lab.zarr")
    assert CliRunner().invoke(features_cli, ["upload", str(partial), url]).exit_code == 0
    result = _extract(demo_manifest, url, "--staging", str(tmp_path / "staging"), "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert (summary["done"], summary["skipped"]) == (30, 10)
    publish = summary["publish"]
    assert publish["url"] == url and publish["reason"] == "" and publish["upload"]["files"] == len(s3.files("lab.zarr"))
    with open_store(url) as remote, open_store(str(local_extraction)) as here:
        _same_set(remote["audio"], here["audio"])


@pytest.mark.slow
def test_a_second_set_keeps_the_first_and_a_stale_mirror_is_refreshed(demo_manifest, tmp_path, s3):
    """Runs from two machines (two staging folders) add sets to one URL in turn; each publish keeps
    the other's sets, and a staging copy left behind by an older publish is fetched anew."""
    url, here, there = s3.url("lab.zarr"), tmp_path / "here", tmp_path / "there"
    assert _extract(demo_manifest, url, "--staging", str(here)).exit_code == 0
    assert _extract(demo_manifest, url, "--staging", str(there), "--set", "second").exit_code == 0
    result = _extract(demo_manifest, url, "--staging", str(here), "--set", "third", "--limit", "40")
    assert result.exit_code == 0, result.output
    with open_store(url) as remote:
        assert remote.set_names() == ["audio", "second", "third"]
        assert all(len(remote[name].ids) == 40 for name in remote.set_names())


@pytest.mark.slow
def test_unpublished_work_over_a_changed_remote_is_refused(demo_manifest, tmp_path, s3):
    """Two writers of one URL: the one that publishes second would replace the other's work, so it is refused."""
    url, mine = s3.url("lab.zarr"), tmp_path / "mine"
    assert _extract(demo_manifest, url, "--staging", str(mine), "--limit", "5").exit_code == 0
    assert _extract(demo_manifest, url, "--staging", str(tmp_path / "theirs"), "--set", "theirs").exit_code == 0
    before = s3.listing("lab.zarr")
    copy = StagedStore.for_url(url, mine)
    result = _extract(demo_manifest, url, "--staging", str(mine))
    assert result.exit_code == 1
    assert result.stderr == (
        f"Error: {url} changed since the staging copy {copy.local} was taken from it (another run published to it), "
        f"and the copy holds work not published yet, which would replace that run's. To start again from {url}, "
        f"delete {copy.local} and {copy.state_path}; or publish the copy elsewhere (`features upload {copy.local} URL`)\n"
    )
    assert s3.listing("lab.zarr") == before


def test_refusals_before_anything_is_written(demo_manifest, tmp_path, s3, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    with monkeypatch.context() as without:
        without.setitem(sys.modules, "s3fs", None)  # as if it were not installed: importing it fails
        result = _extract(demo_manifest, s3.url("lab.zarr"))
    assert result.exit_code == 1
    assert result.stderr == f'Error: {s3.url("lab.zarr")}: reading s3:// stores needs the package s3fs: pip install "emocache[s3]"\n'
    result = _extract(demo_manifest, "http://127.0.0.1:9/lab.zarr")
    assert result.exit_code == 1
    assert result.stderr == ("Error: http://127.0.0.1:9/lab.zarr: http:// stores are read-only (a web server takes no writes); "
                             "write into a local path or an s3:// URL, then publish it (features/SHARING.md)\n")
    url = s3.url("lab.zarr")
    result = _extract(demo_manifest, url, "--scheduler", "tcp://127.0.0.1:8786")
    assert result.exit_code == 1
    assert result.stderr == (
        f"Error: --scheduler tcp://127.0.0.1:8786 --store {url}: the workers write a local staging copy of the store, "
        f"which workers on other machines cannot reach in {default_staging_dir()}; give --staging DIR on a file system "
        "that every worker shares\n"
    )
    result = _extract(demo_manifest, s3.url("lab.h5"))
    assert result.exit_code == 1
    assert result.stderr == f"Error: {s3.url('lab.h5')}: only Zarr stores are published to object storage; give a URL ending in .zarr\n"
    result = _extract(demo_manifest, tmp_path / "lab.zarr", "--staging", str(tmp_path / "staging"))
    assert result.exit_code == 1
    assert result.stderr == (f"Error: --staging {tmp_path / 'staging'}: only a run into an s3:// store is staged; "
                             f"{tmp_path / 'lab.zarr'} is written in place\n")
    assert s3.files("") == [] and not (tmp_path / "cache").exists() and not (tmp_path / "lab.zarr").exists()


def test_the_default_staging_copy_is_derived_from_the_url(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    a = StagedStore.for_url("s3://bucket/lab.zarr")
    assert a == StagedStore.for_url("s3://bucket/lab.zarr/")
    assert a.local.parent == tmp_path / "emocache" / "staging" and a.local.name.endswith("-lab.zarr")
    assert StagedStore.for_url("s3://other/lab.zarr").local != a.local
    assert StagedStore.for_url("s3://bucket/lab.zarr", tmp_path / "mine").local == tmp_path / "mine" / a.local.name


def test_a_missing_bucket_is_refused_before_extracting(demo_manifest, tmp_path, s3):
    result = _extract(demo_manifest, "s3://no-such-bucket/lab.zarr", "--staging", str(tmp_path / "staging"))
    assert result.exit_code == 1
    assert result.stderr == ("Error: s3://no-such-bucket/lab.zarr: there is no bucket 'no-such-bucket' (or these credentials "
                             "cannot see it); create it, or fix the endpoint or credentials (features/SHARING.md)\n")
    assert not (tmp_path / "staging").exists()


def test_a_publish_over_a_remote_changed_meanwhile_is_refused(tmp_path, s3, small_store):
    """The check under the upload's lock: another run published between this copy's start and its publish."""
    url = s3.url("lab.zarr")
    staged = StagedStore.for_url(url, tmp_path / "staging")
    assert staged.prepare() == staged.local  # no remote store: the copy starts empty
    small_store(staged.local)
    small_store(tmp_path / "other.zarr")
    upload_store(tmp_path / "other.zarr", url)
    theirs = s3.listing("lab.zarr")
    with pytest.raises(RemoteChangedError, match=rf"^{url} changed since {staged.local} was taken from it "):
        staged.publish()
    assert s3.listing("lab.zarr") == theirs


def test_runs_starting_together_without_a_copy_share_the_first_ones(tmp_path, s3, small_store):
    """Three runs into one URL start at once on a machine with no staging copy yet: one fetches the
    remote, the others wait and resume from its copy. Each keeps its writer open, with work committed,
    until all have prepared: none may put a fetch of its own in place of a copy with work in it."""
    small_store(tmp_path / "theirs.zarr")
    url = s3.url("lab.zarr")
    upload_store(tmp_path / "theirs.zarr", url)
    staging = tmp_path / "staging"
    names = ["one", "two", "three"]
    start, prepared = threading.Barrier(len(names), timeout=60), threading.Barrier(len(names), timeout=60)
    errors = []

    def run(name: str) -> None:
        try:
            staged = StagedStore.for_url(url, staging)
            start.wait()
            local = staged.prepare()
            with open_store(str(local), "a") as store, store.writer(name, provenance("float16", 8)) as writer:
                writer.write(f"{name}-0", np.ones((3, 8)))
                writer.commit()
                prepared.wait()
                writer.write(f"{name}-1", np.ones((3, 8)))
        except Exception as e:  # noqa: BLE001 - each run's error is reported by the test
            errors.append(f"{name}: {type(e).__name__}: {e}")
            prepared.abort()

    threads = [threading.Thread(target=run, args=(name,)) for name in names]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert errors == []
    with open_store(str(StagedStore.for_url(url, staging).local)) as copy:
        assert copy.set_names() == sorted(["audio", "video", *names])
        assert all(copy[name].ids == [f"{name}-0", f"{name}-1"] for name in names)
    assert not StagedStore.for_url(url, staging).lock_path.exists()


def test_a_fetch_never_replaces_a_copy_another_run_made_meanwhile(tmp_path, s3, small_store):
    """What prepare's lock rules out, done by hand (the auditor's reproduction): a run found no copy and
    fetched; meanwhile another made the copy and committed work in it. The fetch must not replace it."""
    small_store(tmp_path / "theirs.zarr")
    url = s3.url("lab.zarr")
    upload_store(tmp_path / "theirs.zarr", url)
    first, second = StagedStore.for_url(url, tmp_path / "staging"), StagedStore.for_url(url, tmp_path / "staging")
    version = second.remote_version()  # the second run has seen no copy, and fetches this
    with open_store(str(first.prepare()), "a") as store, store.writer("text", provenance("float16", 8)) as writer:
        writer.write("t0", np.ones((3, 8)))
        writer.commit()
        with pytest.raises(StoreLockedError, match=rf"^another run made the staging copy {first.local} while {url} "
                                                   "was fetched into it; run again: it resumes from that copy$"):
            second._fetch(version)
        writer.write("t1", np.ones((3, 8)))
    with open_store(str(first.local)) as copy:
        assert copy.set_names() == ["audio", "text", "video"] and copy["text"].ids == ["t0", "t1"]
    assert [p.name for p in first.local.parent.iterdir() if ".fetch-" in p.name] == []
