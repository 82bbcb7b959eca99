"""Extraction on a real Dask LocalCluster gives the same store as one process; a failed shard keeps the others'."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import features
from extract.base import EncoderConfigError
from extract.cluster import ClusterError
from extract.pipeline import run_extraction
from features import open_store
from manifests import read_manifest


@pytest.mark.slow
def test_local_cluster_equals_single_process(small_corpus, corpus_factory, tmp_path):
    manifest = corpus_factory(tmp_path / "corpus20", n=20)
    single = str(tmp_path / "single.zarr")
    run_extraction(manifest, single, "audio", progress=False)

    # Start with a few done by one process: the cluster run resumes from them.
    parallel = str(tmp_path / "parallel.zarr")
    run_extraction(manifest, parallel, "audio", limit=3, progress=False)
    summary = run_extraction(manifest, parallel, "audio", scheduler="local:2", batch_size=2, progress=False)
    assert (summary.done, summary.skipped, summary.failed) == (17, 3, 0)

    report = features.verify(parallel)
    assert report.ok, report.problems
    with open_store(single) as a, open_store(parallel) as b:
        assert a["audio"].info.identity == b["audio"].info.identity == summary.identity
        assert sorted(b["audio"].ids) == sorted(r.utt_id for r in read_manifest(manifest))
        for utt_id in a["audio"].ids:
            np.testing.assert_array_equal(a["audio"].read(utt_id), b["audio"].read(utt_id))
        whole = b["audio"].read_all()
        assert len(whole) == 20

    again = run_extraction(manifest, parallel, "audio", scheduler="local:2", progress=False)
    assert again.already_complete and again.skipped == 20


@pytest.mark.slow
def test_a_failed_shard_is_reported_after_the_others_finish_and_theirs_is_kept(small_corpus, registry, rms_encoders, monkeypatch, tmp_path):
    from distributed import Client, LocalCluster

    registry.register(rms_encoders.ShardBug)
    store_path = str(tmp_path / "s.zarr")
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster, \
            Client(cluster) as client:
        rms_encoders.register_on(client, rms_encoders.ShardBug)
        # 2 workers, 4 shards dealt longest first: utt005, utt003 and utt001 make one, and each raises there.
        with pytest.raises(ClusterError) as caught:
            run_extraction(small_corpus, store_path, "audio", encoder="rms-shard-bug", batch_size=1,
                           scheduler=cluster.scheduler_address, progress=False)
    message = str(caught.value)
    assert message.startswith("1 of 4 shard(s) failed; what they committed is kept, rerun to finish: extract-")
    assert "EncoderBugError: the audio encoder 'rms-shard-bug' raised ImportError on 3 utterances in a row" in message
    with open_store(store_path) as store:
        assert sorted(store["audio"].ids) == sorted(set(r.utt_id for r in read_manifest(small_corpus)) - set(rms_encoders.ShardBug.broken))

    # Fixed, a rerun (here, in one process) does the shard's three and finishes the store.
    monkeypatch.setattr(rms_encoders.ShardBug, "broken", ())
    summary = run_extraction(small_corpus, store_path, "audio", encoder="rms-shard-bug", batch_size=1, progress=False)
    assert (summary.done, summary.skipped, summary.failed) == (3, 9, 0)
    assert features.verify(store_path).ok


@pytest.mark.slow
@pytest.mark.skipif(torch.cuda.is_available(), reason="needs workers without a CUDA device")
def test_a_device_the_workers_lack_is_refused_before_the_store_is_touched(small_corpus, tmp_path, capfd):
    """One line naming the worker and the fix, no worker's 'Compute Failed' traceback on stderr, and
    no store: not even an empty set is left behind."""
    store = tmp_path / "s.zarr"
    with pytest.raises(EncoderConfigError, match=r"^--device cuda: torch sees no CUDA device on Dask worker tcp://"):
        run_extraction(small_corpus, str(store), "audio", device="cuda", scheduler="local:1", progress=False)
    assert "Compute Failed" not in capfd.readouterr().err
    assert not store.exists()

    # A store that exists keeps what it holds, untouched.
    run_extraction(small_corpus, str(store), "audio", limit=2, progress=False)
    before = sorted(p.relative_to(store) for p in store.rglob("*"))
    with pytest.raises(EncoderConfigError):
        run_extraction(small_corpus, str(store), "audio", device="cuda", scheduler="local:1", progress=False)
    assert sorted(p.relative_to(store) for p in store.rglob("*")) == before
    with open_store(str(store)) as s:
        assert len(s["audio"]) == 2


@pytest.mark.slow
def test_a_dask_run_beside_an_open_writer_leaves_the_finish_to_that_writer(small_corpus, tmp_path):
    """Another run writes another set of the store meanwhile: the Dask run's work is all committed, so it
    must end with its summary, not a StoreLockedError; the other writer finishes the store when it closes."""
    from features.testing import provenance

    path = str(tmp_path / "s.zarr")
    other_store = open_store(path, "a")
    other = other_store.writer("video", provenance("float16", 4))
    other.write("v0", np.ones((2, 4)))
    other.commit()
    try:
        summary = run_extraction(small_corpus, path, "audio", scheduler="local:1", progress=False)
        assert (summary.done, summary.skipped, summary.failed) == (12, 0, 0)
        with open_store(path) as store:
            assert sorted(store["audio"].ids) == sorted(r.utt_id for r in read_manifest(small_corpus))
    finally:
        other.close()
        other_store.close()
    assert not list((tmp_path / "s.zarr").glob("*/parts/*"))  # finished by the last writer to close
    report = features.verify(path)
    assert report.ok, report.problems
    with open_store(path) as store:
        assert store.set_names() == ["audio", "video"] and len(store["audio"]) == 12
