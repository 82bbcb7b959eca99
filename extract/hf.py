"""What the Hugging Face encoders of every modality share: finding a model folder offline,
hashing it, choosing layers, and the compute dtype.

Models are always loaded by folder with ``local_files_only=True``: a hub id works only
when it is already in the local Hugging Face cache, never by downloading.
"""
from __future__ import annotations

import json
import os
import struct
import zipfile
from pathlib import Path

from features.provenance import sha256_files

from .base import EncoderConfigError, torch_dtype

# Files in a model folder that change the values it computes: the weights, and the
# configs of the model, its feature extractor and its tokenizer.
_VALUE_FILE_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".msgpack", ".h5", ".json", ".txt", ".model")
_IGNORED_NAMES = {"README.md", ".gitattributes", "LICENSE", "LICENSE.txt"}
# The weight files transformers' PyTorch models load, and the index of a sharded checkpoint.
_TORCH_WEIGHTS = ("model.safetensors", "pytorch_model.bin")
_SHARD_INDEXES = ("model.safetensors.index.json", "pytorch_model.bin.index.json")


def resolve_model_dir(arg: str) -> Path:
    """The local folder for ``arg``: a folder path, or a hub id already in the Hugging Face cache."""
    path = Path(arg).expanduser()
    if path.is_dir():
        return check_model_dir(path.resolve())
    if path.is_absolute() or arg.startswith((".", "~")) or os.sep + os.sep in arg:
        raise EncoderConfigError(f"no model folder at {arg}: pass a folder written by save_pretrained (hf:/path/to/model)")
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HFValidationError, LocalEntryNotFoundError

    try:
        return check_model_dir(Path(snapshot_download(arg, local_files_only=True)))
    except HFValidationError as err:
        raise EncoderConfigError(f"{arg!r} is neither a model folder nor a Hugging Face hub id: {err}") from err
    except LocalEntryNotFoundError as err:
        raise EncoderConfigError(
            f"model {arg!r} is not in the local Hugging Face cache and extraction never downloads: "
            f"download it on a machine with network (`hf download {arg} --local-dir DIR`), "
            f"copy DIR here and pass --encoder hf:DIR"
        ) from err


