"""Whether a torch device can run where the work runs: on this machine, or on every Dask worker.

One check and one wording for every command (``extract run``, ``train``, ``train predict``), so that a
``--device`` that cannot run is refused before anything is written or any task is sent.
"""
from __future__ import annotations

import re

# The devices emocache runs on; anything else (a typo, "gpu", "mps") is refused by name.
_DEVICE = re.compile(r"cpu|cuda(:\d+)?")


def cuda_devices() -> int:
    """How many CUDA devices torch sees in this process (run on each Dask worker by
    :func:`emocache.scheduler.device_problem_on_workers`)."""
    import torch

    return torch.cuda.device_count()


def device_name_problem(device: object) -> str | None:
    """Why ``device`` is not a device name emocache runs on (cpu, cuda, cuda:N); None when it is one."""
    if isinstance(device, str) and _DEVICE.fullmatch(device):
        return None
    return f"device {device!r} is not one of cpu, cuda, cuda:N"


def device_problem(device: str, cuda_count: int, where: str = "this machine") -> str | None:
    """Why ``device`` ("cpu", "cuda", "cuda:N") cannot run on ``where``, which has ``cuda_count`` CUDA
    devices, as the message to show (it names the fix); None when it can."""
    named = device_name_problem(device)
    if named is not None or device == "cpu":
        return named
    index = int(device.partition(":")[2] or 0)
    if cuda_count == 0:
        return f"--device {device}: torch sees no CUDA device on {where}; use --device cpu"
    if index >= cuda_count:
        return f"--device {device}: {where} has {cuda_count} CUDA device(s), cuda:0 to cuda:{cuda_count - 1}"
    return None
