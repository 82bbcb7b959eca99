"""parse_iemocap on small trees that carry the real release's quirks."""
from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from manifests.iemocap import STANDARD_COUNTS, compare_counts, find_root, map_label, parse_iemocap, parse_utt_id
from manifests.io import ManifestError, read_manifest, write_manifest


def test_utt_id_speaker_is_the_letter_before_the_digits() -> None:
    male = parse_utt_id("Ses01F_impro01_M003")
    assert male is not None
    assert (male.dialog, male.session, male.speaker, male.speaker_letter) == ("Ses01F_impro01", 1, "Ses01M", "M")
    assert male.video_side == "right"  # the dialog is Ses01F: the female actor is on the left
    female = parse_utt_id("Ses01F_impro01_F000")
    assert female is not None and female.speaker == "Ses01F" and female.video_side == "left"
    in_male_dialog = parse_utt_id("Ses02M_impro03_M010")
    assert in_male_dialog is not None and in_male_dialog.video_side == "left"
    assert parse_utt_id("Ses02M_impro03_F010").video_side == "right"


@pytest.mark.parametrize(
    ("utt_id", "dialog", "speaker", "improvised"),
    [
        ("Ses03M_impro05a_F001", "Ses03M_impro05a", "Ses03F", True),
        ("Ses03M_impro05b_M012", "Ses03M_impro05b", "Ses03M", True),
        ("Ses05M_script01_1b_F002", "Ses05M_script01_1b", "Ses05F", False),
        ("Ses01F_script01_1_F000", "Ses01F_script01_1", "Ses01F", False),
        ("Ses01F_script01_1_M027", "Ses01F_script01_1", "Ses01M", False),
        ("Ses04F_script02_2_M041", "Ses04F_script02_2", "Ses04M", False),
    ],
)
def test_utt_id_split_and_scripted_dialogs(utt_id: str, dialog: str, speaker: str, improvised: bool) -> None:
    parsed = parse_utt_id(utt_id)
    assert parsed is not None
    assert (parsed.dialog, parsed.speaker, parsed.improvised) == (dialog, speaker, improvised)


@pytest.mark.parametrize("bad", ["Ses01F_impro01_MXX0", "M", "Ses01F_impro01", "Ses01X_impro01_F000", "Ses01F_impro01_F00", "xSes01F_impro01_F000"])
def test_not_utterance_ids(bad: str) -> None:
    assert parse_utt_id(bad) is None


def test_parses_summary_lines_and_ignores_the_rest(iemocap_tree) -> None:
    root = iemocap_tree(
        "Ses01F_impro01",
        [
            ("Ses01F_impro01_F000", "neu", 6.2901, 8.2357, "Excuse me."),
            ("Ses01F_impro01_M000", "fru", 8.9, 11.5, "Do you have your forms?"),
            ("Ses01F_impro01_M001", "xxx", 12.0, 13.0, "Yeah."),
        ],
        extra_transcript=(
            "M: Hmm.\n"
            "Ses01F_impro01_MXX0 [013.0000-014.0000]: [LAUGHTER]\n"
            "Ses01F_impro01_F009 [020.0000-021.0000]: A turn nobody evaluated.\n"
        ),
    )
    evaluation = root / "Session1" / "dialog" / "EmoEvaluation"
    # Sub-folders and macOS companions hold summary-like lines that must not count.
    for sub in ("Categorical", "Attribute", "Self-evaluation"):
        (evaluation / sub).mkdir()
        (evaluation / sub / "Ses01F_impro01_e1.txt").write_text(
            "[1.0000 - 2.0000]\tSes01F_impro01_F099\tang\t[1.0, 1.0, 1.0]\n", encoding="utf-8"
        )
    (evaluation / "._Ses01F_impro01.txt").write_bytes(b"\x00\x05\x16\x07Mac OS X\n[1.0 - 2.0]\tSes01F_impro01_F098\tang\t[1, 1, 1]\n")
    (evaluation / "notes.csv").write_text("[1.0 - 2.0]\tSes01F_impro01_F097\tang\t[1, 1, 1]\n", encoding="utf-8")

    result = parse_iemocap(root, classes="six")

    assert result.problems == []
    assert [r.utt_id for r in result.rows] == ["Ses01F_impro01_F000", "Ses01F_impro01_M000"]
    first, second = result.rows
    assert first.to_json() == {
        "utt_id": "Ses01F_impro01_F000",
        "label": "neu",
        "group": "1",
        "audio": str((root / "Session1/sentences/wav/Ses01F_impro01/Ses01F_impro01_F000.wav").resolve()),
        "corpus": "iemocap",
        "session": 1,
        "dialog": "Ses01F_impro01",
        "speaker": "Ses01F",
        "gender": "F",
        "improvised": True,
        "start": 6.2901,
        "end": 8.2357,
        "vad": [2.5, 3.0, 3.5],
        "text": "Excuse me.",
        "video": str((root / "Session1/dialog/avi/DivX/Ses01F_impro01.avi").resolve()),
        "video_side": "left",
    }
    assert (second.speaker, second.gender, second.video_side, second.text) == ("Ses01M", "M", "right", "Do you have your forms?")
    assert result.dropped == {"xxx": 1}
    assert not result.synthetic


