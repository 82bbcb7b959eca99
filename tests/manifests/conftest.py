"""A builder of tiny IEMOCAP trees (text files and short real wavs) with the release's quirks, and
``run_recipe``, which runs a corpus recipe's command and reads its JSON summary."""
from __future__ import annotations

import itertools
import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from democorpus import speech
from manifests.cli import cli

HEADER = "% [START_TIME - END_TIME] TURN_NAME EMOTION [V, A, D]\n\n"


def write_wav(path: Path, seconds: float = 0.2) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    speech.write_wav(path, 0.1 * np.sin(np.arange(int(speech.SAMPLE_RATE * seconds)) * 0.05))


def add_dialog(
    root: Path,
    dialog: str,
    turns: list[tuple[str, str, float, float, str]],
    *,
    wavs: bool = True,
    video: bool = True,
    extra_transcript: str = "",
) -> None:
    """Write one dialog: ``turns`` are (utt_id, label, start, end, text); annotator lines follow each summary line."""
    session = root / f"Session{int(dialog[3:5])}"
    evaluation = session / "dialog" / "EmoEvaluation"
    evaluation.mkdir(parents=True, exist_ok=True)
    lines = [HEADER]
    for utt_id, label, start, end, _ in turns:
        lines.append(f"[{start:.4f} - {end:.4f}]\t{utt_id}\t{label}\t[2.5000, 3.0000, 3.5000]\n")
        lines.append("C-E1:\tNeutral state;\t()\nC-E2:\tFrustration; Anger;\t(irritated)\n")
        lines.append(f"C-{utt_id[-4]}1:\tNeutral state;\t()\n")
        lines.append("A-E1:\tval 3; act 2; dom  2;\t()\nA-F1:\tval 2; act 3; dom  3;\t(mildly aggravated)\n\n")
    (evaluation / f"{dialog}.txt").write_text("".join(lines), encoding="utf-8")
    transcript = session / "dialog" / "transcriptions"
    transcript.mkdir(parents=True, exist_ok=True)
    text_lines = [f"{utt_id} [{start:08.4f}-{end:08.4f}]: {text}\n" for utt_id, _, start, end, text in turns]
    (transcript / f"{dialog}.txt").write_text("".join(text_lines) + extra_transcript, encoding="utf-8")
    if wavs:
        for utt_id, *_ in turns:
            write_wav(session / "sentences" / "wav" / dialog / f"{utt_id}.wav")
    if video:
        avi = session / "dialog" / "avi" / "DivX" / f"{dialog}.avi"
        avi.parent.mkdir(parents=True, exist_ok=True)
        avi.write_bytes(b"RIFF-not-decoded-by-the-parser")


@pytest.fixture
def iemocap_tree(tmp_path: Path) -> Callable[..., Path]:
    """Returns ``add(dialog, turns, **options)``; the tree's root is ``tmp_path / 'IEMOCAP_full_release'``."""
    root = tmp_path / "IEMOCAP_full_release"
    root.mkdir()

    def add(dialog: str, turns: list[tuple[str, str, float, float, str]], **options) -> Path:
        add_dialog(root, dialog, turns, **options)
        return root

    return add


@pytest.fixture
def run_recipe(tmp_path: Path) -> Callable[..., tuple[dict, Path]]:
    """``run_recipe(COMMAND, ROOT, *OPTIONS)`` runs `manifests COMMAND ROOT --out FILE --json OPTIONS` (FILE a new
    one in ``tmp_path``), checks that it succeeded, and returns its JSON summary and FILE."""
    runs = itertools.count()

    def run(command: str, root: Path, *options: str) -> tuple[dict, Path]:
        out = tmp_path / f"{command}-{next(runs)}.jsonl"
        result = CliRunner().invoke(cli, [command, str(root), "--out", str(out), "--json", *options])
        assert result.exit_code == 0, result.output
        return json.loads(result.stdout), out

    return run
