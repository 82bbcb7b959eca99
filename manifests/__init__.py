"""Corpus manifests: which utterances exist, where their media are, what their labels are."""
from .io import ManifestError, manifest_hash, read_manifest, write_manifest
from .schema import FOUR_CLASSES, SIX_CLASSES, Utterance

__all__ = [
    "FOUR_CLASSES",
    "SIX_CLASSES",
    "ManifestError",
    "Utterance",
    "manifest_hash",
    "read_manifest",
    "write_manifest",
]
