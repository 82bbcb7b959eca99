"""Where tasks run: here one after another, or on a Dask cluster.

``--scheduler`` takes ``local:N`` (a ``LocalCluster`` of N one-thread worker processes on this machine)
or ``tcp://HOST:PORT`` (a running scheduler, e.g. one dask-jobqueue started on SLURM, or dask-cuda's
``LocalCUDACluster``). Extraction and training both go through :func:`dask_client` and
:func:`run_tasks`; nothing else in emocache starts a cluster.

Worker processes are spawned (distributed's default), never forked: HDF5, Zarr and fsspec handles do
not survive a fork. A task opens its own stores.
"""
from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from emocache.errors import EmocacheError

T = TypeVar("T")
R = TypeVar("R")

SCHEDULER_HELP = "Run on Dask: local:N (N worker processes here) or tcp://HOST:PORT (a running scheduler)."


class SchedulerError(EmocacheError):
    """A ``--scheduler`` value that is neither ``local:N`` nor ``tcp://HOST:PORT``, or a scheduler that cannot be reached."""


@dataclass(frozen=True)
class Scheduler:
    """A parsed ``--scheduler`` value: ``workers`` for ``local:N``, ``address`` for ``tcp://``."""

    text: str
    workers: int | None = None
    address: str | None = None

    @classmethod
    def parse(cls, text: str) -> Scheduler:
        match = re.fullmatch(r"local:(\d+)", text)
        if match:
            if int(match.group(1)) < 1:
                raise SchedulerError(f"--scheduler {text}: local:N needs N >= 1 workers")
            return cls(text, workers=int(match.group(1)))
        if re.fullmatch(r"tcp://[^\s:/]+:\d+", text):
            return cls(text, address=text)
        raise SchedulerError(
            f"--scheduler {text!r}: use local:N (N worker processes here) or tcp://HOST:PORT (a running scheduler)"
        )


def check_scheduler(text: str | None) -> Scheduler | None:
    """Validate a ``--scheduler`` value before any work starts; ``None`` means "no cluster"."""
    return None if text is None else Scheduler.parse(text)


# Dask settings for the local:N clusters started here, where they differ from Dask's defaults
# (bench/RESULTS.md, "Dask workers"). A tcp:// cluster keeps its own settings: see the README.
LOCAL_CONFIG = {
    # Dask sets MALLOC_TRIM_THRESHOLD_ in its workers, so that they hand freed memory back to the OS.
    # Setting it also fixes glibc's mmap threshold at 128 KiB: every larger tensor is mapped and
    # unmapped anew, page faults and all, and a training task ran 28% slower. None leaves it unset.
    "distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": None,
    # One task at a time per one-thread worker; at Dask's 1.1 a worker takes a second task, which
    # waits behind its first while another worker, done, idles.
    "distributed.scheduler.worker-saturation": 1.0,
}


@contextmanager
def dask_client(scheduler: str | None, *, gpu: bool = False) -> Iterator[Any]:
    """A ``distributed.Client`` for ``scheduler``, closed (with its local cluster) on exit; ``None`` yields ``None``.

    ``gpu``: every ``local:N`` worker declares the resource ``GPU=1``, which GPU tasks ask for
    (:func:`run_tasks`' ``resources``). On a ``tcp://`` cluster the workers must declare it themselves
    (``--resources GPU=1``). ``local:N`` puts every worker on ``cuda:0``; for several GPUs on one node,
    start dask-cuda's ``LocalCUDACluster`` and pass its address.
    """
    spec = check_scheduler(scheduler)
    if spec is None:
        yield None
        return
    import dask
    from distributed import Client, LocalCluster

    if spec.workers is not None:
        resources = {"GPU": 1} if gpu else None
        with dask.config.set(LOCAL_CONFIG), LocalCluster(
                n_workers=spec.workers, threads_per_worker=1, processes=True, dashboard_address=None,
                resources=resources) as cluster, Client(cluster) as client:
            yield client
        return
    try:
        client = Client(spec.address, timeout="30s")
    except OSError as err:
        raise SchedulerError(f"cannot reach the Dask scheduler at {spec.address}: {err}") from err
    with client:
        yield client


