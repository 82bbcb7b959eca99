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


@pytest.mark.slow
def test_workers_in_another_folder_write_the_folds_where_the_client_said(small_corpus, tiny_cfg, tmp_path, monkeypatch):
    """Workers on other machines (tcp://) run in folders of their own: relative paths are made absolute
    on the client, so the folds land in --out and the manifest and store are found."""
    import os
    import shutil

    from distributed import Client, LocalCluster

    manifest, store, _ = small_corpus
    here, elsewhere = tmp_path / "client", tmp_path / "worker"
    here.mkdir()
    elsewhere.mkdir()
    shutil.copy(manifest, here / "m.jsonl")
    shutil.copy(store, here / "s.h5")
    monkeypatch.chdir(here)
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=True, dashboard_address=None) as cluster, \
            Client(cluster) as client:
        client.run(os.chdir, str(elsewhere))
        run_cv(tiny_cfg.replace(epochs=1), "m.jsonl", ["s.h5"], "out", client=client, progress=False)
    assert all((here / "out" / f"fold-{g}" / "model.pt").is_file() for g in "123")
    assert list(elsewhere.iterdir()) == []
