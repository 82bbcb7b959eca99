"""Video decoding, face crops and the hog encoder, on AVIs written here with ffmpeg and on the demo corpus."""
from __future__ import annotations

import hashlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import ffmpeg
import numpy as np
import pytest

from extract.base import DEFAULTS, EncoderConfigError, ExtractError, create_encoder, registered
from extract.faces import FaceCropConfig, FaceCropper, cascade_path
from extract.video import HogVideoEncoder, TimmVideoEncoder
from extract.video_decode import decode_frames, probe_video, resolve_span
from manifests import Utterance, read_manifest
from extract.media import ffmpeg_exe

WIDTH, HEIGHT, FPS, SECONDS = 96, 48, 10, 4
RED, BLUE = (200, 20, 20), (20, 20, 200)
BAND = 8  # rows of the grey band: a sixth of the 48-pixel half, so rows 0..10 of a 64-pixel face crop


def grey_of(frame_index: int) -> int:
    """The grey level of the top band of frame ``k`` of the test video: it tells which frame a crop came from."""
    return 10 + 6 * frame_index


def write_avi(path: Path, frames: np.ndarray, fps: int = FPS) -> Path:
    count, height, width, _ = frames.shape
    (
        ffmpeg.input("pipe:", format="rawvideo", pix_fmt="rgb24", s=f"{width}x{height}", r=fps)
        .output(str(path), vcodec="mpeg4", q=2, g=fps)
        .global_args("-nostdin", "-loglevel", "error")
        .overwrite_output()
        .run(input=frames.tobytes(), cmd=ffmpeg_exe())
    )
    return path


