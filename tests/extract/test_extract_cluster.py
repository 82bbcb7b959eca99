"""Extraction on a real Dask LocalCluster gives the same store as one process."""
from __future__ import annotations

import numpy as np
import pytest

import features
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
