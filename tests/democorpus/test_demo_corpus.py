"""The synthetic demo corpus: layout, media that decode, and cues that follow the expressed emotion."""
from __future__ import annotations

import json
import subprocess
import wave
from collections import Counter
from pathlib import Path

import cv2
import numpy as np
import pytest

from democorpus.corpus import EXPRESS, EXPRESSED_FILE, FALLBACK_NEUTRAL, _dialog_plan, _expressed
from democorpus.faces import EXPRESSIONS, FPS, HALF, HEIGHT, WIDTH, draw_face, head_sprite
from democorpus.speech import SAMPLE_RATE, synth_speech
from democorpus.transcripts import PHRASES, make_transcript
from manifests.iemocap import parse_iemocap
from manifests.io import read_manifest
from extract.media import ffmpeg_exe
from manifests.schema import SIX_CLASSES


def _expressed_by_id(root: Path) -> dict[str, dict[str, str]]:
    lines = (root / EXPRESSED_FILE).read_text(encoding="utf-8").splitlines()
    return {entry["utt_id"]: entry for entry in map(json.loads, lines)}


def test_layout_and_parse(demo_corpus: Path, demo_manifest: Path) -> None:
    assert demo_corpus.name == "IEMOCAP_full_release"
    assert "SYNTHETIC" in (demo_corpus / "README.txt").read_text(encoding="utf-8")
    result = parse_iemocap(demo_corpus, classes="six")
    assert result.problems == [] and result.synthetic
    rows = result.rows
    assert rows == read_manifest(demo_manifest)
    assert len(rows) == 40
    assert Counter(r.session for r in rows) == {s: 8 for s in range(1, 6)}
    per_class = Counter(r.label for r in rows)
    assert set(per_class) == set(SIX_CLASSES) and max(per_class.values()) - min(per_class.values()) <= 1
    for session in range(1, 6):
        mine = [r for r in rows if r.session == session]
        assert {r.speaker for r in mine} == {f"Ses{session:02d}F", f"Ses{session:02d}M"}
        assert {r.improvised for r in mine} == {True, False}
        assert len({r.label for r in mine}) >= 5  # balanced within each session too
    dialogs = {r.dialog for r in rows}
    assert {"Ses03M_impro05a", "Ses03M_impro05b", "Ses05M_script01_1b"} <= dialogs
    for r in rows:
        assert r.speaker == r.dialog[:5] + r.utt_id[-4]
        assert r.video_side == ("left" if r.utt_id[-4] == r.dialog[5] else "right")
        assert r.text and r.video and Path(r.video).is_file()
        assert 1.5 <= r.end - r.start <= 4.5
    # Turns in a dialog follow each other without overlapping.
    for dialog in dialogs:
        spans = sorted((r.start, r.end) for r in rows if r.dialog == dialog)
        assert all(b[0] > a[1] for a, b in zip(spans, spans[1:]))
    # Other labels exist, as in the real corpus, and only `all` keeps them.
    everything = parse_iemocap(demo_corpus, classes="all").rows
    assert len(everything) > len(rows)
    assert {r.label for r in everything} - set(SIX_CLASSES) <= {"xxx", "oth", "sur", "fea", "dis"}


def test_quirks_are_present(demo_corpus: Path) -> None:
    evaluation = demo_corpus / "Session1" / "dialog" / "EmoEvaluation"
    assert any(p.name.startswith("._") for p in evaluation.iterdir())
    assert {"Categorical", "Attribute", "Self-evaluation"} <= {p.name for p in evaluation.iterdir() if p.is_dir()}
    text = next(p for p in sorted(evaluation.glob("Ses*.txt"))).read_text(encoding="utf-8")
    assert "\nC-E1:\t" in text and "\nA-E1:\tval " in text
    transcript = next(iter(sorted((demo_corpus / "Session1" / "dialog" / "transcriptions").glob("*.txt")))).read_text(encoding="utf-8")
    assert "\nM: " in transcript and "XX0 [" in transcript


def test_wavs_match_their_spans(demo_manifest: Path) -> None:
    for row in read_manifest(demo_manifest):
        with wave.open(row.audio, "rb") as wav:
            assert (wav.getframerate(), wav.getnchannels(), wav.getsampwidth()) == (SAMPLE_RATE, 1, 2)
            assert abs(wav.getnframes() / SAMPLE_RATE - (row.end - row.start)) < 1e-3


