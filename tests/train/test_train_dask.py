"""Folds on a real Dask LocalCluster give the same figures as the sequential run."""
from __future__ import annotations

import pytest

from emocache.scheduler import SchedulerError
from train.cv import run_cv


def _same(a, b) -> bool:
    """JSON values equal, floats up to float32 rounding (a loss summed over other members' batches)."""
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return isinstance(b, list) and len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if isinstance(a, float) and isinstance(b, float):
        return a == pytest.approx(b, rel=1e-6, abs=1e-7)
    return a == b


@pytest.mark.slow
def test_dask_cv_equals_sequential(small_corpus, tiny_cfg, tmp_path):
    """With dropout (the preset's 0.4): the three folds' ensemble, split over two workers as two tasks
    (two members, one), gives the figures of the one ensemble trained here."""
    manifest, store, _ = small_corpus
    tiny_cfg = tiny_cfg.replace(epochs=1)  # worker start-up (importing torch twice) dominates anyway
    assert tiny_cfg.model.dropout > 0
    sequential = run_cv(tiny_cfg, manifest, str(store), progress=False)
    parallel = run_cv(tiny_cfg, manifest, str(store), tmp_path, scheduler="local:2", progress=False)
    assert _same(parallel.to_json(), sequential.to_json())
    assert [f.metrics["confusion"] for f in parallel.folds] == [f.metrics["confusion"] for f in sequential.folds]
    assert [f.group for f in parallel.folds] == ["1", "2", "3"]
    assert all((tmp_path / f"fold-{g}" / "model.pt").is_file() for g in "123")


def test_bad_scheduler(small_corpus, tiny_cfg):
    manifest, store, _ = small_corpus
    for bad in ("local:x", "local:0", "slurm"):
        with pytest.raises(SchedulerError, match=rf"^--scheduler '?{bad}'?: "):
            run_cv(tiny_cfg, manifest, str(store), scheduler=bad, progress=False)
