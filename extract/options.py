"""What one extraction is asked to do, as one frozen, validated object.

``extract run`` builds an :class:`ExtractOptions` from its flags and hands it to
:func:`extract.pipeline.extract_manifest`; a Dask run sends it unchanged to every shard
as JSON (:meth:`ExtractOptions.to_json`), so the client and the workers build the
encoder from the same values. Building one checks everything that can be checked
without the manifest, the store or the model, with the flag's name in the message.
"""
from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from emocache.devices import device_name_problem
from emocache.scheduler import check_scheduler
from features import STORE_DTYPES

from .base import COMPUTE_DTYPES, DEFAULTS, MODALITIES, Encoder, EncoderConfigError, check_choice, create_encoder


@dataclass(frozen=True)
class EncoderOptions:
    """The encoder options ``extract run`` passes through (``--max-tokens`` is ``max_tokens``); None: not given.

    An encoder refuses a given option it has no use for (:attr:`Encoder.accepted_options`).
    """

    #: Hidden states to keep: ``last``, ``all`` or indices like ``0,6,12`` (hf encoders).
    layers: str | None = None
    #: A weights file (timm).
    weights: str | None = None
    #: Allow a pickled ``weights`` file.
    trust_pickle: bool | None = None
    #: Frames sampled per clip (video).
    frames: int | None = None
    #: Transcripts are cut to this many tokens (text).
    max_tokens: int | None = None

    def __post_init__(self) -> None:
        if self.weights is not None:
            object.__setattr__(self, "weights", os.fspath(self.weights))

    @classmethod
    def from_dict(cls, options: dict[str, Any] | None) -> EncoderOptions:
        """From ``{"layers": "all", ...}``, refusing keys that are no encoder option."""
        names = [f.name for f in fields(cls)]
        unknown = sorted(set(options or {}) - set(names))
        if unknown:
            raise EncoderConfigError(f"unknown encoder option(s) {unknown}; the options are {names}")
        return cls(**(options or {}))

    def given(self) -> dict[str, Any]:
        """The options that were given, as the encoders take them."""
        return {k: v for k, v in asdict(self).items() if v is not None}


@dataclass(frozen=True)
class Batching:
    """How the pending utterances are batched, loaded and committed."""

    #: Total cost per batch (``--batch-seconds``): media seconds (audio, video) or tokens (text);
    #: with neither this nor ``size``, the encoder's own :attr:`Encoder.batch_cost`.
    cost: float | None = None
    #: Utterances per batch (``--batch-size``), instead of ``cost``.
    size: int | None = None
    #: Threads that load (decode) ahead of the encoder; default one per core, at most 8.
    threads: int | None = None
    #: Batches between commits: a killed run loses at most these.
    commit_every: int = 4

    def __post_init__(self) -> None:
        if self.cost is not None and self.size is not None:
            raise EncoderConfigError("give either a batch cost (--batch-seconds) or a batch size (--batch-size), not both")
        if self.size is not None and self.size < 1:
            raise EncoderConfigError(f"--batch-size {self.size}: must be at least 1")
        if self.cost is not None and self.cost <= 0:
            raise EncoderConfigError(f"--batch-seconds {self.cost}: must be positive")
        if self.threads is not None and self.threads < 1:
            raise EncoderConfigError(f"threads {self.threads}: must be at least 1")
        if self.commit_every < 1:
            raise EncoderConfigError(f"commit_every {self.commit_every}: must be at least 1")


@dataclass(frozen=True)
class ExtractOptions:
    """One extraction: which encoder, where it runs, into which set, and how much of the manifest.

    ``encoder``, ``set_name`` and ``dtype`` are resolved when built (the modality's default
    encoder, the modality's name, float16 on cuda and float32 on cpu), so the JSON a shard
    receives names what the client ran. ``store_dtype`` None is the encoder's own default
    (:attr:`Encoder.default_store_dtype`), known once the encoder is built.
    """

    modality: str
    #: Spec ``KIND`` or ``KIND:ARG`` (``extract encoders`` lists them).
    encoder: str | None = None
    set_name: str | None = None
    #: Torch device: cpu, cuda or cuda:N.
    device: str = "cpu"
    #: Compute dtype on the device (one of :data:`~extract.base.COMPUTE_DTYPES`).
    dtype: str | None = None
    store_dtype: str | None = None
    batching: Batching = field(default_factory=Batching)
    #: At most this many of the utterances still to do.
    limit: int | None = None
    #: Try again the utterances that failed in earlier runs.
    retry_failed: bool = False
    encoder_options: EncoderOptions = field(default_factory=EncoderOptions)
    #: ``local:N`` or ``tcp://HOST:PORT``: run on Dask (:mod:`emocache.scheduler`).
    scheduler: str | None = None

    def __post_init__(self) -> None:
        if self.modality not in MODALITIES:
            raise EncoderConfigError(f"unknown modality {self.modality!r}; choose one of {list(MODALITIES)}")
        resolved = {
            "encoder": self.encoder or DEFAULTS[self.modality],
            "set_name": self.set_name or self.modality,
            "dtype": self.dtype or ("float16" if self.gpu else "float32"),
        }
        for name, value in resolved.items():
            object.__setattr__(self, name, value)
        check_choice("--dtype", self.dtype, COMPUTE_DTYPES)
        if self.store_dtype is not None:
            check_choice("--store-dtype", self.store_dtype, STORE_DTYPES)
        if self.limit is not None and self.limit < 1:
            raise EncoderConfigError(f"--limit {self.limit}: must be at least 1")
        problem = device_name_problem(self.device)  # checked here: openSMILE and HOG never read it
        if problem is not None:
            raise EncoderConfigError(problem)
        check_scheduler(self.scheduler)

    @property
    def gpu(self) -> bool:
        """True when the encoder runs on a CUDA device (Dask tasks then ask for a ``GPU``)."""
        return self.device.startswith("cuda")

    def create_encoder(self, *, describe_only: bool = False) -> Encoder:
        """The encoder these options name, on ``device`` in ``dtype``.

        ``describe_only``: on the CPU in float32, to describe the set and cost the rows on a
        client whose workers build the real one.
        """
        device, dtype = ("cpu", "float32") if describe_only else (self.device, self.dtype)
        return create_encoder(self.modality, self.encoder, device=device, dtype=dtype, options=self.encoder_options.given())

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ExtractOptions:
        return cls(**{**data, "batching": Batching(**data["batching"]), "encoder_options": EncoderOptions(**data["encoder_options"])})