def test_split_and_scripted_dialogs_across_sessions(iemocap_tree) -> None:
    iemocap_tree("Ses03M_impro05a", [("Ses03M_impro05a_F000", "ang", 1.0, 2.0, "No."), ("Ses03M_impro05a_M000", "sad", 2.5, 3.0, "Sorry.")])
    iemocap_tree("Ses03M_impro05b", [("Ses03M_impro05b_M000", "hap", 1.0, 2.0, "Good.")])
    iemocap_tree("Ses05M_script01_1b", [("Ses05M_script01_1b_F003", "exc", 4.0, 5.0, "Wow!")])
    root = iemocap_tree("Ses01F_script01_1", [("Ses01F_script01_1_M000", "neu", 1.0, 2.0, "Hello.")])

    rows = {r.utt_id: r for r in parse_iemocap(root, classes="six").rows}

    assert {u: (r.session, r.group, r.dialog, r.speaker, r.video_side, r.improvised) for u, r in rows.items()} == {
        "Ses01F_script01_1_M000": (1, "1", "Ses01F_script01_1", "Ses01M", "right", False),
        "Ses03M_impro05a_F000": (3, "3", "Ses03M_impro05a", "Ses03F", "right", True),
        "Ses03M_impro05a_M000": (3, "3", "Ses03M_impro05a", "Ses03M", "left", True),
        "Ses03M_impro05b_M000": (3, "3", "Ses03M_impro05b", "Ses03M", "left", True),
        "Ses05M_script01_1b_F003": (5, "5", "Ses05M_script01_1b", "Ses05F", "right", False),
    }


def test_missing_wav_is_reported_and_left_out(iemocap_tree) -> None:
    root = iemocap_tree(
        "Ses02F_impro02",
        [("Ses02F_impro02_F000", "ang", 1.0, 2.0, "Stop."), ("Ses02F_impro02_M000", "sad", 2.5, 4.0, "Fine.")],
    )
    missing = root / "Session2" / "sentences" / "wav" / "Ses02F_impro02" / "Ses02F_impro02_M000.wav"
    missing.unlink()

    result = parse_iemocap(root)

    assert [r.utt_id for r in result.rows] == ["Ses02F_impro02_F000"]
    assert result.missing_audio == ["Ses02F_impro02_M000"]
    assert result.problems == [f"Ses02F_impro02_M000: no wav at {missing}; left out of the manifest"]


def test_missing_transcript_and_video_are_reported_and_kept(iemocap_tree) -> None:
    root = iemocap_tree("Ses04M_impro01", [("Ses04M_impro01_F000", "hap", 1.0, 2.0, "Hi.")], video=False)
    transcript = root / "Session4" / "dialog" / "transcriptions" / "Ses04M_impro01.txt"
    transcript.unlink()

    result = parse_iemocap(root)

    (row,) = result.rows
    assert (row.text, row.video, row.video_side) == (None, None, None)
    video = root / "Session4" / "dialog" / "avi" / "DivX" / "Ses04M_impro01.avi"
    assert result.problems == [
        f"Ses04M_impro01_F000: no transcription line in {transcript}; text left empty (None)",
        f"dialog Ses04M_impro01: no video at {video}; its rows have no video",
    ]


def test_malformed_and_misplaced_summary_lines_are_reported(iemocap_tree) -> None:
    root = iemocap_tree("Ses01F_impro02", [("Ses01F_impro02_F000", "neu", 1.0, 2.0, "Hi.")])
    evaluation = root / "Session1" / "dialog" / "EmoEvaluation" / "Ses01F_impro02.txt"
    with evaluation.open("a", encoding="utf-8") as out:
        out.write("[3.0 - 4.0]\tSes01F_impro02_F001\tneu\n")  # no VAD triple
        out.write("[5.0 - 6.0]\tSes02F_impro02_F001\tneu\t[1, 2, 3]\n")  # another dialog's utterance
        out.write("[1.0 - 2.0]\tSes01F_impro02_F000\tang\t[1, 2, 3]\n")  # evaluated twice
        out.write("[7.0 - 7.0]\tSes01F_impro02_M002\tneu\t[1, 2, 3]\n")  # an empty span

    result = parse_iemocap(root)

    assert [r.utt_id for r in result.rows] == ["Ses01F_impro02_F000"]
    assert result.rows[0].label == "neu"
    assert len(result.problems) == 4
    assert result.problems[0].startswith(f"{evaluation}:") and "does not parse" in result.problems[0]
    assert "belongs to dialog Ses02F_impro02 (session 2), not to Ses01F_impro02 in Session1" in result.problems[1]
    assert "Ses01F_impro02_F000: evaluated twice; kept the first" in result.problems[2]
    assert result.problems[3] == f"{evaluation}:13: skipped Ses01F_impro02_M002: its span [7.0 - 7.0] is empty"