def _decode_span(video: str, start: float, duration: float) -> np.ndarray:
    """Frames of [start, start + duration] as ffmpeg decodes them (the way extraction reads a span)."""
    raw = subprocess.run(
        [ffmpeg_exe(), "-v", "error", "-ss", f"{start:.4f}", "-t", f"{duration:.4f}", "-i", video,
         "-f", "rawvideo", "-pix_fmt", "gray", "-"],
        check=True, capture_output=True,
    ).stdout
    return np.frombuffer(raw, np.uint8).reshape(-1, HEIGHT, WIDTH)


def test_video_spans_decode_with_faces_on_both_sides(demo_manifest: Path) -> None:
    cascade = cv2.CascadeClassifier(cv2.data.haarcascades + "haarcascade_frontalface_default.xml")
    rows = read_manifest(demo_manifest)[::7]
    found = checked = 0
    for row in rows:
        frames = _decode_span(row.video, row.start, row.end - row.start)
        assert abs(len(frames) - (row.end - row.start) * FPS) <= 2, row.utt_id
        for frame in frames[:: max(1, len(frames) // 3)]:
            for half in (frame[:, :HALF], frame[:, HALF:]):
                checked += 1
                found += len(cascade.detectMultiScale(half, 1.1, 3)) > 0
    assert found / checked > 0.9, f"faces found in {found} of {checked} half frames"


def _edges(gray: np.ndarray) -> np.ndarray:
    """Blurred gradient magnitude of the face's brow-to-mouth region: blind to skin tone and a few pixels of sway."""
    g = gray.astype(np.float32)
    magnitude = np.hypot(cv2.Sobel(g, cv2.CV_32F, 1, 0), cv2.Sobel(g, cv2.CV_32F, 0, 1))
    region = cv2.GaussianBlur(magnitude, (0, 0), 3)[40:140, 30:130].ravel()
    return region / (np.linalg.norm(region) + 1e-9)


def test_speaking_face_shows_the_expressed_emotion(demo_corpus: Path, demo_manifest: Path) -> None:
    """The speaker's half of the decoded video is nearest to a clean drawing of the emotion the video expresses."""
    sprite = head_sprite((150, 180, 220))
    templates = {}
    for emotion, expr in EXPRESSIONS.items():
        frame = np.zeros((HEIGHT, WIDTH, 3), np.uint8)
        draw_face(frame, 0, sprite, expr, 0.3, (0, 0))
        templates[emotion] = _edges(cv2.cvtColor(frame[:, :HALF], cv2.COLOR_BGR2GRAY))
    expressed = _expressed_by_id(demo_corpus)
    rows = read_manifest(demo_manifest)
    hits = 0
    for row in rows:
        frames = _decode_span(row.video, row.start + 0.6, 0.3).astype(float).mean(0)
        half = frames[:, :HALF] if row.video_side == "left" else frames[:, HALF:]
        face = _edges(half)
        nearest = max(templates, key=lambda emotion: float(face @ templates[emotion]))
        hits += nearest == expressed[row.utt_id]["video"]
    assert hits / len(rows) > 0.8, f"{hits} of {len(rows)} faces nearest to their expressed emotion"
    # ...and the video shows the true label only about as often as EXPRESS["video"] says, not always.
    agree = np.mean([expressed[r.utt_id]["video"] == r.label for r in rows])
    assert agree < 0.85


def test_drawn_expressions_differ() -> None:
    sprite = head_sprite((150, 180, 220))
    faces = {}
    for emotion, expr in EXPRESSIONS.items():
        frame = np.zeros((HEIGHT, WIDTH, 3), np.uint8)
        draw_face(frame, 0, sprite, expr, 0.0, (0, 0))
        faces[emotion] = frame[:, :HALF].astype(int)
    for a in EXPRESSIONS:
        for b in EXPRESSIONS:
            if a < b:
                assert np.abs(faces[a] - faces[b]).sum() > 0, (a, b)


def _f0_and_rms(signal: np.ndarray) -> tuple[float, float]:
    """Median F0 of the loud frames (autocorrelation peak), and the overall RMS."""
    frame, hop = 1024, 256
    frames = np.lib.stride_tricks.sliding_window_view(signal, frame)[::hop]
    loud = np.sqrt((frames**2).mean(1))
    f0 = []
    for x in frames[loud > 0.5 * loud.max()]:
        x = x - x.mean()
        ac = np.fft.irfft(np.abs(np.fft.rfft(x, 2 * frame)) ** 2)[:frame]
        lo, hi = SAMPLE_RATE // 600, SAMPLE_RATE // 60
        f0.append(SAMPLE_RATE / (lo + int(np.argmax(ac[lo:hi]))))
    return float(np.median(f0)), float(np.sqrt(np.mean(signal**2)))


@pytest.mark.parametrize(("base_f0", "tract"), [(210.0, 1.15), (120.0, 1.0)])
def test_speech_prosody_follows_the_emotion(base_f0: float, tract: float) -> None:
    rng = np.random.default_rng(3)
    measured = {e: _f0_and_rms(synth_speech(rng, 2 * SAMPLE_RATE, e, base_f0, tract)) for e in ("sad", "neu", "exc", "ang")}
    f0 = {e: m[0] for e, m in measured.items()}
    rms = {e: m[1] for e, m in measured.items()}
    assert f0["sad"] < f0["neu"] < f0["exc"]
    assert abs(f0["neu"] - base_f0) / base_f0 < 0.1
    assert rms["sad"] < rms["neu"] < rms["exc"] and rms["neu"] < rms["ang"]


def test_transcripts_carry_the_expressed_emotion(demo_corpus: Path, demo_manifest: Path) -> None:
    expressed = _expressed_by_id(demo_corpus)
    for row in read_manifest(demo_manifest):
        assert any(phrase in row.text for phrase in PHRASES[expressed[row.utt_id]["text"]]), row.utt_id
    rng = np.random.default_rng(0)
    assert any(make_transcript(rng, "ang") not in PHRASES["ang"] for _ in range(20))  # fillers mix in


def test_modalities_express_the_label_at_their_rates() -> None:
    rng = np.random.default_rng(0)
    n = 30_000
    labels = [SIX_CLASSES[i % 6] for i in range(n)]
    for modality, probability in EXPRESS.items():
        shown = [_expressed(rng, label, probability) for label in labels]
        rate = np.mean([s == label for s, label in zip(shown, labels)])
        assert abs(rate - probability) < 0.015, modality
        wrong_non_neutral = [(s, label) for s, label in zip(shown, labels) if s != label and label != "neu"]
        neutral_share = np.mean([s == "neu" for s, _ in wrong_non_neutral])
        # Neutral directly, or neutral drawn among the five other classes.
        assert abs(neutral_share - (FALLBACK_NEUTRAL + (1 - FALLBACK_NEUTRAL) / 5)) < 0.03


def test_dialog_plan_covers_the_quirks() -> None:
    for session in range(1, 6):
        for n in (9, 84, 500):
            plan = _dialog_plan(session, n)
            assert sum(size for _, size in plan) == n
            names = [name for name, _ in plan]
            assert len(set(names)) == len(names)
            assert any("impro" in name for name in names) and any("script" in name for name in names)
            assert {name[5] for name in names} == {"F", "M"}
    assert {"Ses03M_impro05a", "Ses03M_impro05b"} <= {name for name, _ in _dialog_plan(3, 84)}
    assert "Ses05M_script01_1b" in {name for name, _ in _dialog_plan(5, 84)}


def test_too_few_utterances(tmp_path: Path) -> None:
    from democorpus.corpus import make_demo_corpus

    with pytest.raises(ValueError, match="the demo needs at least 30"):
        make_demo_corpus(tmp_path, utterances=10)


def test_an_existing_folder_is_never_overwritten(tmp_path: Path) -> None:
    from democorpus.corpus import FORMAT_VERSION, make_demo_corpus
    from manifests.io import ManifestError

    root = tmp_path / "IEMOCAP_full_release"
    root.mkdir()
    (root / "keep.txt").write_text("mine", encoding="utf-8")
    with pytest.raises(ManifestError, match=r"already exists \(not a complete demo corpus\); remove it or choose another folder"):
        make_demo_corpus(tmp_path, utterances=30, seed=0)
    (root / "README.txt").write_text('SYNTHETIC\nparameters: {"format": 0, "seed": 0, "utterances": 30}\n', encoding="utf-8")
    with pytest.raises(ManifestError, match=rf"another version of the generator \(format 0, now {FORMAT_VERSION}\)"):
        make_demo_corpus(tmp_path, utterances=30, seed=0)
    assert (root / "keep.txt").read_text(encoding="utf-8") == "mine"
    assert [p.name for p in tmp_path.iterdir()] == ["IEMOCAP_full_release"]  # no partial folder left behind
