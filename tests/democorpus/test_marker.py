"""One marker check: the demo corpus is recognised by its README, the same way by manifests and by train."""
from __future__ import annotations

from pathlib import Path

from democorpus.marker import MARKER, README, synthetic_root
from manifests.iemocap import parse_iemocap
from manifests.io import read_manifest
from manifests.schema import Utterance
from manifests.summary import rows_are_synthetic
from train.cv import synthetic_note


def test_the_demo_corpus_is_recognised_from_any_of_its_files(demo_corpus: Path, demo_manifest: Path) -> None:
    assert (demo_corpus / README).read_text(encoding="utf-8").startswith(MARKER)
    rows = read_manifest(demo_manifest)
    assert synthetic_root(demo_corpus) == demo_corpus
    assert synthetic_root(rows[0].audio) == demo_corpus  # SessionN/sentences/wav/DIALOG/UTT.wav, four folders down
    assert parse_iemocap(demo_corpus).synthetic and rows_are_synthetic(rows)
    assert synthetic_note(rows) == f"SYNTHETIC DEMO CORPUS ({demo_corpus}): these figures say nothing about emotion recognition."


def test_a_readme_that_only_mentions_the_marker_is_not_one(tmp_path: Path) -> None:
    root = tmp_path / "corpus"
    wav = root / "a" / "b" / "c" / "d" / "e" / "f" / "g" / "x.wav"
    wav.parent.mkdir(parents=True)
    (root / README).write_text(f"Release notes; no {MARKER} data here.\n", encoding="utf-8")
    rows = [Utterance(utt_id="x", label="hap", group="1", audio=str(wav))]
    assert synthetic_root(wav) is None and not rows_are_synthetic(rows) and synthetic_note(rows) is None
    (root / README).write_text(f"{MARKER} copy of the demo\n", encoding="utf-8")
    assert synthetic_root(wav) == root and rows_are_synthetic(rows)
    assert synthetic_note(rows) == f"SYNTHETIC DEMO CORPUS ({root}): these figures say nothing about emotion recognition."
    # The path itself and eight folders above it are looked at, no further.
    deeper = wav.parent / "h" / "y.wav"
    assert synthetic_root(deeper.parent) == root and synthetic_root(deeper) is None
