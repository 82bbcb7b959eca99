"""Building blocks of the stage-2 head: masked pooling, input projection, attention, GRUs, cross-modal blocks.

Shapes: B batch, T frames, D input width, L stored layers, d common width. Every mask is a bool tensor
(B, T), True = real frame, and real frames always come first (a prefix); padding frames take part in
no sum, mean, softmax or attention anywhere below. Every shape may also carry a leading member axis K
(stacked ensemble members, :mod:`train.members`): axes are counted from the right throughout.
"""
from __future__ import annotations

import warnings

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from train.dropout import Dropout
from train.members import LayerNorm, Linear, linear, stacked


def zero_padding(x: Tensor, mask: Tensor) -> Tensor:
    """x (B, T, d) with padding frames set to exactly 0 (NaN/inf in padding included).

    ``torch.where`` rather than a product, so that garbage in padding can never leak in as 0 * NaN.
    """
    return torch.where(mask.unsqueeze(-1), x, torch.zeros((), dtype=x.dtype, device=x.device))


def masked_mean(x: Tensor, mask: Tensor) -> Tensor:
    """Mean over real frames: x (B, T, d), mask (B, T) -> (B, d). Each row needs one real frame."""
    weights = mask.to(x.dtype).unsqueeze(-1)
    total = (zero_padding(x, mask) * weights).sum(dim=-2)
    return total / weights.sum(dim=-2).clamp_min(1.0)


class TimePool(nn.Module):
    """Utterance embedding from a frame sequence: x (B, T, d), mask (B, T) -> (B, out_dim).

    ``"mean"`` (the paper): the masked mean, out_dim = d. ``"stats"`` (statistics pooling, as in
    x-vectors and most SER heads; not the paper's): the masked mean and standard deviation over
    real frames, concatenated, out_dim = 2d. The std is sqrt(var + eps), so its gradient stays finite
    for a one-frame utterance (whose std is then ~0).
    """

    MODES = ("mean", "stats")

    def __init__(self, dim: int, mode: str = "mean", eps: float = 1e-5):
        super().__init__()
        if mode not in self.MODES:
            raise ValueError(f"pooling {mode!r} is not one of {list(self.MODES)}")
        self.mode = mode
        self.eps = eps
        self.out_dim = dim if mode == "mean" else 2 * dim

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        mean = masked_mean(x, mask)
        if self.mode == "mean":
            return mean
        var = masked_mean((zero_padding(x, mask) - mean.unsqueeze(-2)).pow(2), mask)
        return torch.cat([mean, torch.sqrt(var + self.eps)], dim=-1)


class BiGRUWeights(nn.Module):
    """The parameters of a one-layer bidirectional ``nn.GRU`` (input ``in_dim``, ``hidden`` units per
    direction), under its names (``weight_ih_l0``, ``bias_hh_l0_reverse``...) and with its
    initialisation, drawn in its order: checkpoints and seeded runs are those of an ``nn.GRU``.
    :func:`masked_gru` runs the recurrence. Not an ``nn.GRU`` itself: ``torch.compile`` (the CUDA
    graph capture of a training step) refuses to trace a model that holds one."""

    def __init__(self, in_dim: int, hidden: int):
        super().__init__()
        self.hidden_size = hidden
        for suffix in ("", "_reverse"):
            self.register_parameter(f"weight_ih_l0{suffix}", nn.Parameter(torch.empty(3 * hidden, in_dim)))
            self.register_parameter(f"weight_hh_l0{suffix}", nn.Parameter(torch.empty(3 * hidden, hidden)))
            self.register_parameter(f"bias_ih_l0{suffix}", nn.Parameter(torch.empty(3 * hidden)))
            self.register_parameter(f"bias_hh_l0{suffix}", nn.Parameter(torch.empty(3 * hidden)))
        bound = hidden ** -0.5
        for weight in self.parameters():
            nn.init.uniform_(weight, -bound, bound)


