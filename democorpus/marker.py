"""How a demo corpus says it is one: its README.txt starts with :data:`MARKER`.

Written by :func:`democorpus.corpus.make_demo_corpus`; read by ``manifests`` (the synthetic
flag and banner of a summary) and by ``train`` (the warning line of every report).
"""
from __future__ import annotations

import os
from pathlib import Path

MARKER = "SYNTHETIC"
README = "README.txt"
# A demo wav lies four folders below the corpus root (SessionN/sentences/wav/DIALOG/UTT.wav);
# looking a few further up costs little and keeps a copied or nested corpus recognised.
LEVELS = 8


def synthetic_root(path: str | os.PathLike) -> Path | None:
    """The demo corpus folder that ``path`` is or lies in (``path`` itself or one of the
    :data:`LEVELS` folders above it, nearest first); ``None`` for anything else."""
    path = Path(path)
    for folder in [path, *path.parents][:LEVELS + 1]:
        readme = folder / README
        if readme.is_file() and read_readme(readme).startswith(MARKER):
            return folder
    return None


def read_readme(readme: Path) -> str:
    # errors="replace": a stray byte in someone's README must not stop a manifest or a report.
    return readme.read_text(encoding="utf-8", errors="replace")
