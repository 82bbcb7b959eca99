"""The encoder contract, its registry, and the compute dtypes.

An encoder turns one manifest row into one array. Extraction is split so the
GPU never waits on I/O: :meth:`Encoder.load` runs in CPU worker threads
(decode, resample, crop, tokenise), :meth:`Encoder.encode` runs the frozen
model on a batch of loaded items in the main thread.

Encoders are registered by the prefix of their spec, e.g. ``hf:facebook/wav2vec2-base``
is the ``hf`` encoder of its modality with argument ``facebook/wav2vec2-base``.

Adding an encoder is one module plus its registration: subclass :class:`Encoder`
(set ``modality`` and ``kind``, implement ``cost``, ``length``, ``load``, ``encode``
and ``dim``; say which ``--`` options it takes in ``accepted_options``), decorate the
class with :func:`register`, and name the module in ``_ENCODER_MODULES`` below.
Its ``load`` raises :class:`ExtractError` for bad input; any other exception is
taken for a bug (the pipeline stops when one repeats). Import torch and the model
libraries inside the methods, never at the top of the module: listing the encoders
(``extract encoders``) imports every encoder module. tests/extract/test_encoder_contract.py
then runs the contract over it without edits when it needs no weights; an encoder
that loads weights adds a small offline model to that test's ``WEIGHTS`` table.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, ClassVar

import numpy as np

from emocache.errors import EmocacheError
from manifests import Utterance

#: The dtypes an encoder can compute in (``--dtype``); the stored dtype is a separate choice (``--store-dtype``).
COMPUTE_DTYPES = ("float16", "bfloat16", "float32")


def check_choice(flag: str, value: Any, choices: tuple[str, ...]) -> None:
    """Refuse ``value`` for ``flag`` unless it is one of ``choices``, naming them."""
    if value not in choices:
        raise EncoderConfigError(f"{flag} {value!r}: choose one of {list(choices)}")


def torch_dtype(name: str):
    """The torch dtype of a compute dtype name (torch is imported here, only when a model is built)."""
    check_choice("--dtype", name, COMPUTE_DTYPES)
    import torch

    return getattr(torch, name)


class ExtractError(EmocacheError):
    """One utterance could not be processed; recorded in the set's failure table.

    ``stage`` says where it broke (``"decode"``, ``"encode"``, ``"input"``...).
    """

    def __init__(self, utt_id: str, stage: str, message: str):
        super().__init__(f"{utt_id}: {stage}: {message}")
        self.utt_id = utt_id
        self.stage = stage
        self.message = message


class EncoderConfigError(EmocacheError, ValueError):
    """An encoder spec or option that cannot work; the message says what would."""


class Encoder(ABC):
    """A frozen feature extractor for one modality.

    Subclasses set ``modality`` and ``kind`` and are registered with :func:`register`.
    Construction loads the model (once per process or Dask worker).
    """

    modality: ClassVar[str]
    kind: ClassVar[str]
    #: The option keys (the fields of :class:`extract.options.EncoderOptions`) this encoder understands; any other
    #: option given is refused with :class:`EncoderConfigError`. None accepts all.
    accepted_options: ClassVar[frozenset[str] | None] = None
    #: Default total :meth:`cost` per batch when neither a batch cost nor a batch size is given.
    batch_cost: ClassVar[float] = 60.0
    #: What :meth:`cost` counts, for progress bars ("media-s", "tokens").
    cost_unit: ClassVar[str] = "media-s"
    #: True when ``dtype`` (the compute dtype) changes the values, as in a torch model run in
    #: float16: the set's identity then includes it. openSMILE and HOG ignore ``dtype``.
    computes_in_dtype: ClassVar[bool] = False
    #: The stored dtype when none is asked for: float16 halves the store; an encoder whose values
    #: can exceed float16's range (65504) says float32.
    default_store_dtype: str = "float16"

    def __init__(self, arg: str | None, *, device: str = "cpu", dtype: str = "float32", options: dict[str, Any] | None = None):
        self.arg = arg
        self.device = device
        self.dtype = dtype
        self.options = {k: v for k, v in (options or {}).items() if v is not None}
        self.check_options()

    def check_options(self) -> None:
        """Refuse options this encoder has no use for, naming the ones it takes."""
        if self.accepted_options is None:
            return
        unknown = sorted(set(self.options) - self.accepted_options)
        if unknown:
            flags = ", ".join("--" + k.replace("_", "-") for k in unknown)
            takes = ", ".join("--" + k.replace("_", "-") for k in sorted(self.accepted_options)) or "none"
            raise EncoderConfigError(
                f"{flags} does not apply to the {self.modality} encoder {self.spec!r} (options it takes: {takes})"
            )

    @property
    def spec(self) -> str:
        """The spec string that names this encoder, e.g. ``hf:/models/tiny``."""
        return f"{self.kind}:{self.arg}" if self.arg else self.kind

    @property
    def provenance_spec(self) -> str:
        """The spec recorded in the set's provenance (and so in its identity).

        Defaults to :attr:`spec`. Encoders loaded from a local folder override it
        so that moving the folder does not change the identity (the weights hash
        still tells two folders apart).
        """
        return self.spec

    @abstractmethod
    def cost(self, utt: Utterance) -> float:
        """A cheap size estimate (seconds of media, tokens) used to group batches by length."""

    @abstractmethod
    def length(self, utt: Utterance) -> int | None:
        """Frames this utterance will have, when it can be known before encoding; else None."""

    @abstractmethod
    def load(self, utt: Utterance) -> Any:
        """Read and preprocess the utterance's media on the CPU (thread-safe).

        Raise :class:`ExtractError` for bad input (missing, empty, undecodable...).
        """

    @abstractmethod
    def encode(self, items: list[Any]) -> list[np.ndarray]:
        """Run the frozen model over a batch of loaded items.

        Returns one float32 array per item: ``(T, D)``, or ``(L, T, D)`` when several
        layers are kept. Must give the same values for an item whatever batch it is in
        (up to float rounding), so padding masks must be honoured.

        Runs under ``torch.inference_mode()``. If it raises, the pipeline retries the
        batch one item at a time, so one bad item fails alone; raise
        :class:`ExtractError` to give that item's failure a stage and a reason.
        """

    @property
    @abstractmethod
    def dim(self) -> int:
        """Feature width D."""

    @property
    def frame_rate(self) -> float | None:
        """Frames per second of the output, or None where time has no rate (tokens)."""
        return None

    @property
    def layers(self) -> str | None:
        """Which layers are kept (``"last"``, ``"all"``, ``"0,3,6"``), None for single-output encoders."""
        return None

    @property
    def num_layers(self) -> int | None:
        """L when :meth:`encode` returns ``(L, T, D)`` arrays, None for ``(T, D)``."""
        return None

    def weights_sha256(self) -> str | None:
        """sha256 over the weight files, None where there are none (openSMILE, HOG)."""
        return None

    def preprocessing(self) -> dict[str, Any]:
        """Parameters that change the values (sample rate, frames per clip, crop...)."""
        return {}

    def counts(self, item: Any) -> dict[str, int]:
        """Whole numbers worth keeping about one loaded item (e.g. video frames without a face).

        The pipeline stores them with the utterance's features; the store sums them
        per set (``features info``), so they survive resumes, Dask parts and merges.
        """
        return {}

    def notes(self) -> list[str]:
        """Warnings for the end-of-run summary, e.g. how many transcripts were truncated, since the last call."""
        return []


#: The modalities and the modules whose import registers their encoders.
MODALITIES = ("audio", "text", "video")
_ENCODER_MODULES = ("extract.audio", "extract.text", "extract.video")

_REGISTRY: dict[tuple[str, str], type[Encoder]] = {}
#: The default spec per modality when ``--encoder`` is not given: all run offline with real weights.
#: The audio default was chosen on real speech with validation-only scores (bench/RESULTS.md, "Defaults on real speech").
DEFAULTS: dict[str, str] = {"audio": "opensmile:ComParE_2016-functionals", "text": "minilm", "video": "hog"}
_loaded = False


def load_builtin_encoders() -> None:
    """Import the modules that register the built-in encoders (once; cheap: models load lazily)."""
    global _loaded
    if _loaded:
        return
    import importlib

    _loaded = True
    for name in _ENCODER_MODULES:
        importlib.import_module(name)


def register(cls: type[Encoder]) -> type[Encoder]:
    """Class decorator: make ``cls`` available as ``<kind>:<arg>`` for its modality."""
    key = (cls.modality, cls.kind)
    if key in _REGISTRY:
        raise ValueError(f"encoder {cls.kind!r} for {cls.modality} registered twice")
    _REGISTRY[key] = cls
    return cls


def registered(modality: str | None = None) -> dict[tuple[str, str], type[Encoder]]:
    """The registered encoder classes keyed by (modality, kind), optionally for one modality."""
    load_builtin_encoders()
    return {k: v for k, v in _REGISTRY.items() if modality is None or k[0] == modality}


def create_encoder(modality: str, spec: str | None = None, **kwargs: Any) -> Encoder:
    """Build the encoder that ``spec`` names (``kind`` or ``kind:arg``) for ``modality``."""
    load_builtin_encoders()
    if modality not in MODALITIES:
        raise EncoderConfigError(f"unknown modality {modality!r}; choose one of {list(MODALITIES)}")
    spec = spec or DEFAULTS.get(modality)
    if spec is None:
        raise EncoderConfigError(f"no default encoder for modality {modality!r}; choose one of {sorted(DEFAULTS)}")
    kind, _, arg = spec.partition(":")
    cls = _REGISTRY.get((modality, kind))
    if cls is None:
        kinds = sorted(k for m, k in _REGISTRY if m == modality)
        raise EncoderConfigError(f"unknown {modality} encoder {kind!r} in {spec!r}; registered: {kinds}")
    return cls(arg or None, **kwargs)
