"""Counter-based dropout: masks from (key, coordinates), the same however a batch is padded."""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from train.dropout import Dropout, dropout_keys, keep_mask


def _keys(n: int, seed: int = 0) -> torch.Tensor:
    return torch.from_numpy(dropout_keys([seed] * n, list(range(n)), 1)[:, 0].copy())


@pytest.mark.parametrize("p", [0.1, 0.4, 0.9])
def test_elements_are_kept_with_probability_one_minus_p(p):
    mask = keep_mask((4, 16, 50, 64), _keys(4), p)
    n = mask.numel()
    assert abs(mask.float().mean().item() - (1 - p)) < 4 * (p * (1 - p) / n) ** 0.5


def test_a_real_element_s_mask_does_not_depend_on_padding_or_on_other_members():
    keys = _keys(3)
    short = keep_mask((3, 8, 5, 2, 7), keys, 0.5)
    padded = keep_mask((3, 8, 9, 6, 7), keys, 0.5)
    assert torch.equal(padded[:, :, :5, :2], short)
    # the last axis too (attention's keys): four neighbours there share one hash
    assert torch.equal(keep_mask((3, 8, 5, 13), keys, 0.5)[..., :7], keep_mask((3, 8, 5, 7), keys, 0.5))
    alone = keep_mask((8, 5, 2, 7), keys[1], 0.5)  # one model: a scalar key, no member axis
    assert torch.equal(alone, short[1])


def test_masks_of_other_keys_and_of_neighbouring_elements_are_unrelated():
    p = 0.5
    keys = torch.from_numpy(dropout_keys([0, 1, 0, 0], [0, 0, 1, 0], 2).copy())
    masks = keep_mask((4, 2, 64, 256), keys[:, 0], p).float()
    other_site = keep_mask((4, 2, 64, 256), keys[:, 1], p).float()
    n = masks[0].numel()
    bound = 4 * (0.25 / n) ** 0.5  # 4 standard errors of an agreement rate of 1/2
    for a, b in [(masks[0], masks[1]), (masks[0], masks[2]), (masks[0], other_site[0]),
                 (masks[0, :, :, 1:], masks[0, :, :, :-1]), (masks[0, :, 1:], masks[0, :, :-1]),
                 (masks[0, 1], masks[0, 0])]:
        assert abs((a == b).float().mean().item() - 0.5) < bound
    assert torch.equal(masks[0], masks[3])  # same seed, step and site: the same mask


def test_keys_depend_on_seed_step_and_site():
    keys = dropout_keys([0, 0, 1, 0], [0, 1, 0, 0], 3)
    assert keys.dtype == np.int64 and keys.shape == (4, 3)
    assert len({int(v) for v in keys[:3].ravel()}) == 9 and np.array_equal(keys[0], keys[3])


def test_too_many_or_too_long_axes_are_refused():
    with pytest.raises(ValueError, match="takes 1 to 4 axes"):
        keep_mask((2, 2, 2, 2, 2), torch.tensor(0), 0.5)
    with pytest.raises(ValueError, match="takes 1 to 4 axes"):
        keep_mask((3,), torch.zeros(3, dtype=torch.int64), 0.5)
    with pytest.raises(ValueError, match="shorter than 65536"):
        keep_mask((2, 70000), torch.tensor(0), 0.5)


def test_the_module_scales_kept_elements_passes_gradients_and_is_off_in_eval():
    drop = Dropout(0.25)
    drop.counter_based, drop.site = True, 1
    drop.keys = torch.tensor([777, 12345])  # every site's key; this one's is column 1
    x = torch.randn(4, 10, 6, requires_grad=True)
    y = drop(x)
    kept = keep_mask(x.shape, torch.tensor(12345), 0.25)
    torch.testing.assert_close(y, torch.where(kept, x / 0.75, torch.zeros(())))
    (grad,) = torch.autograd.grad(y.sum(), x)
    torch.testing.assert_close(grad, kept.float() / 0.75)
    assert torch.equal(drop.eval()(x), x)
    assert "keys" not in drop.state_dict()  # a checkpoint holds no key


def test_without_keys_the_module_draws_from_torch_s_generator():
    drop = Dropout(0.5)
    x = torch.ones(1000)
    torch.manual_seed(7)
    first = drop(x)
    torch.manual_seed(7)
    assert torch.equal(drop(x), first) and not torch.equal(drop(x), first)
    torch.manual_seed(7)
    assert torch.equal(torch.nn.functional.dropout(x, 0.5, True), first)


SHAPES = [(2, 4, 5, 7), (2, 16, 4, 1, 23), (3, 9)]


def test_a_traced_mask_is_the_eager_one():
    """What ``compile`` traces (``torch.compiler.is_compiling()`` true) gives the eager masks."""
    for shape in SHAPES:
        keys = _keys(shape[0])
        traced = torch.compile(lambda k, shape=shape: keep_mask(shape, k, 0.3), backend="aot_eager", fullgraph=True)
        assert torch.equal(traced(keys), keep_mask(shape, keys, 0.3)), shape


def test_a_compiled_mask_serves_every_length_with_one_graph():
    """Compiled with dynamic shapes, the mask hashes each element (four draws a hash, sliced to an odd
    length, would tie the graph to the length modulo 4) and still equals the eager one."""
    from torch._dynamo.testing import CompileCounterWithBackend

    counter = CompileCounterWithBackend("eager")
    compiled = torch.compile(lambda x, k: x * keep_mask(x.shape, k, 0.3), backend=counter, dynamic=True, fullgraph=True)
    keys = _keys(2)
    for n in (8, 7, 12, 9, 5):
        x = torch.randn(2, 3, n)
        assert torch.equal(compiled(x, keys), x * keep_mask(x.shape, keys, 0.3)), n
    assert counter.frame_count == 1


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("g++") is None and shutil.which("c++") is None, reason="inductor needs a C++ compiler")
def test_inductor_compiles_the_mask_to_the_eager_one():
    """Inductor's generated code (a crash there kills the process, hence a subprocess): an earlier form of
    the hash, arange times a 64-bit constant, made torch 2.14's CPU code crash."""
    code = (
        "import torch\n"
        "from train.dropout import keep_mask, dropout_keys\n"
        f"for shape in {SHAPES!r}:\n"
        "    keys = torch.from_numpy(dropout_keys(range(shape[0]), [0] * shape[0], 1)[:, 0].copy())\n"
        "    f = torch.compile(lambda k: keep_mask(shape, k, 0.3), fullgraph=True)\n"
        "    assert torch.equal(f(keys), keep_mask(shape, keys, 0.3)), shape\n"
        "print('same')\n"
    )
    root = Path(__file__).resolve().parents[2]
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600, cwd=root)
    assert done.returncode == 0 and done.stdout.strip() == "same", done.stderr[-2000:]
