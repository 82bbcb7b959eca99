"""Whether a torch device can run where the work runs: on this machine, or on every Dask worker.

One check and one wording for every command (``extract run``, ``train``, ``train predict``), so that a
``--device`` that cannot run is refused before anything is written or any task is sent.
"""
from __future__ import annotations


def cuda_devices() -> int:
    """How many CUDA devices torch sees in this process (run on each Dask worker by
    :func:`emocache.scheduler.device_problem_on_workers`)."""
    import torch

    return torch.cuda.device_count()


def device_problem(device: str, cuda_count: int, where: str = "this machine") -> str | None:
    """Why ``device`` ("cpu", "cuda", "cuda:N") cannot run on ``where``, which has ``cuda_count`` CUDA
    devices, as the message to show (it names the fix); None when it can."""
    if not device.startswith("cuda"):
        return None
    index = int(device.partition(":")[2] or 0)
    if cuda_count == 0:
        return f"--device {device}: torch sees no CUDA device on {where}; use --device cpu"
    if index >= cuda_count:
        return f"--device {device}: {where} has {cuda_count} CUDA device(s), cuda:0 to cuda:{cuda_count - 1}"
    return None
