"""Bad manifest input: every wrong type, empty id, control character and non-UTF-8 byte is an error
that names the file, the line (or row) and the fix, for JSONL manifests and CSV tables alike."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import soundfile
import numpy as np
from click.testing import CliRunner

from manifests.cli import cli
from manifests.csvcorpus import CsvCorpusError, parse_csv
from manifests.io import ManifestError, read_manifest

GOOD = {"utt_id": "u1", "label": "neu", "group": "1", "audio": "u1.wav"}


def _manifest(tmp_path: Path, *rows: dict | str) -> Path:
    path = tmp_path / "m.jsonl"
    lines = [row if isinstance(row, str) else json.dumps(row) for row in rows]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.mark.parametrize(
    "change, message",
    [
        ({"utt_id": 7}, "field 'utt_id' must be an utterance id: a non-empty string, got 7 (a number)"),
        ({"utt_id": ""}, "field 'utt_id' must be an utterance id: a non-empty string, got ''"),
        ({"utt_id": "  "}, "field 'utt_id' must be an utterance id: a non-empty string, got '  '"),
        ({"utt_id": "a\u0000b"}, "field 'utt_id' ('a\\x00b') holds control character(s) U+0000 (NUL, tab, newline...): remove them"),
        ({"utt_id": "a\nb"}, "field 'utt_id' ('a\\nb') holds control character(s) U+000A (NUL, tab, newline...): remove them"),
        ({"utt_id": "a\ud800"}, "field 'utt_id' ('a\\ud800') holds control character(s) U+D800 (NUL, tab, newline...): remove them"),
        ({"audio": 3}, "utterance 'u1': field 'audio' must be a file path (a string), got 3 (a number)"),
        ({"audio": "a\u0000.wav"}, "utterance 'u1': field 'audio' ('a\\x00.wav') holds a NUL character, which no file path can: fix the path"),
        ({"video": ["x.mp4"]}, "utterance 'u1': field 'video' must be a file path (a string), got ['x.mp4'] (a list)"),
        ({"label": None}, "utterance 'u1': field 'label' must be a label: a non-empty string, got null"),
        ({"label": " "}, "utterance 'u1': field 'label' must be a label: a non-empty string, got ' '"),
        ({"label": 3}, "utterance 'u1': field 'label' must be a label: a non-empty string, got 3 (a number)"),
        ({"group": None}, "utterance 'u1': field 'group' must be the fold group (a session, speaker...): a non-empty string, got null"),
        ({"group": True}, "utterance 'u1': field 'group' must be the fold group (a session, speaker...): a non-empty string, got True (a boolean)"),
        ({"start": "soon"}, "utterance 'u1': field 'start' must be a number of seconds >= 0 or null, got 'soon' (a string)"),
        ({"end": -1}, "utterance 'u1': field 'end' must be a number of seconds >= 0 or null, got -1 (a number)"),
        ({"start": 2.0, "end": 1.0}, "utterance 'u1': 'end' (1.0) must be after 'start' (2.0)"),
        ({"session": "1"}, "utterance 'u1': field 'session' must be a whole number or null, got '1' (a string)"),
        ({"improvised": "yes"}, "utterance 'u1': field 'improvised' must be true, false or null, got 'yes' (a string)"),
        ({"vad": [1, 2]}, "utterance 'u1': field 'vad' must be three numbers [valence, activation, dominance] or null, got [1, 2] (a list)"),
        ({"text": 5}, "utterance 'u1': field 'text' must be a string or null, got 5 (a number)"),
        ({"video_side": "top"}, "utterance 'u1': field 'video_side' must be \"left\", \"right\" or null, got 'top' (a string)"),
    ],
)
def test_wrong_types_name_the_file_line_and_field(tmp_path, change, message):
    path = _manifest(tmp_path, {**GOOD, "utt_id": "u0"}, {**GOOD, **change})
    with pytest.raises(ManifestError) as err:
        read_manifest(path)
    assert str(err.value) == f"{path}:2: {message}; fix this line of the manifest"


def test_a_line_that_is_not_an_object(tmp_path):
    path = _manifest(tmp_path, GOOD, '["u2", "neu"]')
    with pytest.raises(ManifestError) as err:
        read_manifest(path)
    assert str(err.value) == (
        f"{path}:2: each line must be a JSON object {{\"utt_id\": ..., ...}}, not ['u2', 'neu'] (a list); fix this line of the manifest"
    )


def test_a_line_that_is_not_json(tmp_path):
    path = _manifest(tmp_path, GOOD, '{"utt_id": "u2",')
    with pytest.raises(ManifestError, match=rf"^{path}:2: not valid JSON \(.*\); each line must be one JSON object$"):
        read_manifest(path)


def test_non_utf8_manifest_names_line_and_byte(tmp_path):
    path = tmp_path / "m.jsonl"
    path.write_bytes(json.dumps(GOOD).encode() + b"\n" + '{"utt_id": "café"'.encode("latin-1") + b"}\n")
    with pytest.raises(ManifestError) as err:
        read_manifest(path)
    assert str(err.value) == (
        f"{path}:2: not UTF-8 (byte 0xe9 at column 16); save the file as UTF-8 (e.g. `iconv -f latin1 -t utf-8 OLD > NEW`)"
    )


def test_numbers_and_integer_groups_still_read(tmp_path):
    path = _manifest(tmp_path, {**GOOD, "group": 3, "start": 1, "end": 2.5, "session": 3, "vad": [1, 2, 3], "improvised": True})
    (row,) = read_manifest(path)
    assert (row.group, row.start, row.end, row.vad) == ("3", 1.0, 2.5, (1.0, 2.0, 3.0))


def test_bom_at_the_start_is_accepted(tmp_path):
    path = tmp_path / "m.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + json.dumps(GOOD).encode() + b"\n")
    assert read_manifest(path)[0].utt_id == "u1"


def test_summary_cli_shows_the_exact_message(tmp_path):
    path = _manifest(tmp_path, {**GOOD, "label": None})
    result = CliRunner().invoke(cli, ["summary", str(path)])
    assert result.exit_code == 1
    assert result.stderr == (
        f"Error: {path}:1: utterance 'u1': field 'label' must be a label: a non-empty string, got null; "
        "fix this line of the manifest\n"
    )


# -- CSV tables


def _clip(path: Path) -> None:
    soundfile.write(path, np.zeros(1600, dtype=np.float32), 16000)


def test_csv_not_utf8_names_line_and_byte(tmp_path):
    _clip(tmp_path / "a.wav")
    table = tmp_path / "t.csv"
    table.write_bytes(b"id,path,emotion,actor\na,a.wav,hap,1\nb,a.wav,s\xe4d,1\n")
    with pytest.raises(ManifestError) as err:
        parse_csv(table, id_col="id", audio_col="path", label_col="emotion", group_col="actor")
    assert str(err.value) == (
        f"{table}:3: not UTF-8 (byte 0xe4 at column 10); save the file as UTF-8 (e.g. `iconv -f latin1 -t utf-8 OLD > NEW`)"
    )


def test_csv_control_characters_and_empty_ids_are_named_by_row(tmp_path):
    _clip(tmp_path / "a.wav")
    table = tmp_path / "t.csv"
    table.write_text('id,path,emotion,actor\n"a\x00",a.wav,hap,1\nb,a.wav,"n\x07eu",1\n,a.wav,hap,2\nc,a.wav,hap,"\x1b"\n',
                     encoding="utf-8")
    with pytest.raises(CsvCorpusError) as err:
        parse_csv(table, id_col="id", audio_col="path", label_col="emotion", group_col="actor")
    assert str(err.value) == (
        f"{table}: 4 problem(s); fix the table or the files (relative paths are read from {tmp_path}):\n"
        "  row 2 (a\x00): column 'id' ('a\\x00') holds control character(s) U+0000 (NUL, tab, newline...): remove them\n"
        "  row 3 (b): column 'emotion' ('n\\x07eu') holds control character(s) U+0007 (NUL, tab, newline...): remove them\n"
        "  row 4 (no id): empty 'id'\n"
        "  row 5 (c): column 'actor' ('\\x1b') holds control character(s) U+001B (NUL, tab, newline...): remove them"
    )


def test_csv_cli_non_utf8_exact_message(tmp_path):
    table = tmp_path / "t.csv"
    table.write_bytes(b"id,path,emotion,actor\xff\n")
    result = CliRunner().invoke(cli, ["csv", str(table), "--out", str(tmp_path / "m.jsonl"), "--id-col", "id",
                                      "--audio-col", "path", "--label-col", "emotion", "--group-col", "actor"])
    assert result.exit_code == 1
    assert result.stderr == (
        f"Error: {table}:1: not UTF-8 (byte 0xff at column 22); save the file as UTF-8 (e.g. `iconv -f latin1 -t utf-8 OLD > NEW`)\n"
    )
    assert not (tmp_path / "m.jsonl").exists()


def test_csv_with_a_bom_counts_columns_from_the_first_byte(tmp_path):
    table = tmp_path / "t.csv"
    table.write_bytes(b"\xef\xbb\xbfid,path\xff\n")
    with pytest.raises(ManifestError, match=r":1: not UTF-8 \(byte 0xff at column 11\)"):
        parse_csv(table, id_col="id", audio_col="path", label_col="emotion", group_col="actor")


def test_csv_nul_in_a_path_is_named(tmp_path):
    _clip(tmp_path / "a.wav")
    table = tmp_path / "t.csv"
    table.write_text('id,path,emotion,actor\na,"a.wav\x00",hap,1\nb,a.wav,hap,1\n', encoding="utf-8")
    with pytest.raises(CsvCorpusError) as err:
        parse_csv(table, id_col="id", audio_col="path", label_col="emotion", group_col="actor")
    assert str(err.value).endswith(
        "\n  row 2 (a): column 'path' ('a.wav\\x00') holds a NUL character, which no file path can: fix the path"
    )
