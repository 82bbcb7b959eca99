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
