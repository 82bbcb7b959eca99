"""Reading face-model weights for timm encoders: state dicts, and (only when trusted) whole pickled models.

A state dict (``.pt``/``.pth``/``.bin`` through ``torch.load(weights_only=True)``,
or ``.safetensors``) is the safe format. A whole pickled model, as HSEmotion
publishes its ``enet_b0_*.pt`` files, runs code from the file when unpickled, so
it is only read with an explicit ``trust_pickle``; its tensors then go into a
freshly built timm model, never the unpickled object itself, and its layer
settings (padding, normalisation eps) are checked against the model named.
"""
from __future__ import annotations

import hashlib
import importlib
import math
import pickle
import types
import zipfile
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn

from .base import EncoderConfigError


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class _TimmCompatUnpickler(pickle.Unpickler):
    """Finds classes pickled by older timm releases under their current module paths.

    timm 0.9 moved ``timm.models.layers.*`` to ``timm.layers.*`` and
    ``timm.models.efficientnet_blocks`` to ``timm.models._efficientnet_blocks``;
    models pickled before (HSEmotion's, with timm 0.4.5) name the old paths.
    """

    def find_class(self, module: str, name: str):  # noqa: ANN201 - pickle's signature
        # The new place first: importing the old timm.models.layers shim only warns, then fails.
        for candidate in _moved(module):
            try:
                return getattr(importlib.import_module(candidate), name)
            except (ModuleNotFoundError, AttributeError):
                continue
        return super().find_class(module, name)


def _moved(module: str) -> list[str]:
    parts = module.split(".")
    if parts[:3] == ["timm", "models", "layers"]:
        return [".".join(["timm", "layers", *parts[3:]])]
    if parts[:2] == ["timm", "models"] and len(parts) == 3:
        return [f"timm.models._{parts[2]}"]
    return []


_TIMM_PICKLE = types.ModuleType("emocache_timm_pickle")
_TIMM_PICKLE.Unpickler = _TimmCompatUnpickler  # type: ignore[attr-defined]
_TIMM_PICKLE.load = pickle.load  # type: ignore[attr-defined]


def read_weights(path: Path, *, trust_pickle: bool) -> tuple[dict[str, torch.Tensor], nn.Module | None]:
    """The tensors in ``path``, and the unpickled module when the file held a whole model."""
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return load_file(str(path)), None
        except (SafetensorError, OSError) as err:
            raise EncoderConfigError(f"cannot read safetensors weights {path}: {err}") from None
    if not _is_torch_pickle(path):
        raise EncoderConfigError(f"{path} is not a PyTorch weights file (.pt/.pth state dict) nor .safetensors; check the --weights path")
    try:
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        if not trust_pickle:
            raise EncoderConfigError(
                f"{path} holds a pickled Python object (a whole model, like HSEmotion's enet_b0_8_best_afew.pt), not a plain state dict, "
                "and unpickling runs code stored in the file. If you trust its source, pass --trust-pickle (option trust_pickle=True); "
                "or re-save it once as a state dict: torch.save(torch.load(path, weights_only=False).state_dict(), 'weights.pt')"
            ) from None
        try:
            loaded = torch.load(path, map_location="cpu", weights_only=False, pickle_module=_TIMM_PICKLE)
        except (ModuleNotFoundError, AttributeError, pickle.UnpicklingError, RuntimeError) as err:
            raise EncoderConfigError(f"cannot unpickle the model in {path} with this timm/torch: {err}") from None
    except (RuntimeError, EOFError, OSError, ValueError, IndexError) as err:
        raise EncoderConfigError(f"cannot read weights {path} ({type(err).__name__}: {err}); the file is damaged, copy it again") from None
    if isinstance(loaded, nn.Module):
        return dict(loaded.state_dict()), loaded
    if isinstance(loaded, Mapping) and isinstance(loaded.get("state_dict"), Mapping):
        loaded = loaded["state_dict"]  # a training checkpoint: the model's tensors sit under "state_dict"
    if isinstance(loaded, Mapping) and loaded and all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in loaded.items()):
        return dict(loaded), None
    raise EncoderConfigError(f"{path} holds a {type(loaded).__name__}, not a state dict of tensors or a model; save one with torch.save(model.state_dict(), path)")


def _is_torch_pickle(path: Path) -> bool:
    """True for torch.save's zip format or its older plain-pickle format (not for arbitrary bytes)."""
    if zipfile.is_zipfile(path):
        return True
    with open(path, "rb") as fh:
        return fh.read(1) == b"\x80"  # a pickle protocol >= 2 header


def load_strict(model: nn.Module, state: dict[str, torch.Tensor], path: Path, name: str) -> list[str]:
    """Load ``state`` into ``model`` (built with ``num_classes=0``) strictly; returns the classifier keys dropped."""
    expected = model.state_dict()
    head = getattr(model, "pretrained_cfg", {}).get("classifier") or "classifier"
    heads = (head,) if isinstance(head, str) else tuple(head)
    prefixes = tuple(f"{h}." for h in heads)
    dropped = sorted(k for k in state if k not in expected and k.startswith(prefixes))
    state = {k: v for k, v in state.items() if k not in dropped}
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong = sorted(k for k in set(state) & set(expected) if tuple(state[k].shape) != tuple(expected[k].shape))
    if missing or unexpected or wrong:
        parts = [f"{label} {len(keys)} (e.g. {keys[:3]})" for label, keys in (("missing", missing), ("unexpected", unexpected), ("wrong shape", wrong)) if keys]
        raise EncoderConfigError(f"weights {path} do not fit timm model {name!r}: {'; '.join(parts)}; pass the timm model these weights were trained as")
    model.load_state_dict(state, strict=True)
    return dropped


def architecture_mismatches(loaded: nn.Module, built: nn.Module) -> list[str]:
    """Layers whose computation differs between an unpickled model and the timm model built to hold its weights.

    Same tensors in a differently padded or normalised network give other
    features without any error, e.g. HSEmotion's TF-ported ``tf_efficientnet_b0``
    weights in timm's ``efficientnet_b0``. Compared: convolution padding (TF
    "same" vs symmetric), stride, dilation, groups, and normalisation eps.
    """
    built_modules = dict(built.named_modules())
    found = []
    for name, old in loaded.named_modules():
        new = built_modules.get(name)
        if new is None:
            continue
        if isinstance(old, nn.Conv2d) and isinstance(new, nn.Conv2d) and _conv_signature(old) != _conv_signature(new):
            found.append(f"{name}: {_conv_signature(old)} in the file, {_conv_signature(new)} in the model")
        old_eps, new_eps = getattr(old, "eps", None), getattr(new, "eps", None)
        if isinstance(old_eps, float) and isinstance(new_eps, float) and not math.isclose(old_eps, new_eps):
            found.append(f"{name}: eps {old_eps:g} in the file, {new_eps:g} in the model")
    return found


def _conv_signature(conv: nn.Conv2d) -> tuple:
    dynamic_same = type(conv).__name__ == "Conv2dSame"
    if dynamic_same and all(s == 1 for s in conv.stride) and all(k % 2 for k in conv.kernel_size):
        # Stride-1 odd-kernel TF "same" padding is symmetric padding: timm builds either form for it.
        padding: object = tuple(d * (k - 1) // 2 for k, d in zip(conv.kernel_size, conv.dilation))
    elif dynamic_same:
        padding = "tf-same"
    else:
        padding = tuple(conv.padding) if not isinstance(conv.padding, str) else conv.padding
    return ("padding", padding, "stride", tuple(conv.stride), "dilation", tuple(conv.dilation), "groups", conv.groups)
