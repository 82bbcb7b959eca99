"""Suite-wide fixtures: a small synthetic IEMOCAP-layout corpus and its six-class manifest, built once per run."""
from __future__ import annotations

from pathlib import Path

import pytest

from democorpus.corpus import make_demo_corpus
from manifests.iemocap import parse_iemocap
from manifests.io import write_manifest


@pytest.fixture(scope="session")
def demo_corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Root of a SYNTHETIC demo corpus (40 six-class utterances, seed 1) in the IEMOCAP_full_release layout."""
    # One writer process here; tests/manifests checks that `manifests demo --workers 2` writes the same files.
    return make_demo_corpus(tmp_path_factory.mktemp("demo_corpus"), utterances=40, seed=1, progress=False)


@pytest.fixture(scope="session")
def demo_manifest(demo_corpus: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The six-class manifest (JSONL) parsed from :func:`demo_corpus`."""
    result = parse_iemocap(demo_corpus, classes="six")
    if result.problems:
        raise RuntimeError("the demo corpus parsed with problems:\n" + "\n".join(result.problems))
    return write_manifest(result.rows, tmp_path_factory.mktemp("demo_manifest") / "demo_six.jsonl")