@pytest.mark.parametrize(
    ("classes", "expected"),
    [
        ("six", {"hap": "hap", "exc": "exc", "neu": "neu", "ang": "ang", "sad": "sad", "fru": "fru"}),
        ("four", {"hap": "hap", "exc": "hap", "neu": "neu", "ang": "ang", "sad": "sad"}),
        ("all", {label: label for label in ("hap", "exc", "neu", "ang", "sad", "fru", "sur", "fea", "dis", "oth", "xxx")}),
    ],
)
def test_class_settings(iemocap_tree, classes: str, expected: dict[str, str]) -> None:
    labels = ["hap", "exc", "neu", "ang", "sad", "fru", "sur", "fea", "dis", "oth", "xxx"]
    turns = [(f"Ses02M_script03_2_{'FM'[i % 2]}{i:03d}", label, float(i), i + 0.5, "Words.") for i, label in enumerate(labels)]
    root = iemocap_tree("Ses02M_script03_2", turns)

    result = parse_iemocap(root, classes=classes)

    original = {utt_id: label for utt_id, label, *_ in turns}
    assert {original[r.utt_id]: r.label for r in result.rows} == expected
    assert sum(result.dropped.values()) == len(labels) - len(expected)
    assert map_label("exc", classes) == expected.get("exc")


def test_unknown_class_setting() -> None:
    with pytest.raises(ValueError, match="choose one of six, four, all"):
        map_label("hap", "seven")


def test_root_may_be_the_folder_above(iemocap_tree) -> None:
    root = iemocap_tree("Ses01F_impro01", [("Ses01F_impro01_F000", "neu", 1.0, 2.0, "Hi.")])
    assert find_root(root.parent) == root
    assert len(parse_iemocap(root.parent).rows) == 1


def test_no_sessions_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ManifestError, match="no Session1..Session5 folders here; give the IEMOCAP_full_release folder"):
        parse_iemocap(tmp_path)
    with pytest.raises(ManifestError, match="no such folder"):
        parse_iemocap(tmp_path / "nowhere")


def test_rows_survive_a_manifest_round_trip(iemocap_tree, tmp_path: Path) -> None:
    iemocap_tree("Ses02F_impro01", [("Ses02F_impro01_M000", "fru", 3.0, 4.0, "Ugh, "), ("Ses02F_impro01_F000", "hap", 1.0, 2.0, "Yay.")])
    root = iemocap_tree("Ses01M_impro01", [("Ses01M_impro01_F000", "sad", 1.0, 2.0, "Oh.")])
    rows = parse_iemocap(root).rows
    # Sorted by session, dialog, then time.
    assert [r.utt_id for r in rows] == ["Ses01M_impro01_F000", "Ses02F_impro01_F000", "Ses02F_impro01_M000"]
    assert read_manifest(write_manifest(rows, tmp_path / "m.jsonl")) == rows


def test_compare_counts() -> None:
    from manifests.schema import Utterance

    rows = [Utterance(utt_id=f"u{i}", label="neu", group=str(s), audio="a.wav", session=s) for i, s in enumerate([1, 1, 2, 3])]
    assert compare_counts(rows, {1: 2, 2: 1, 3: 1}) == []
    assert compare_counts(rows, {1: 2, 2: 2, 3: 1}) == [
        "Session2: expected 2, found 1 (-1)",
        "total: expected 5, found 4 (-1)",
    ]
    # A session with rows but no expected figure, with a total that happens to match.
    assert compare_counts(rows, {1: 3, 2: 1}) == ["Session1: expected 3, found 2 (-1)", "Session3: expected 0, found 1 (+1)"]


def test_standard_figures() -> None:
    assert sum(STANDARD_COUNTS["six"].values()) == 7380
    assert sum(STANDARD_COUNTS["four"].values()) == 5531


@given(
    session=st.integers(1, 5),
    dialog_letter=st.sampled_from("FM"),
    speaker_letter=st.sampled_from("FM"),
    kind=st.sampled_from(["impro", "script"]),
    suffix=st.from_regex(r"\A[0-9]{2}(_[1-3])?[ab]?\Z"),
    number=st.integers(0, 999),
)
def test_utt_id_parts_round_trip(session: int, dialog_letter: str, speaker_letter: str, kind: str, suffix: str, number: int) -> None:
    dialog = f"Ses{session:02d}{dialog_letter}_{kind}{suffix}"
    parsed = parse_utt_id(f"{dialog}_{speaker_letter}{number:03d}")
    assert parsed is not None
    assert parsed.dialog == dialog and parsed.session == session
    assert parsed.speaker == f"Ses{session:02d}{speaker_letter}"
    assert parsed.improvised == (kind == "impro")
    assert parsed.video_side == ("left" if speaker_letter == dialog_letter else "right")
