"""Reading and writing manifests (JSON Lines, one :class:`Utterance` per line)."""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from collections.abc import Iterable, Sequence
from pathlib import Path

from emocache.atomic import write_lines
from emocache.errors import EmocacheError

from .schema import IDENTITY_FIELDS, Utterance


class ManifestError(EmocacheError, ValueError):
    """A manifest, or a corpus it is made from, that cannot be read; the message names the file (and line) and the fix."""


def write_manifest(rows: Iterable[Utterance], path: str | os.PathLike) -> Path:
    """Write ``rows`` to ``path`` atomically (temporary file, then rename)."""
    return write_lines(path, (json.dumps(row.to_json(), ensure_ascii=False) for row in rows))


def read_manifest(path: str | os.PathLike) -> list[Utterance]:
    """Read a manifest. Relative media paths are resolved against the manifest's folder."""
    path = Path(path)
    if not path.is_file():
        raise ManifestError(f"{path}: no such manifest file; write one with `manifests iemocap`, `manifests csv` or `manifests demo`")
    rows: list[Utterance] = []
    seen: set[str] = set()
    with path.open("rb") as lines:
        for lineno, raw in enumerate(lines, 1):
            line = decode_line(raw, path, lineno)
            if lineno == 1:
                line = line.removeprefix("\ufeff")  # a BOM, as Windows editors write
            if not line.strip():
                continue
            try:
                row = Utterance.from_json(json.loads(line))
            except json.JSONDecodeError as err:
                raise ManifestError(f"{path}:{lineno}: not valid JSON ({err}); each line must be one JSON object") from None
            except (ValueError, TypeError) as err:
                raise ManifestError(f"{path}:{lineno}: {err}; fix this line of the manifest") from None
            if row.utt_id in seen:
                raise ManifestError(f"{path}:{lineno}: utterance {row.utt_id!r} appears twice")
            seen.add(row.utt_id)
            rows.append(_resolve(row, path.parent))
    if not rows:
        raise ManifestError(f"{path}: the manifest is empty")
    return rows


def decode_line(raw: bytes, path: Path, lineno: int) -> str:
    """One line of a manifest as text; :class:`ManifestError` naming the line when it is not UTF-8."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise not_utf8(path, lineno, raw[err.start], err.start + 1) from None


def not_utf8(path: Path, lineno: int, byte: int, column: int) -> ManifestError:
    return ManifestError(
        f"{path}:{lineno}: not UTF-8 (byte 0x{byte:02x} at column {column}); "
        "save the file as UTF-8 (e.g. `iconv -f latin1 -t utf-8 OLD > NEW`)"
    )


def _resolve(row: Utterance, base: Path) -> Utterance:
    changes = {}
    for field in ("audio", "video"):
        value = getattr(row, field)
        if value and not os.path.isabs(value) and "://" not in value:
            changes[field] = str(base / value)
    if not changes:
        return row
    return dataclasses.replace(row, **changes)


def manifest_hash(rows: Sequence[Utterance]) -> str:
    """A sha256 over what each row means (ids, labels, groups, spans, text), not where its files are.

    Order-independent: rows are sorted by ``utt_id`` first.
    """
    digest = hashlib.sha256()
    for row in sorted(rows, key=lambda r: r.utt_id):
        values = {name: getattr(row, name) for name in IDENTITY_FIELDS}
        digest.update(json.dumps(values, sort_keys=True, ensure_ascii=False).encode("utf-8"))
        digest.update(b"\n")
    return digest.hexdigest()
