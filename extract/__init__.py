"""Stage 1: frozen encoders over a manifest, features cached in a store.

    from extract import run_extraction
    summary = run_extraction("iemocap.jsonl", "iemocap.zarr", "audio", encoder="hf:/models/wav2vec2-base")
    summary.done, summary.skipped, summary.failed, summary.failures

or, with the options as one object (what ``extract run`` builds from its flags):

    from extract import ExtractOptions, extract_manifest
    extract_manifest("iemocap.jsonl", "iemocap.zarr", ExtractOptions("audio", encoder="hf:/models/wav2vec2-base"))

``extract.base`` holds the encoder contract, its registry and the compute dtypes,
``extract.options`` the options, ``extract.pipeline`` a run over a manifest,
``extract.loop`` the encode loop, ``extract.cluster`` the Dask runner;
``extract.audio``, ``extract.text`` and ``extract.video`` the encoders. Importing
this package, ``extract.base``, ``extract.cli`` or an encoder module loads no model
and no torch.
"""
from __future__ import annotations

from typing import Any

__all__ = ["ExtractOptions", "ExtractSummary", "extract_manifest", "run_extraction"]


def __getattr__(name: str) -> Any:
    # Lazy, so that importing extract.base (every encoder module does) stays cheap.
    if name in __all__:
        from . import pipeline

        return getattr(pipeline, name)
    raise AttributeError(f"module 'extract' has no attribute {name!r}")
