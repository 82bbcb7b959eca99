"""File and folder names made from manifest values (fold groups), kept inside the output folder.

A group value is data: ``../../../x``, ``/abs``, a NUL or a 300-character speaker name
must neither place a file outside ``--out`` nor fail deep inside a fold. Plain values
(letters, digits, ``.``, ``_``, ``-``) are kept as they are, so ``fold-1`` and
``fold-Ses01F`` read as before; every other byte is percent-encoded (``/`` -> ``%2F``),
which keeps distinct values distinct.
"""
from __future__ import annotations

import hashlib
import os
import re
import urllib.parse
from pathlib import Path

from emocache.errors import EmocacheError

_PLAIN = re.compile(r"[A-Za-z0-9._-]+")
# Most file systems allow 255 bytes per name; leave room for a prefix such as "fold-".
MAX_COMPONENT = 200


class OutputPathError(EmocacheError, ValueError):
    """A name made from a manifest value would leave the output folder."""


def encode_component(value: str) -> str:
    """``value`` as one safe path component: never empty, ``.``/``..``, a separator or a NUL.

    Names longer than :data:`MAX_COMPONENT` are cut and end in a hash of the whole value."""
    name = value if _PLAIN.fullmatch(value) and value not in (".", "..") else urllib.parse.quote(value, safe="", errors="surrogatepass")
    if name in ("", ".", ".."):
        # "%" alone is no encoding of any other value.
        name = urllib.parse.quote(value, safe="", errors="surrogatepass").replace(".", "%2E") or "%"
    if len(name) > MAX_COMPONENT:
        digest = hashlib.sha256(value.encode("utf-8", "surrogatepass")).hexdigest()[:16]
        name = f"{name[:MAX_COMPONENT - 17]}~{digest}"
    return name


def child_dir(parent: str | os.PathLike, name: str) -> Path:
    """``parent / name``, refused unless it is a direct child of ``parent`` (checked after resolving)."""
    parent = Path(parent)
    path = parent / name
    if name in ("", ".", "..") or "\0" in name or Path(os.path.abspath(path)).parent != Path(os.path.abspath(parent)):
        raise OutputPathError(f"{name!r} is not a plain folder name inside {parent}")
    return path


#: The report each kind of run writes at the top of its output folder: what tells one run's folder from another's.
RUN_REPORTS = {"fold": "metrics.json", "cv": "cv.json", "ablate": "ablation.json", "tune": "tune.json",
               "baseline": "baseline.json", "layers": "layers.json"}


def check_out_dir(out_dir: str | os.PathLike | None, kind: str) -> None:
    """Refuse an output folder that holds another kind of run: the two runs' files would mix, and
    this one would overwrite some of the other's (a cross-validation's ``folds.csv``, its
    ``report.html``). A folder of the same kind is a rerun, written over as before; None (a run
    that writes nothing) passes."""
    if out_dir is None:
        return
    folder = Path(out_dir)
    for other, report in RUN_REPORTS.items():
        if other != kind and (folder / report).is_file():
            raise OutputPathError(f"--out {folder} holds a `train {other}` run ({report}); give this `train {kind}` "
                                  "a folder of its own, or delete that run first")
