"""Corpus manifests: which utterances exist, where their media are, what their labels are."""
from .csvcorpus import CsvCorpusError, parse_csv
from .iemocap import STANDARD_COUNTS, ParseResult, compare_counts, parse_iemocap, parse_utt_id
from .io import ManifestError, manifest_hash, read_manifest, write_manifest
from .schema import FOUR_CLASSES, SIX_CLASSES, Utterance
from .summary import Summary, summarize

__all__ = [
    "FOUR_CLASSES",
    "SIX_CLASSES",
    "STANDARD_COUNTS",
    "CsvCorpusError",
    "ManifestError",
    "ParseResult",
    "Summary",
    "Utterance",
    "compare_counts",
    "manifest_hash",
    "parse_csv",
    "parse_iemocap",
    "parse_utt_id",
    "read_manifest",
    "summarize",
    "write_manifest",
]