def masked_gru(gru: BiGRUWeights | nn.GRU, x: Tensor, mask: Tensor, *, fused: bool | None = None) -> Tensor:
    """A one-layer bidirectional batch-first ``gru`` over real frames only: x (B, T, d_in), mask (B, T)
    -> (B, T, 2 * hidden), padding 0; with stacked members' weights (:mod:`train.members`), x (K, B, T,
    d_in) and mask (K, B, T).

    The same recurrence as ``nn.GRU`` with its own weights (checkpoints keep nn.GRU's names), with a
    backward pass that starts at each utterance's own last real frame, as with packed sequences, and
    no host synchronisation, so a step runs stacked ensemble members and repeats its shapes. Two ways
    to run it, equal up to float rounding:

    - stepped (:func:`_stepped_gru`): plain tensor algebra, one step at a time for all members at once;
      the faster one on the CPU;
    - ``fused`` (:func:`_fused_gru`): torch's own GRU kernel, per member and direction; on a GPU, one
      cuDNN call each instead of some ten kernels per frame. Under ``torch.compile`` it is one opaque
      operator (``emocache::gru_direction``), so the graph holds no loop over frames: one compile with
      dynamic shapes serves every length, where the stepped form would be unrolled and compiled anew
      for each (bench/RESULTS.md).

    ``fused=None`` (the default) fuses on CUDA, and in a compiled step on any device.
    """
    if fused is None:
        fused = x.is_cuda or torch.compiler.is_compiling()
    return zero_padding(_fused_gru(gru, x, mask) if fused else _stepped_gru(gru, x, mask), mask)


def _stepped_gru(gru: BiGRUWeights | nn.GRU, x: Tensor, mask: Tensor) -> Tensor:
    """:func:`masked_gru` stepped in Python, the state held where a frame is padding."""
    hidden = gru.hidden_size
    frames = x.shape[-2]
    keep = mask.unsqueeze(-1)
    outputs = []
    for suffix, steps in (("", range(frames)), ("_reverse", range(frames - 1, -1, -1))):
        w_hh, b_hh = getattr(gru, f"weight_hh_l0{suffix}"), getattr(gru, f"bias_hh_l0{suffix}")
        gates_x = linear(x, getattr(gru, f"weight_ih_l0{suffix}"), getattr(gru, f"bias_ih_l0{suffix}"))
        h = x.new_zeros(x.shape[:-2] + (hidden,))
        out: list[Tensor] = [h] * frames
        for t in steps:
            x_r, x_z, x_n = gates_x[..., t, :].chunk(3, dim=-1)
            h_r, h_z, h_n = linear(h, w_hh, b_hh).chunk(3, dim=-1)
            r = torch.sigmoid(x_r + h_r)
            z = torch.sigmoid(x_z + h_z)
            n = torch.tanh(x_n + r * h_n)
            h = torch.where(keep[..., t, :], n + z * (h - n), h)
            out[t] = h
        outputs.append(torch.stack(out, dim=-2))
    return torch.cat(outputs, dim=-1)


def reversal(mask: Tensor) -> Tensor:
    """Frame indices that reverse each utterance's real frames and leave its padding where it is:
    mask (..., T) -> (..., T) int64. Applied twice it is the identity."""
    t = torch.arange(mask.shape[-1], device=mask.device)
    n = mask.sum(dim=-1, keepdim=True)
    return torch.where(t < n, n - 1 - t, t)


_GRU_WEIGHTS = ("weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0")


def _gru_kernel(x: Tensor, weights: list[Tensor], hidden: int) -> Tensor:
    """torch's one-layer, one-direction GRU (cuDNN on a GPU): x (B, T, d_in) -> (B, T, hidden), with
    ``weights`` in nn.GRU's order; with stacked members' weights (K, ...), x (K, B, T, d_in) and one
    call per member."""
    if weights[0].dim() == 3:
        return torch.stack([_gru_kernel(x[k], [w[k] for w in weights], hidden) for k in range(x.shape[0])])
    h0 = x.new_zeros(1, x.shape[0], hidden)
    # has_biases, num_layers, dropout, train, bidirectional, batch_first; cuDNN keeps what a backward
    # pass needs only with train=True. Batch-first output is a transposed view: made contiguous, the
    # layout that _gru_op's fake tensor promises.
    return torch._VF.gru(x, h0, weights, True, 1, 0.0, torch.is_grad_enabled(), False, True)[0].contiguous()


