"""Folds on a real Dask LocalCluster give the same figures as the sequential run."""
from __future__ import annotations

import pytest
import torch

from emocache.scheduler import SchedulerError
from train.config import ConfigError
from train.cv import run_cv


@pytest.mark.slow
def test_dask_cv_equals_sequential(small_corpus, tiny_cfg, tmp_path):
    """With dropout (the preset's 0.4): the one task on two workers gives the figures of the ensemble
    trained here, exactly (ensembles are never split: float rounding depends on which members share
    a call, and over many epochs it can grow into another best epoch)."""
    manifest, store, _ = small_corpus
    tiny_cfg = tiny_cfg.replace(epochs=1)  # worker start-up (importing torch twice) dominates anyway
    assert tiny_cfg.model.dropout > 0
    sequential = run_cv(tiny_cfg, manifest, str(store), progress=False)
    parallel = run_cv(tiny_cfg, manifest, str(store), tmp_path, scheduler="local:2", progress=False)
    assert parallel.to_json() == sequential.to_json()
    assert [f.group for f in parallel.folds] == ["1", "2", "3"]
    assert all((tmp_path / f"fold-{g}" / "model.pt").is_file() for g in "123")


def test_bad_scheduler(small_corpus, tiny_cfg):
    manifest, store, _ = small_corpus
    for bad in ("local:x", "local:0", "slurm"):
        with pytest.raises(SchedulerError, match=rf"^--scheduler '?{bad}'?: "):
            run_cv(tiny_cfg, manifest, str(store), scheduler=bad, progress=False)


@pytest.mark.slow
@pytest.mark.skipif(torch.cuda.is_available(), reason="needs workers without a CUDA device")
def test_a_device_the_workers_lack_is_refused_before_any_task_runs(small_corpus, tiny_cfg, tmp_path, capfd):
    """One line naming the worker and the fix, and no worker's 'Compute Failed' traceback on stderr."""
    manifest, store, _ = small_corpus
    with pytest.raises(ConfigError, match=r"^--device cuda: torch sees no CUDA device on Dask worker tcp://"):
        run_cv(tiny_cfg.replace(device="cuda"), manifest, str(store), tmp_path / "out", scheduler="local:1", progress=False)
    assert "Compute Failed" not in capfd.readouterr().err
    assert not (tmp_path / "out").exists()
