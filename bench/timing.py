"""The bench scripts' one timing loop (a module beside them: each script runs with bench/ on its path)."""
from __future__ import annotations

import time
from collections.abc import Callable

import torch


def seconds_per_call(fn: Callable[[], object], repeat: int, device: str) -> float:
    """Mean wall time of ``fn()`` over ``repeat`` calls in a row, with a CUDA device's queue drained
    before and after (its kernels run asynchronously: the time is the work's, not the launches')."""
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    sync()
    start = time.perf_counter()
    for _ in range(repeat):
        fn()
    sync()
    return (time.perf_counter() - start) / repeat