def _gru_direction(x: Tensor, w_ih: Tensor, w_hh: Tensor, b_ih: Tensor, b_hh: Tensor) -> Tensor:
    """:func:`_gru_kernel` with its weights one by one: x (..., B, T, d_in) -> (..., B, T, hidden)."""
    with warnings.catch_warnings():
        # Member weights are views into stacked tensors, not nn.GRU's flat buffer: cuDNN copies them
        # into one per call (a few small copies), and warns each time that it does.
        warnings.filterwarnings("ignore", message="RNN module weights are not part of single contiguous")
        return _gru_kernel(x, [w_ih, w_hh, b_ih, b_hh], w_hh.shape[-1])


# In a compiled step the GRU is one opaque operator: traced, torch would unroll its loop over frames
# (a graph per length), and cuDNN's RNN is kept out of CUDA graphs (cudagraph_unsafe: inductor
# records the rest of the step around it). Its backward runs the forward again under torch.func.vjp,
# which still records inside an operator, where autograd does not.
_gru_op = torch.library.custom_op("emocache::gru_direction", _gru_direction, mutates_args=(),
                                  tags=torch.Tag.cudagraph_unsafe)


@_gru_op.register_fake
def _(x: Tensor, w_ih: Tensor, w_hh: Tensor, b_ih: Tensor, b_hh: Tensor) -> Tensor:
    return x.new_empty(x.shape[:-1] + (w_hh.shape[-1],))


def _gru_direction_grads(grad: Tensor, x: Tensor, w_ih: Tensor, w_hh: Tensor, b_ih: Tensor,
                         b_hh: Tensor) -> list[Tensor]:
    """Gradients of :func:`_gru_direction` for its output's gradient ``grad``: [x, w_ih, w_hh, b_ih, b_hh],
    each in its input's memory layout (stacked weights are held transposed: train.ensemble), as the
    fake kernel promises."""
    inputs = (x, w_ih, w_hh, b_ih, b_hh)
    with torch.enable_grad():
        _, vjp = torch.func.vjp(_gru_direction, *inputs)
        grads = vjp(grad)
    return [g if g.stride() == t.stride() else torch.empty_like(t).copy_(g) for g, t in zip(grads, inputs)]


_gru_op_grads = torch.library.custom_op("emocache::gru_direction_grads", _gru_direction_grads, mutates_args=(),
                                        tags=torch.Tag.cudagraph_unsafe)


@_gru_op_grads.register_fake
def _(grad: Tensor, x: Tensor, w_ih: Tensor, w_hh: Tensor, b_ih: Tensor, b_hh: Tensor) -> list[Tensor]:
    return [torch.empty_like(t) for t in (x, w_ih, w_hh, b_ih, b_hh)]


def _save_gru_inputs(ctx, inputs: tuple, output: Tensor) -> None:
    ctx.save_for_backward(*inputs)


def _gru_op_backward(ctx, grad: Tensor) -> tuple[Tensor, ...]:
    return tuple(_gru_op_grads(grad, *ctx.saved_tensors))


_gru_op.register_autograd(_gru_op_backward, setup_context=_save_gru_inputs)


def _fused_gru(gru: BiGRUWeights | nn.GRU, x: Tensor, mask: Tensor) -> Tensor:
    """:func:`masked_gru` through torch's GRU kernel, one call per member and direction.

    Padding comes last, so the forward direction runs over padded batches unchanged; the backward
    direction runs forward over each utterance's real frames reversed (:func:`reversal`), and its
    outputs are put back in order. Always in float32, outside any autocast: cuDNN's GRU takes the
    weights as they are. Eagerly, autograd records the kernel itself; compiled, it is ``_gru_op``."""
    run = _gru_op if torch.compiler.is_compiling() else _gru_direction
    order = reversal(mask).unsqueeze(-1)
    x = x.float()
    with torch.autocast(x.device.type, enabled=False):
        forward = run(x, *[getattr(gru, name) for name in _GRU_WEIGHTS])
        backward = run(x.gather(-2, order.expand(x.shape)), *[getattr(gru, name + "_reverse") for name in _GRU_WEIGHTS])
    return torch.cat([forward, backward.gather(-2, order.expand(backward.shape))], dim=-1)