@pytest.fixture(scope="module")
def dialog_avi(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """4 s at 10 fps: left half red, right half blue, under a grey band across the top whose level rises with the frame number."""
    frames = np.zeros((FPS * SECONDS, HEIGHT, WIDTH, 3), np.uint8)
    for k, frame in enumerate(frames):
        frame[:, : WIDTH // 2] = RED
        frame[:, WIDTH // 2 :] = BLUE
        frame[:BAND] = grey_of(k)
    return write_avi(tmp_path_factory.mktemp("video") / "dialog.avi", frames)


@pytest.fixture(scope="module")
def hog4() -> HogVideoEncoder:
    return HogVideoEncoder(None, options={"frames": 4})


def utt(video: Path | str | None, start: float | None = 1.0, end: float | None = 2.0, side: str | None = "left", utt_id: str = "Ses01F_impro01_F000") -> Utterance:
    return Utterance(utt_id=utt_id, label="neu", group="1", audio="unused.wav", video=None if video is None else str(video), start=start, end=end, video_side=side)


def frame_numbers(faces: np.ndarray) -> np.ndarray:
    """Which video frame each 64x64 face image came from, read back from the grey band at its top."""
    return np.round((faces[:, 2:8].reshape(len(faces), -1).mean(axis=1) - 10) / 6).astype(int)


def colour(faces: np.ndarray) -> np.ndarray:
    """Mean RGB below the grey band."""
    return faces[:, 16:].reshape(-1, 3).mean(axis=0)


def test_crop_takes_the_speakers_half(dialog_avi: Path, hog4: HogVideoEncoder) -> None:
    left = colour(hog4.load(utt(dialog_avi, side="left")).faces)
    right = colour(hog4.load(utt(dialog_avi, side="right")).faces)
    whole = colour(hog4.load(utt(dialog_avi, side=None)).faces)
    assert left[0] > 180 and left[2] < 40, left
    assert right[2] > 180 and right[0] < 40, right
    # No side: the centre square of the whole frame straddles both halves.
    assert 80 < whole[0] < 140 and 80 < whole[2] < 140, whole


def test_frames_are_the_middles_of_equal_runs_of_the_span(dialog_avi: Path, hog4: HogVideoEncoder) -> None:
    # [1.0, 2.0] s holds frames 10..19; four runs of 2.5 frames, middles at 1.25, 3.75, 6.25, 8.75.
    item = hog4.load(utt(dialog_avi, start=1.0, end=2.0))
    assert frame_numbers(item.faces).tolist() == [11, 13, 16, 18]
    assert not item.repeated and not item.clipped
    # [2.6, 3.4] s holds frames 26..33, right half.
    assert frame_numbers(hog4.load(utt(dialog_avi, start=2.6, end=3.4, side="right")).faces).tolist() == [27, 29, 31, 33]
    # No times: the whole video, frames 0..39.
    assert frame_numbers(hog4.load(utt(dialog_avi, start=None, end=None)).faces).tolist() == [5, 15, 25, 35]


def test_a_span_shorter_than_the_frames_repeats_frames_evenly(dialog_avi: Path) -> None:
    encoder = HogVideoEncoder(None, options={"frames": 8})
    item = encoder.load(utt(dialog_avi, start=1.0, end=1.2))  # two video frames: 10 and 11
    assert frame_numbers(item.faces).tolist() == [10] * 4 + [11] * 4
    assert item.repeated
    # Shorter than one frame: the frame on screen at its start.
    assert frame_numbers(encoder.load(utt(dialog_avi, start=1.51, end=1.55)).faces).tolist() == [15] * 8
    encoder.encode([item])
    assert encoder.counts(item)["utterances_repeated_frames"] == 1
    assert any("shorter than 8 video frames" in note for note in encoder.notes())


def test_an_end_just_past_the_video_is_clipped_and_noted(dialog_avi: Path) -> None:
    encoder = HogVideoEncoder(None, options={"frames": 4})
    item = encoder.load(utt(dialog_avi, start=3.5, end=4.6))
    assert item.clipped
    assert frame_numbers(item.faces).tolist() == [35, 36, 38, 39]
    encoder.encode([item])
    assert encoder.counts(item)["utterances_clipped"] == 1
    assert any("were cut at its end" in note for note in encoder.notes())


def test_same_output_alone_and_in_a_batch(dialog_avi: Path, hog4: HogVideoEncoder) -> None:
    a = hog4.load(utt(dialog_avi, start=0.5, end=1.5, side="left"))
    b = hog4.load(utt(dialog_avi, start=2.0, end=3.9, side="right", utt_id="Ses01F_impro01_M000"))
    alone = hog4.encode([a])[0]
    together = hog4.encode([b, a])
    assert alone.shape == (4, hog4.dim) and alone.dtype == np.float32
    np.testing.assert_array_equal(alone, together[1])
    assert not np.array_equal(together[0], together[1])


def test_cost_is_the_seconds_to_decode(dialog_avi: Path, hog4: HogVideoEncoder, tmp_path: Path) -> None:
    assert hog4.cost(utt(dialog_avi, start=1.0, end=2.5)) == pytest.approx(1.5)
    assert hog4.cost(utt(dialog_avi, start=None, end=None)) == pytest.approx(SECONDS)
    assert hog4.cost(utt(dialog_avi, start=1.0, end=None)) == pytest.approx(SECONDS - 1.0)
    assert hog4.cost(utt(tmp_path / "missing.avi", start=None, end=None)) == 0.0  # load() will say what is wrong


def test_loading_from_many_threads_gives_the_same_items(dialog_avi: Path, tmp_path: Path) -> None:
    # The pipeline calls load() from worker threads; the video info cache and the cascades are shared.
    copy = tmp_path / "second.avi"
    copy.write_bytes(dialog_avi.read_bytes())
    encoder = HogVideoEncoder(None, options={"frames": 4})
    rows = [utt(video, start=0.3 * i, end=0.3 * i + 1.0, side=side) for i in range(3) for video in (dialog_avi, copy) for side in ("left", "right")]
    expected = [encoder.load(r) for r in rows]
    with ThreadPoolExecutor(4) as pool:
        got = list(pool.map(encoder.load, rows))
    for a, b in zip(expected, got):
        np.testing.assert_array_equal(a.faces, b.faces)
        np.testing.assert_array_equal(a.boxes, b.boxes)


def expect_error(encoder: HogVideoEncoder, row: Utterance, stage: str, *fragments: str) -> ExtractError:
    with pytest.raises(ExtractError) as caught:
        encoder.load(row)
    err = caught.value
    assert err.utt_id == row.utt_id and err.stage == stage
    for fragment in fragments:
        assert fragment in err.message, err.message
    return err


def test_bad_input_raises_extract_error_with_stage_and_fix(dialog_avi: Path, hog4: HogVideoEncoder, tmp_path: Path) -> None:
    expect_error(hog4, utt(None), "input", "no video path", "`video`")
    missing = tmp_path / "Ses01F_impro01.avi"
    expect_error(hog4, utt(missing), "input", str(missing), "does not exist", "fix the manifest's video path")
    garbage = tmp_path / "garbage.avi"
    garbage.write_bytes(np.random.default_rng(0).integers(0, 256, 5000, dtype=np.uint8).tobytes())
    expect_error(hog4, utt(garbage), "decode", str(garbage), "damaged or not a video")
    expect_error(hog4, utt(dialog_avi, start=5.0, end=6.5), "input", "[5.000, 6.500]", "(4.000 s long)", str(dialog_avi))
    expect_error(hog4, utt(dialog_avi, start=3.0, end=9.0), "input", "ends 5.000 s after the end", "(4.000 s long")
    expect_error(hog4, utt(dialog_avi, start=2.0, end=1.0), "input", "start must be >= 0 and before end")
    expect_error(hog4, utt(dialog_avi, side="middle"), "input", "'middle'", "'left', 'right'")


def test_no_frames_decoded_is_a_decode_error(tmp_path: Path, hog4: HogVideoEncoder) -> None:
    # The container lasts 4 s (its audio) but the video stream stops after 1 s.
    path = tmp_path / "short_video.mkv"
    (
        ffmpeg.output(
            ffmpeg.input("color=red:s=64x32:r=10:d=1", f="lavfi"), ffmpeg.input("sine=d=4", f="lavfi"),
            str(path), vcodec="mpeg4", acodec="pcm_s16le",
        )
        .global_args("-nostdin", "-loglevel", "error")
        .run(cmd=ffmpeg_exe())
    )
    expect_error(hog4, utt(path, start=2.0, end=3.0), "decode", "no frames decoded", "[2.000, 3.000]", str(path))


def test_options_are_checked() -> None:
    for options, fragment in (
        ({"frames": 0}, "--frames must be a whole number >= 1"),
        ({"frames": "16"}, "--frames must be a whole number >= 1"),
        ({"weights": "model.pt"}, "--weights does not apply"),
        ({"layers": "all"}, "--layers does not apply"),
        ({"trust_pickle": True}, "--trust-pickle does not apply"),
    ):
        with pytest.raises(EncoderConfigError, match=fragment.replace("(", r"\(")):
            HogVideoEncoder(None, options=options)
    with pytest.raises(EncoderConfigError, match="takes no argument"):
        create_encoder("video", "hog:big")
    assert HogVideoEncoder(None, options={"trust_pickle": False}).frames == 16


def test_registry_and_description() -> None:
    assert DEFAULTS["video"] == "hog"
    kinds = {kind: cls for (_, kind), cls in registered("video").items()}
    assert kinds["hog"] is HogVideoEncoder and kinds["timm"] is TimmVideoEncoder
    encoder = create_encoder("video")
    assert isinstance(encoder, HogVideoEncoder)
    assert encoder.dim == 580 and encoder.frame_rate is None and encoder.weights_sha256() is None
    utterance = utt("unused.avi", start=1.0, end=3.5)
    assert encoder.length(utterance) == 16 and encoder.cost(utterance) == pytest.approx(2.5)
    pre = encoder.preprocessing()
    assert pre["frames"] == 16 and pre["colour"] == "RGB" and pre["face_size"] == 64 and pre["face_margin"] == 0.15
    assert pre["cascade_sha256"] == hashlib.sha256(cascade_path().read_bytes()).hexdigest()
    assert pre["hog"]["cell"] == 8 and pre["geometry"] == ["face_found", "centre_x", "centre_y", "size"]


def test_the_cascade_finds_a_drawn_face_where_it_is(demo_manifest: Path) -> None:
    # One 160x160 half of a demo-corpus dialog frame (a drawn face near its centre), pasted at known places.
    row = read_manifest(demo_manifest)[0]
    info = probe_video(row.video)
    half = decode_frames(info, resolve_span(info, row.start, row.end), "left", 1)[0][0]
    size = half.shape[0]
    canvas = np.empty((240, 320, 3), np.uint8)
    canvas[:] = half[0, 0]  # the drawing's background
    frames = np.stack([canvas] * 3)
    places = [(150, 70), (10, 5)]
    for frame, (x0, y0) in zip(frames, places):
        frame[y0 : y0 + size, x0 : x0 + size] = half
    crops = FaceCropper(FaceCropConfig(size=32)).crop(frames)
    assert crops.images.shape == (3, 32, 32, 3)
    assert crops.found.tolist() == [True, True, False]
    for (cx, cy, side), (x0, y0) in zip(crops.boxes[:2], places):
        assert abs(cx * 320 - (x0 + size / 2)) < 12 and abs(cy * 240 - (y0 + size / 2)) < 16, (cx * 320, cy * 240)
        assert 0.4 * size < side * 240 < 1.2 * size  # about the head, not the whole frame
    # No face: the centre square of the frame, flagged.
    np.testing.assert_allclose(crops.boxes[2], [0.5, 0.5, 1.0])


def test_demo_corpus_videos_decode_to_face_features(demo_manifest: Path) -> None:
    rows = read_manifest(demo_manifest)
    picked = [next(r for r in rows if r.video_side == "left"), next(r for r in rows if r.video_side == "right")]
    picked.append(next(r for r in rows if r.video_side == "left" and r.dialog != picked[0].dialog))
    encoder = HogVideoEncoder(None, options={"frames": 6})
    items = [encoder.load(r) for r in picked]
    out = encoder.encode(items)
    for array in out:
        assert array.shape == (6, 580) and np.isfinite(array).all()
    counts = [encoder.counts(item) for item in items]
    stats = {name: sum(c[name] for c in counts) for name in counts[0]}
    assert stats["frames"] == 18
    # The cascade finds the drawn faces (the run's notes would say how often it did not).
    assert stats["frames_without_face"] <= 2, stats
    # Each face square covers most of its 160x160 half around the drawn head.
    for item in items:
        assert np.all(np.abs(item.boxes[item.found, :2] - 0.5) < 0.1) and np.all(item.boxes[item.found, 2] > 0.6)
    assert not np.allclose(out[0], out[1]) and not np.allclose(out[0], out[2])


@pytest.mark.parametrize("suffix", [".h5", ".zarr"])
def test_face_counts_are_stored_with_the_set(dialog_avi: Path, tmp_path: Path, suffix: str) -> None:
    from extract.pipeline import run_extraction
    from features import open_store
    from manifests import write_manifest

    rows = [
        utt(dialog_avi, 1.0, 2.0, utt_id="Ses01F_impro01_F000"),
        utt(dialog_avi, 1.0, 1.2, utt_id="Ses01F_impro01_F001"),  # two video frames for four: repeated
        utt(dialog_avi, 3.5, 4.6, side="right", utt_id="Ses01F_impro01_M000"),  # past the end: clipped
    ]
    manifest = write_manifest(rows, tmp_path / "m.jsonl")
    store_path = str(tmp_path / f"v{suffix}")
    run_extraction(manifest, store_path, "video", options={"frames": 4}, limit=2, progress=False)
    summary = run_extraction(manifest, store_path, "video", options={"frames": 4}, progress=False)  # resumes
    assert (summary.skipped, summary.done) == (2, 1)
    with open_store(store_path) as store:
        info = store["video"].info
    # Red and blue halves hold no face: every frame falls back to the centre square, and the set says so.
    assert info.counts == {
        "frames": 12, "frames_without_face": 12, "utterances_clipped": 1, "utterances_repeated_frames": 1, "utterances_without_face": 3,
    }


def _code_frames(count: int) -> np.ndarray:
    """Frames whose left half shows the frame number in binary: a 3x3 grid of black or white 32-pixel blocks."""
    frames = np.zeros((count, 96, 192, 3), np.uint8)
    for k, frame in enumerate(frames):
        for bit in range(9):
            if k >> bit & 1:
                row, col = divmod(bit, 3)
                frame[row * 32:(row + 1) * 32, col * 32:(col + 1) * 32] = 255
    return frames


def _read_codes(frames: np.ndarray) -> list[int]:
    return [sum(1 << bit for bit in range(9) if frame[divmod(bit, 3)[0] * 32 + 16, divmod(bit, 3)[1] * 32 + 16, 1] > 128)
            for frame in frames]


@pytest.mark.parametrize("b_frames", [0, 2])
def test_the_chosen_frames_are_decoded_exactly_from_an_avi_at_ntsc_rate(tmp_path: Path, b_frames: int) -> None:
    """IEMOCAP's kind of file (MPEG-4 in AVI, 29.97 fps). A seek into it lands a frame or two off, and with
    B-frames its first frames decode grey, so frames are picked by timestamp; spans at 0 s included."""
    path = tmp_path / "ntsc.avi"
    (
        ffmpeg.input("pipe:", format="rawvideo", pix_fmt="rgb24", s="192x96", r="30000/1001")
        .output(str(path), vcodec="mpeg4", q=2, g=12, bf=b_frames, pix_fmt="yuv420p")
        .global_args("-nostdin", "-loglevel", "error")
        .run(input=_code_frames(240).tobytes(), cmd=ffmpeg_exe())
    )
    info = probe_video(str(path))
    rng = np.random.default_rng(0)
    spans = [(0.0, 1.0), (0.02, 0.4)] + [(s, s + d) for s, d in zip(rng.uniform(0.5, 6.0, 12), rng.uniform(0.3, 1.5, 12))]
    for start, end in spans:
        span = resolve_span(info, float(start), float(end))
        frames, count = decode_frames(info, span, "left", 4)
        first = int(np.ceil(span.start * info.fps - 1e-6))
        wanted = first + np.minimum(((np.arange(4) + 0.5) * count / 4).astype(int), count - 1)
        assert _read_codes(frames) == wanted.tolist(), (start, end)
