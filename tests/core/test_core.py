"""The shared core: scheduler values, the task executor (here and on a real LocalCluster), device
checks, atomic writes, and the CLI error mapping."""
from __future__ import annotations

import os
import re
import stat
import time
from pathlib import Path

import click
import dask
import pytest
import torch
from click.testing import CliRunner

from emocache.atomic import atomic_write, write_json
from emocache.cli import domain_errors
from emocache.devices import device_problem
from emocache.errors import EmocacheError, ExitCode
from emocache.scheduler import (
    Scheduler, SchedulerError, dask_client, device_problem_on_workers, gpu_resource_problem, run_tasks, worker_count,
)


@pytest.mark.parametrize("text, workers, address", [("local:3", 3, None), ("tcp://10.0.0.1:8786", None, "tcp://10.0.0.1:8786")])
def test_scheduler_values_parse(text, workers, address):
    spec = Scheduler.parse(text)
    assert (spec.workers, spec.address) == (workers, address)


@pytest.mark.parametrize("text, says", [("local:0", "N >= 1"), ("local", "use local:N"), ("tcp://host", "use local:N"),
                                        ("slurm", "use local:N")])
def test_bad_scheduler_values_are_refused_naming_the_choices(text, says):
    with pytest.raises(SchedulerError, match=says):
        Scheduler.parse(text)


def _square_or_fail(x: int) -> int:
    if x == 3:
        raise ValueError("three")
    return x * x


def test_run_tasks_here_returns_outcomes_in_task_order_and_collects_errors():
    seen = []
    outcomes = run_tasks(_square_or_fail, [1, 2, 3, 4], stop_on_error=False, on_done=lambda i, o: seen.append(i))
    assert [o.value for o in outcomes] == [1, 4, None, 16]
    assert isinstance(outcomes[2].error, ValueError)
    assert seen == [0, 1, 2, 3]
    with pytest.raises(ValueError, match="three"):
        outcomes[2].unwrap()


def test_run_tasks_here_stops_at_the_first_error():
    ran = []

    def task(x):
        ran.append(x)
        return _square_or_fail(x)

    with pytest.raises(ValueError, match="three"):
        run_tasks(task, [3, 1, 2])
    assert ran == [3]


@pytest.mark.slow
def test_run_tasks_on_a_local_cluster_gives_the_same_outcomes():
    with dask_client("local:2") as client:
        assert worker_count(client) == 2
        outcomes = run_tasks(_square_or_fail, [1, 2, 3, 4], client=client, stop_on_error=False)
    assert [o.value for o in outcomes] == [1, 4, None, 16]
    assert isinstance(outcomes[2].error, ValueError)


def _first_waits_for_the_others(task: tuple[str, int, int]) -> str:
    """Task 0 waits until every other task has run; the others say how glibc's malloc is set up."""
    folder, i, n = task
    if i == 0:
        deadline = time.monotonic() + 20
        while len(list(Path(folder).glob("done-*"))) < n - 1:
            if time.monotonic() > deadline:
                return "a task waited behind this one while another worker was free"
            time.sleep(0.05)
        return "ok"
    (Path(folder) / f"done-{i}").touch()
    return os.environ.get("MALLOC_TRIM_THRESHOLD_", "unset")


@pytest.mark.slow
def test_a_local_cluster_starts_queued_tasks_on_free_workers_with_glibc_s_malloc_defaults(tmp_path):
    # Task 0 holds one worker until tasks 1-4 are done: only if none of them was handed to that worker
    # behind it (Dask's default saturation gives each worker two) does it see them finish. Work
    # stealing, off here, could rescue a waiting task, but not surely in time.
    with dask.config.set({"distributed.scheduler.work-stealing": False}), dask_client("local:2") as client:
        outcomes = run_tasks(_first_waits_for_the_others, [(str(tmp_path), i, 5) for i in range(5)], client=client)
    assert [o.value for o in outcomes] == ["ok"] + ["unset"] * 4