class RecurrentBranch(nn.Module):
    """A recurrent audio branch (ours, not the paper's, whose audio has none): x + BiGRU(x), LayerNorm.

    x (B, T, d), mask (B, T) -> (B, T, d), padding frames 0; d/2 GRU units per direction.
    """

    def __init__(self, dim: int):
        super().__init__()
        if dim % 2:
            raise ValueError(f"width {dim} must be even: the bidirectional GRU has d/2 units per direction")
        self.gru = BiGRUWeights(dim, dim // 2)
        self.norm = LayerNorm(dim)

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        return zero_padding(self.norm(x + masked_gru(self.gru, x, mask)), mask)


def masked_pool_time(x: Tensor, mask: Tensor, k: int) -> tuple[Tensor, Tensor]:
    """Masked average pooling in time by k: x (B, T, D), mask (B, T) -> (B, ceil(T/k), D), (B, ceil(T/k)).

    Windows start at frame 0, so a real frame lands in the same window whatever padding follows; a
    window's value is the mean of its real frames and its pooled mask is True where any frame was real.
    """
    if k == 1:
        return x, mask
    lead, (frames, width) = x.shape[:-2], x.shape[-2:]
    pad = (-frames) % k
    x = F.pad(zero_padding(x, mask), (0, 0, 0, pad))
    mask = F.pad(mask, (0, pad))
    windows = frames // k + (pad > 0)
    counts = mask.view(lead + (windows, k)).to(x.dtype)
    total = (x.view(lead + (windows, k, width)) * counts.unsqueeze(-1)).sum(dim=-2)
    n = counts.sum(dim=-1)
    return total / n.clamp_min(1.0).unsqueeze(-1), n > 0


class LayerSum(nn.Module):
    """Learnable softmax-weighted sum over stored layers (SUPERB): (B, L, T, D) -> (B, T, D).

    The weights start equal, so an untrained sum is the layer average.
    """

    def __init__(self, layers: int):
        super().__init__()
        self.logits = nn.Parameter(torch.zeros(layers))

    def forward(self, x: Tensor) -> Tensor:
        weights = torch.softmax(self.logits, dim=-1).to(x.dtype)  # (L,), or (K, L) for stacked members
        return (x * stacked(weights, 1, x.dim() - 2)[..., None, None]).sum(dim=-3)


class InputProjection(nn.Module):
    """Linear(D -> d) + LayerNorm + dropout, per frame: (B, T, D) -> (B, T, d)."""

    def __init__(self, in_dim: int, dim: int, dropout: float):
        super().__init__()
        self.proj = Linear(in_dim, dim)
        self.norm = LayerNorm(dim)
        self.drop = Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        return self.drop(self.norm(self.proj(x)))


class MaskedAttention(nn.Module):
    """Multi-head attention of a query stream over a context stream with a key padding mask.

    x (B, Tq, d), context (B, Tk, d), context_mask (B, Tk) -> (B, Tq, d). Padding keys get no weight;
    padding queries produce values that later masked pooling ignores.
    """

    def __init__(self, dim: int, heads: int, dropout: float):
        super().__init__()
        if dim % heads:
            raise ValueError(f"width {dim} is not divisible by {heads} heads")
        self.heads = heads
        self.q = Linear(dim, dim)
        self.kv = Linear(dim, 2 * dim)
        self.proj = Linear(dim, dim)
        self.attn_drop = Dropout(dropout)
        self.proj_drop = Dropout(dropout)

    def forward(self, x: Tensor, context: Tensor, context_mask: Tensor) -> Tensor:
        lead, (tq, dim), tk = x.shape[:-2], x.shape[-2:], context.shape[-2]
        head_dim = dim // self.heads
        q = self.q(x).view(lead + (tq, self.heads, head_dim)).transpose(-3, -2)  # (..., H, Tq, hd)
        k, v = self.kv(context).view(lead + (tk, 2, self.heads, head_dim)).movedim(-3, 0).transpose(-3, -2)
        scores = (q @ k.transpose(-2, -1)) * head_dim ** -0.5
        scores = scores.masked_fill(~context_mask[..., None, None, :], float("-inf"))
        weights = self.attn_drop(torch.softmax(scores, dim=-1))
        out = weights @ v
        return self.proj_drop(self.proj(out.transpose(-3, -2).reshape(lead + (tq, dim))))


class FeedForward(nn.Module):
    """Position-wise Linear(d -> ff_mult*d) -> ReLU -> dropout -> Linear -> dropout: (B, T, d) -> (B, T, d)."""

    def __init__(self, dim: int, ff_mult: int, dropout: float):
        super().__init__()
        self.fc1 = Linear(dim, ff_mult * dim)
        self.fc2 = Linear(ff_mult * dim, dim)
        self.drop_hidden = Dropout(dropout)
        self.drop = Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        return self.drop(self.fc2(self.drop_hidden(F.relu(self.fc1(x)))))


class AGRU(nn.Module):
    """A-GRU (paper 2.1): bidirectional GRU (d/2 per direction) -> self-attention, residual, LayerNorm.

    x (B, T, d), mask (B, T) -> (B, T, d), padding frames 0. The GRU runs over real frames only
    (:func:`masked_gru`), so a backward pass starts at each utterance's own last real frame and padding
    never changes a result.
    """

    def __init__(self, dim: int, heads: int, dropout: float):
        super().__init__()
        if dim % 2:
            raise ValueError(f"width {dim} must be even: the bidirectional GRU has d/2 units per direction")
        self.gru = BiGRUWeights(dim, dim // 2)
        self.attn = MaskedAttention(dim, heads, dropout)
        self.norm = LayerNorm(dim)

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        h = masked_gru(self.gru, x, mask)
        return zero_padding(self.norm(h + self.attn(h, h, mask)), mask)


class CrossModalBlock(nn.Module):
    """Cross-modal transformer block in the MulT style (paper Eq. 1-2).

    Pre-norm attention with Q from the query (audio) stream and K = V from the other modality, a
    residual onto the query stream, then a pre-norm feed-forward with its own residual.
    q (B, Tq, d), kv (B, Tk, d), kv_mask (B, Tk) -> (B, Tq, d).
    """

    def __init__(self, dim: int, heads: int, ff_mult: int, dropout: float):
        super().__init__()
        self.norm_q = LayerNorm(dim)
        self.norm_kv = LayerNorm(dim)
        self.attn = MaskedAttention(dim, heads, dropout)
        self.norm_ff = LayerNorm(dim)
        self.ff = FeedForward(dim, ff_mult, dropout)

    def forward(self, q: Tensor, kv: Tensor, kv_mask: Tensor) -> Tensor:
        x = q + self.attn(self.norm_q(q), self.norm_kv(kv), kv_mask)
        return x + self.ff(self.norm_ff(x))


class GatedCrossModalBlock(nn.Module):
    """Gated cross-modal attention (paper Eq. 1-4): two parallel CM blocks and a per-channel gate.

    X^F1 = CM_AT(q, X^t), X^F2 = CM_AV(q, X^v); P = sigmoid(Linear_{2d->d}([X^F1; X^F2])) per frame and
    channel; X^F = P * X^F1 + (1 - P) * X^F2. Without the gate (an ablation of ours, not the paper's)
    X^F is the plain average of the two streams. All (B, T_a, d); x_t (B, T_t, d), x_v (B, T_v, d).
    """

    def __init__(self, dim: int, heads: int, ff_mult: int, dropout: float, gate: bool):
        super().__init__()
        self.cm_t = CrossModalBlock(dim, heads, ff_mult, dropout)
        self.cm_v = CrossModalBlock(dim, heads, ff_mult, dropout)
        self.gate = Linear(2 * dim, dim) if gate else None

    def forward(self, q: Tensor, x_t: Tensor, mask_t: Tensor, x_v: Tensor, mask_v: Tensor) -> Tensor:
        f1 = self.cm_t(q, x_t, mask_t)
        f2 = self.cm_v(q, x_v, mask_v)
        if self.gate is None:
            return 0.5 * (f1 + f2)
        p = torch.sigmoid(self.gate(torch.cat([f1, f2], dim=-1)))
        return p * f1 + (1.0 - p) * f2


class ClassifierHead(nn.Module):
    """Linear(in_dim -> d) -> ReLU -> dropout -> Linear(d -> C): (B, in_dim) -> (B, C); in_dim defaults to d."""

    def __init__(self, dim: int, n_classes: int, dropout: float, in_dim: int | None = None):
        super().__init__()
        self.fc1 = Linear(dim if in_dim is None else in_dim, dim)
        self.drop = Dropout(dropout)
        self.fc2 = Linear(dim, n_classes)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(self.drop(F.relu(self.fc1(x))))
