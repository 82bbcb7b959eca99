"""Any corpus without a recipe (:mod:`manifests.recipes`), from a table with one row per utterance.

The caller names the columns: utterance id, audio path, label, and the group
that becomes the fold key (speaker, session, actor...). Relative paths resolve
against the table's folder.
"""
from __future__ import annotations

import csv
import io
import os
from pathlib import Path

from .io import ManifestError, not_utf8
from .schema import Utterance, check_name, check_path


class CsvCorpusError(ManifestError):
    """A table that cannot become a manifest; the message names the table, the rows and the fix."""


def parse_csv(
    table: str | os.PathLike,
    *,
    id_col: str,
    audio_col: str,
    label_col: str,
    group_col: str,
    text_col: str | None = None,
    video_col: str | None = None,
    speaker_col: str | None = None,
    corpus: str = "custom",
) -> list[Utterance]:
    """Read ``table`` (comma-separated; tab-separated when it ends in ``.tsv``) into manifest rows.

    ``speaker_col`` names each row's speaker where the group is not one: a fold's validation
    split then keeps speakers apart when its training side has fewer than three groups.

    Raises :class:`CsvCorpusError` naming every problem at once: columns that do
    not exist (with the ones that do), empty ids/labels/groups/paths, repeated
    ids, and every audio or video file that is missing (row and path).
    """
    table = Path(table)
    if not table.is_file():
        raise CsvCorpusError(f"{table}: no such file")
    delimiter = "\t" if table.suffix.lower() == ".tsv" else ","
    with io.StringIO(_read_text(table), newline="") as handle:
        # A tab-separated table has no quoting: a transcript starting with '"' is text, not the
        # start of a quoted field that would swallow the lines after it.
        reader = csv.DictReader(handle, delimiter=delimiter, quoting=csv.QUOTE_NONE if delimiter == "\t" else csv.QUOTE_MINIMAL)
        columns = list(reader.fieldnames or [])
        wanted = {"--id-col": id_col, "--audio-col": audio_col, "--label-col": label_col, "--group-col": group_col}
        if text_col is not None:
            wanted["--text-col"] = text_col
        if video_col is not None:
            wanted["--video-col"] = video_col
        if speaker_col is not None:
            wanted["--speaker-col"] = speaker_col
        unknown = [f"{option} {name!r}" for option, name in wanted.items() if name not in columns]
        if unknown:
            raise CsvCorpusError(
                f"{table}: no such column(s): {', '.join(unknown)}; the columns are: {', '.join(repr(c) for c in columns) or '(none)'}"
            )
        records = list(reader)
    if not records:
        raise CsvCorpusError(f"{table}: the table has a header but no rows")

    base = table.parent
    rows: list[Utterance] = []
    errors: list[str] = []
    seen: dict[str, int] = {}
    for lineno, record in enumerate(records, 2):
        utt_id = (record.get(id_col) or "").strip()
        where = f"row {lineno} ({utt_id or 'no id'})"
        empty = [name for name in (id_col, audio_col, label_col, group_col) if not (record.get(name) or "").strip()]
        if empty:
            errors.append(f"{where}: empty {', '.join(repr(c) for c in empty)}")
            continue
        names = {"id": id_col, "label": label_col, "group": group_col}
        if speaker_col is not None and (record.get(speaker_col) or "").strip():
            names["speaker"] = speaker_col
        bad = _bad_names(record, names, [c for c in (audio_col, video_col) if c is not None])
        if bad:
            errors.append(f"{where}: {bad}")
            continue
        if utt_id in seen:
            errors.append(f"{where}: id {utt_id!r} already used on row {seen[utt_id]}")
            continue
        seen[utt_id] = lineno
        audio = _resolve(base, record[audio_col])
        if not audio.is_file():
            errors.append(f"{where}: audio file {audio} does not exist")
        video = None
        if video_col is not None and (record.get(video_col) or "").strip():
            video = _resolve(base, record[video_col])
            if not video.is_file():
                errors.append(f"{where}: video file {video} does not exist")
        text = (record.get(text_col) or "").strip() if text_col is not None else ""
        speaker = (record.get(speaker_col) or "").strip() if speaker_col is not None else ""
        rows.append(
            Utterance(
                utt_id=utt_id,
                label=record[label_col].strip(),
                group=record[group_col].strip(),
                audio=str(audio),
                corpus=corpus,
                text=text or None,
                video=str(video) if video is not None else None,
                speaker=speaker or None,
            )
        )
    if errors:
        raise CsvCorpusError(
            f"{table}: {len(errors)} problem(s); fix the table or the files (relative paths are read from {base}):\n  "
            + "\n  ".join(errors)
        )
    return rows


def _read_text(table: Path) -> str:
    """The table as text; an error naming the first line that is not UTF-8."""
    data = table.read_bytes()
    try:
        # utf-8, not utf-8-sig: the error's offset then counts from the file's first byte.
        return data.decode("utf-8").removeprefix("\ufeff")
    except UnicodeDecodeError as err:
        line_start = data.rfind(b"\n", 0, err.start) + 1
        raise not_utf8(table, data.count(b"\n", 0, err.start) + 1, data[err.start], err.start - line_start + 1) from None


def _bad_names(record: dict, names: dict[str, str], paths: list[str]) -> str | None:
    """The first id/label/group value of ``record`` with control characters, or path with a NUL, as a message."""
    try:
        for what, column in names.items():
            check_name(record[column].strip(), f"a {what}")
        for column in paths:
            check_path(record.get(column) or "")
    except ValueError as err:
        return f"column {column!r} {err}"
    return None


def _resolve(base: Path, value: str) -> Path:
    path = Path(value.strip()).expanduser()
    return (path if path.is_absolute() else base / path).resolve()