def test_no_scheduler_means_no_client():
    with dask_client(None) as client:
        assert client is None
    assert worker_count(None) == 1


def test_atomic_write_leaves_the_old_file_when_the_write_fails(tmp_path):
    target = write_json(tmp_path / "a.json", {"v": 1})

    def broken(tmp):
        tmp.write_text("half")
        raise OSError("disk full")

    with pytest.raises(OSError):
        atomic_write(target, broken, durable=True)
    assert target.read_text() == '{\n  "v": 1\n}\n'
    assert [p.name for p in tmp_path.iterdir()] == ["a.json"]


def test_domain_errors_become_one_line_messages_and_bugs_keep_their_traceback():
    @click.command()
    @click.argument("what")
    @domain_errors
    def cmd(what):
        if what == "domain":
            raise EmocacheError("manifest.jsonl, line 3: no label; add one")
        raise KeyError("bug")

    runner = CliRunner()
    result = runner.invoke(cmd, ["domain"])
    assert result.exit_code == ExitCode.ERROR
    assert result.output == "Error: manifest.jsonl, line 3: no label; add one\n"
    result = runner.invoke(cmd, ["bug"])
    assert isinstance(result.exception, KeyError)


def test_atomic_writes_get_an_ordinary_files_mode(tmp_path):
    """Not mkstemp's 0600: a store or report on a shared folder stays readable by colleagues."""
    umask = os.umask(0o022)
    try:
        path = write_json(tmp_path / "shared.json", {})
    finally:
        os.umask(umask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644


def test_device_problems_name_the_device_the_place_and_the_fix():
    assert device_problem("cpu", 0) is None and device_problem("cuda", 1) is None and device_problem("cuda:1", 2) is None
    assert device_problem("cuda", 0) == "--device cuda: torch sees no CUDA device on this machine; use --device cpu"
    assert device_problem("cuda:2", 2, where="Dask worker tcp://h:1") == (
        "--device cuda:2: Dask worker tcp://h:1 has 2 CUDA device(s), cuda:0 to cuda:1")
    for name in ("gpu", "cuda:x", "mps", "cuda:", " cpu"):
        assert device_problem(name, 1) == f"device {name!r} is not one of cpu, cuda, cuda:N"


@pytest.mark.slow
@pytest.mark.skipif(torch.cuda.is_available(), reason="needs workers without a CUDA device")
def test_the_workers_are_asked_whether_they_can_run_a_device():
    with dask_client("local:2") as client:
        assert device_problem_on_workers(client, "cpu") is None
        problem = device_problem_on_workers(client, "cuda")
    assert re.fullmatch(r"--device cuda: torch sees no CUDA device on Dask worker tcp://127\.0\.0\.1:\d+; use --device cpu", problem)


@pytest.mark.slow
def test_gpu_tasks_are_refused_where_no_worker_declares_the_gpu_resource():
    """Dask would queue such tasks forever: workers started without --resources GPU=1 never take them."""
    with dask_client("local:1") as client:
        assert gpu_resource_problem(client) == (
            "--device cuda on Dask: no worker declares the resource GPU, so its tasks would wait forever; start each "
            "GPU worker with `dask worker SCHEDULER --resources GPU=1` (local:N declares it)")
    with dask_client("local:1", gpu=True) as client:
        assert gpu_resource_problem(client) is None


@pytest.mark.slow
def test_a_task_whose_worker_dies_is_a_scheduler_error_naming_it():
    import dask

    with dask.config.set({"distributed.scheduler.allowed-failures": 0}), dask_client("local:1") as client:
        with pytest.raises(SchedulerError) as caught:
            run_tasks(os._exit, [3], client=client, keys=["dies"])  # the worker process exits mid-task
    assert str(caught.value) == ("task dies: the Dask worker running it died (killed, out of memory or crashed), on every "
                                 "retry; give the workers more memory or run fewer tasks at once, and rerun")