def check_model_dir(model_dir: Path) -> Path:
    """``model_dir`` if it holds what transformers will load: a config.json and complete weights.

    Checked here so that a half-copied folder gets a message naming the folder and the
    missing or damaged file, not a traceback from deep inside transformers."""
    config = model_dir / "config.json"
    if not config.is_file():
        raise EncoderConfigError(
            f"{model_dir} has no config.json, so it is not a complete model folder: "
            "copy the whole folder that save_pretrained wrote (config.json and the weights)"
        )
    try:
        parsed = json.loads(config.read_bytes().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise EncoderConfigError(f"{config} is not a readable JSON file ({err}); copy the model folder again") from None
    if not isinstance(parsed, dict):
        raise EncoderConfigError(f"{config} holds no JSON object; copy the model folder again")
    weights = [model_dir / name for name in _TORCH_WEIGHTS if (model_dir / name).is_file()]
    for index in (model_dir / name for name in _SHARD_INDEXES):
        if index.is_file():
            weights += _shards(index)
    if not weights:
        raise EncoderConfigError(
            f"{model_dir} holds no weights ({', '.join(_TORCH_WEIGHTS + _SHARD_INDEXES)}); an encoder never runs with "
            "random weights: copy the weight files too, or save the model with save_pretrained"
        )
    for file in weights:
        if file.suffix == ".safetensors":
            _check_safetensors(file)
        else:
            _check_torch_zip(file)
    return model_dir


def require_file(model_dir: Path, name: str, what: str) -> None:
    """Refuse ``model_dir`` when it lacks ``name`` (a feature extractor's or tokenizer's settings)."""
    if not (model_dir / name).is_file():
        raise EncoderConfigError(
            f"{model_dir} has no {name} ({what}): copy it with the model, or save it there with save_pretrained"
        )


def _shards(index: Path) -> list[Path]:
    try:
        weight_map = json.loads(index.read_text(encoding="utf-8"))["weight_map"]
        names = sorted(set(weight_map.values()))
    except (UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError, AttributeError) as err:
        raise EncoderConfigError(f"{index} is not a readable shard index ({type(err).__name__}: {err}); copy the model folder again") from None
    missing = [n for n in names if not isinstance(n, str) or not (index.parent / n).is_file()]
    if missing:
        raise EncoderConfigError(f"{index.parent} lacks weight shard(s) {missing[:3]} that {index.name} lists; copy the model folder again")
    return [index.parent / n for n in names]


def _check_torch_zip(file: Path) -> None:
    """Refuse a torch.save zip archive whose end (the zip directory) is missing; old pickles pass through."""
    with file.open("rb") as f:
        is_zip = f.read(2) == b"PK"
    if is_zip and not zipfile.is_zipfile(file):
        raise EncoderConfigError(f"{file} is truncated or damaged (a zip archive without its directory); copy the model folder again")


def _check_safetensors(file: Path) -> None:
    """Refuse a .safetensors file whose header is unreadable or describes more bytes than the file holds."""
    size = file.stat().st_size
    with file.open("rb") as f:
        head = f.read(8)
        header_len = struct.unpack("<Q", head)[0] if len(head) == 8 else None
        if header_len is None or header_len > size - 8:
            raise EncoderConfigError(f"{file} is truncated or damaged ({size} bytes: no complete safetensors header); copy the model folder again")
        try:
            header = json.loads(f.read(header_len).decode("utf-8"))
            ends = [int(t["data_offsets"][1]) for k, t in header.items() if k != "__metadata__"]
        except (UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError, ValueError, IndexError, AttributeError) as err:
            raise EncoderConfigError(f"{file} has a damaged safetensors header ({type(err).__name__}: {err}); copy the model folder again") from None
    need, have = max(ends, default=0), size - 8 - header_len
    if need > have:
        raise EncoderConfigError(
            f"{file} is truncated: its header describes {need} bytes of tensors, the file holds {have}; copy the model folder again"
        )


def model_files_sha256(model_dir: Path) -> str:
    """sha256 over the weight and config files of a model folder (not its README)."""
    files = [
        p
        for p in model_dir.iterdir()
        if p.is_file() and p.name not in _IGNORED_NAMES and p.suffix in _VALUE_FILE_SUFFIXES
    ]
    if not any(p.suffix in (".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".msgpack", ".h5") for p in files):
        raise EncoderConfigError(f"{model_dir} holds no weight files (*.safetensors, *.bin...): is it a complete model folder?")
    return sha256_files(files)


def parse_layers(spec: str | None, num_hidden_layers: int) -> tuple[str, list[int] | None]:
    """Normalise ``--layers`` against a model with ``num_hidden_layers`` transformer layers.

    ``last`` (default) keeps the last hidden state, (T, D); ``all`` keeps the
    embedding output and every layer, ``num_hidden_layers + 1`` of them, (L, T, D);
    ``i,j,...`` keeps those hidden states (0 is the embedding output). Returns the
    normalised label and the hidden-state indices (None for ``last``).
    """
    spec = (spec or "last").strip()
    if spec == "last":
        return "last", None
    if spec == "all":
        return "all", list(range(num_hidden_layers + 1))
    try:
        indices = [int(part) for part in spec.split(",")]
    except ValueError:
        raise EncoderConfigError(
            f"--layers {spec!r}: use 'last', 'all' or comma-separated hidden-state indices 0..{num_hidden_layers}"
        ) from None
    bad = [i for i in indices if not 0 <= i <= num_hidden_layers]
    if bad or len(set(indices)) != len(indices):
        raise EncoderConfigError(
            f"--layers {spec!r}: indices must be distinct and in 0..{num_hidden_layers} "
            f"(0 is the embedding output, {num_hidden_layers} the last layer)"
        )
    return ",".join(map(str, indices)), indices


# Parameters an encoder never uses for hidden states: the sentence pooler (roberta-base's
# checkpoint has none, loading it into RobertaModel leaves it random) and wav2vec2's
# training-time mask embedding.
_UNUSED_PARAMETERS = ("pooler.", "masked_spec_embed")


def load_model(model_dir: Path, device: str, dtype: str):
    """``AutoModel`` from ``model_dir`` in eval mode on ``device``; refuses a folder that lacks weights.

    transformers fills parameters missing from the checkpoint with random values and
    only logs it; an encoder must never run like that, so missing keys are an error.
    """
    from transformers import AutoModel

    model, info = AutoModel.from_pretrained(model_dir, local_files_only=True, output_loading_info=True)
    missing = sorted(k for k in info.get("missing_keys") or [] if not any(part in k for part in _UNUSED_PARAMETERS))
    if missing:
        raise EncoderConfigError(
            f"{model_dir}: the checkpoint has no weights for {len(missing)} parameter(s) of {type(model).__name__} "
            f"(e.g. {', '.join(missing[:3])}); they would be random: use a complete model folder"
        )
    return model.to(device=device, dtype=torch_dtype(dtype)).eval()


def quiet_transformers() -> None:
    """Silence transformers' own weight-loading bars: extraction shows one progress bar."""
    from transformers.utils import logging

    logging.disable_progress_bar()


class HFHiddenStates:
    """Mixin for encoders over a transformers model: the model, the hidden states ``--layers``
    keeps, and the ``Encoder`` properties that follow from them.

    The encoder sets ``self.model_dir`` and ``self._config``, then calls :meth:`_load_hf`.
    """

    computes_in_dtype = True

    def _load_hf(self) -> None:
        self._layers_label, self._indices = parse_layers(self.options.get("layers"), int(self._config.num_hidden_layers))
        self._model = load_model(self.model_dir, self.device, self.dtype)
        self._sha = model_files_sha256(self.model_dir)

    def _hidden_states(self, **inputs):
        """The kept hidden states of one forward pass: (B, T, D), or (B, L, T, D) for several layers; float32 numpy."""
        import torch

        with torch.inference_mode():
            result = self._model(**inputs, output_hidden_states=self._indices is not None)
            if self._indices is None:
                hidden = result.last_hidden_state
            else:
                # The last index is the model's output, as `last` gives it: on models with a LayerNorm
                # after the last layer (wav2vec2-large, WavLM-large) transformers 5 records the stream
                # before that norm as the last hidden state (4.x recorded it after).
                top = len(result.hidden_states) - 1
                states = [result.last_hidden_state if i == top else result.hidden_states[i] for i in self._indices]
                hidden = torch.stack(states, dim=1)
            return hidden.float().cpu().numpy()

    @property
    def dim(self) -> int:
        return int(self._config.hidden_size)

    @property
    def layers(self) -> str:
        return self._layers_label

    @property
    def num_layers(self) -> int | None:
        """L when several hidden states are kept, None for ``last``."""
        return None if self._indices is None else len(self._indices)

    def weights_sha256(self) -> str:
        return self._sha