def device_problem_on_workers(client: Any, device: str) -> str | None:
    """Why ``device`` cannot run on some worker of ``client``'s cluster (the first such worker, by
    address), as :func:`emocache.devices.device_problem` words it; None when it runs on all. Asked of
    the workers themselves: a client without a GPU may drive workers with one."""
    from emocache.devices import cuda_devices, device_problem

    if not device.startswith("cuda"):
        return None
    for address, count in sorted(client.run(cuda_devices).items()):
        problem = device_problem(device, count, where=f"Dask worker {address}")
        if problem is not None:
            return problem
    return None


def gpu_resource_problem(client: Any) -> str | None:
    """Why tasks asking for the resource ``GPU=1`` (``run_tasks``' ``resources``) would wait forever on
    ``client``'s cluster: no worker declares it. None when one does."""
    workers = client.scheduler_info(n_workers=-1)["workers"].values()
    if any((w.get("resources") or {}).get("GPU", 0) >= 1 for w in workers):
        return None
    return ("--device cuda on Dask: no worker declares the resource GPU, so its tasks would wait forever; start each "
            "GPU worker with `dask worker SCHEDULER --resources GPU=1` (local:N declares it)")


def worker_count(client: Any) -> int:
    """How many workers ``client``'s cluster has now (1 without a client)."""
    if client is None:
        return 1
    return max(1, len(client.scheduler_info(n_workers=-1)["workers"]))


@dataclass
class Outcome(Generic[R]):
    """What one task gave: its ``value``, or the ``error`` it raised (with its traceback)."""

    key: str
    value: R | None = None
    error: BaseException | None = None

    def unwrap(self) -> R:
        if self.error is not None:
            raise self.error
        return self.value  # type: ignore[return-value]


def _result(future: Any) -> Any:
    """A Dask future's value; a worker that died running it (each time Dask retried) is one line, not
    distributed's traceback."""
    from distributed import KilledWorker

    try:
        return future.result()
    except KilledWorker as err:
        raise SchedulerError(f"task {future.key}: the Dask worker running it died (killed, out of memory or crashed), "
                             "on every retry; give the workers more memory or run fewer tasks at once, and rerun") from err


def run_tasks(
    fn: Callable[[T], R],
    tasks: Sequence[T],
    *,
    client: Any = None,
    keys: Sequence[str] | None = None,
    resources: dict[str, float] | None = None,
    on_done: Callable[[int, Outcome[R]], None] | None = None,
    stop_on_error: bool = True,
) -> list[Outcome[R]]:
    """Run ``fn(task)`` for every task: here in order (``client`` None) or on the Dask ``client``.

    Returns one :class:`Outcome` per task, in task order. ``on_done(i, outcome)`` is called as each
    task ends (in completion order on Dask), e.g. to advance a progress bar. ``stop_on_error``: the
    first error is raised at once (locally: the remaining tasks do not run; on Dask: the others are
    cancelled); otherwise every task runs and the errors are left in the outcomes for the caller to
    report together (extraction keeps what the other shards committed).
    """
    keys = list(keys) if keys is not None else [f"task-{i:03d}" for i in range(len(tasks))]
    outcomes: list[Outcome[R]] = [Outcome(k) for k in keys]

    def settle(i: int, result: Callable[[], R]) -> None:
        try:
            outcomes[i].value = result()
        except Exception as err:  # noqa: BLE001 - raised here, or handed to the caller in the outcome
            if stop_on_error:
                raise
            outcomes[i].error = err
        if on_done is not None:
            on_done(i, outcomes[i])

    if client is None:
        for i, task in enumerate(tasks):
            settle(i, lambda task=task: fn(task))
        return outcomes

    from distributed import as_completed

    # One map, not a submit per task: the scheduler then sees every task at once and queues what no
    # worker has room for (started in task order as workers free up); tasks submitted one by one
    # were handed out to busy workers before their number was known.
    futures = {f: i for i, f in enumerate(client.map(fn, list(tasks), key=keys, pure=False, resources=resources))}
    try:
        for future in as_completed(list(futures)):
            settle(futures[future], lambda future=future: _result(future))
    finally:
        if stop_on_error:
            client.cancel([f for f in futures if not f.done()])
    return outcomes
