"""Decoding a fixed number of RGB frames from a span of a dialog video.

ffmpeg (through ``ffmpeg-python``, with the binary :func:`manifests.media.ffmpeg_exe`
finds) does the decoding; OpenCV only reads the stream's size, rate and length,
because there is no ffprobe to ask. Both are cached per file.
"""
from __future__ import annotations

import os
import threading
from dataclasses import dataclass

import cv2
import ffmpeg
import numpy as np

from manifests.media import ffmpeg_exe

SIDES = ("left", "right")
#: How far past the end of the video an utterance may end and still be decoded
#: (clipped to the video): IEMOCAP's annotated ends can run a little past the AVI.
END_TOLERANCE_S = 1.0


class MediaError(Exception):
    """A video that cannot give frames. ``stage`` is ``"input"`` or ``"decode"``."""

    def __init__(self, stage: str, message: str):
        super().__init__(message)
        self.stage = stage
        self.message = message


@dataclass(frozen=True)
class VideoInfo:
    """The first video stream of a file, as its container states it."""

    path: str
    width: int
    height: int
    fps: float
    frame_count: int

    @property
    def duration(self) -> float:
        return self.frame_count / self.fps


@dataclass(frozen=True)
class Span:
    """The part of a video one utterance covers, after checking it against the video."""

    start: float
    end: float
    #: True when the requested end lay past the video's end (within END_TOLERANCE_S) and was cut to it.
    clipped: bool

    @property
    def duration(self) -> float:
        return self.end - self.start


_info_cache: dict[tuple[str, int, int], VideoInfo] = {}
_info_lock = threading.Lock()


def probe_video(path: str) -> VideoInfo:
    """Size, rate and frame count of ``path``'s video stream, cached per file version (thread-safe).

    Raises :class:`MediaError` for a missing or undecodable file.
    """
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise MediaError("input", f"video file {path} does not exist; fix the manifest's video path or restore the file") from None
    key = (os.path.abspath(path), st.st_mtime_ns, st.st_size)
    with _info_lock:
        cached = _info_cache.get(key)
    if cached is not None:
        return cached
    info = _read_info(path)
    with _info_lock:
        _info_cache[key] = info
    return info


def _read_info(path: str) -> VideoInfo:
    cap = cv2.VideoCapture(path)
    try:
        opened = cap.isOpened()
        if opened:
            width = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH))
            height = int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
            fps = float(cap.get(cv2.CAP_PROP_FPS))
            count = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
    finally:
        cap.release()
    if not opened or min(width, height, count) <= 0 or not fps > 0:
        raise MediaError("decode", f"cannot decode video {path}: {_ffmpeg_complaint(path)}; the file is damaged or not a video, copy it again from the corpus")
    return VideoInfo(path=path, width=width, height=height, fps=fps, frame_count=count)


def _ffmpeg_complaint(path: str) -> str:
    """ffmpeg's own last words about ``path``, for the error message."""
    try:
        ffmpeg.input(path).output("-", format="null").global_args("-nostdin", "-hide_banner", "-loglevel", "error").run(
            cmd=ffmpeg_exe(), capture_stdout=True, capture_stderr=True
        )
    except ffmpeg.Error as err:
        return _last_line(err.stderr) or "ffmpeg failed without a message"
    return "no video stream with a known size, rate and length"


def _last_line(stderr: bytes | None) -> str:
    lines = (stderr or b"").decode(errors="replace").strip().splitlines()
    return lines[-1].strip() if lines else ""


def resolve_span(info: VideoInfo, start: float | None, end: float | None) -> Span:
    """Check an utterance's ``[start, end]`` (seconds; None = the video's start/end) against the video."""
    duration = info.duration
    begin = 0.0 if start is None else float(start)
    stop = duration if end is None else float(end)
    if begin < 0 or stop <= begin:
        raise MediaError("input", f"bad segment [{begin:.3f}, {stop:.3f}] s for video {info.path}: start must be >= 0 and before end; fix the manifest's start/end")
    if begin >= duration:
        raise MediaError(
            "input",
            f"segment [{begin:.3f}, {stop:.3f}] s starts after the end of video {info.path} ({duration:.3f} s long); "
            "the manifest's times or video path are wrong for this utterance",
        )
    if stop > duration + END_TOLERANCE_S:
        raise MediaError(
            "input",
            f"segment [{begin:.3f}, {stop:.3f}] s ends {stop - duration:.3f} s after the end of video {info.path} ({duration:.3f} s long; "
            f"up to {END_TOLERANCE_S} s over is clipped); the manifest's times or video path are wrong for this utterance",
        )
    return Span(begin, min(stop, duration), clipped=stop > duration)


def crop_window(info: VideoInfo, side: str | None) -> tuple[int, int, int, int]:
    """(x, y, width, height) of the speaker's half: ``"left"``, ``"right"``, or None for the whole frame."""
    if side is None:
        return 0, 0, info.width, info.height
    half = info.width // 2
    if side == "left":
        return 0, 0, half, info.height
    if side == "right":
        return info.width - half, 0, half, info.height
    raise MediaError("input", f"video_side {side!r} is not one of {list(SIDES)} or empty (whole frame); fix the manifest")


def decode_frames(info: VideoInfo, span: Span, side: str | None, frames: int) -> tuple[np.ndarray, int]:
    """``frames`` RGB frames, ``(frames, H, W, 3)`` uint8, evenly spaced over ``span`` of one half.

    The frame for sample ``i`` is the video frame nearest to ``start + i * duration / frames``
    (ffmpeg's ``fps`` filter at ``frames / duration`` frames per second after an
    accurate input seek). A span that holds fewer video frames than ``frames``
    repeats its frames evenly (the filter duplicates them). Returns the frames and
    how many ffmpeg gave before any repetition on our side (ffmpeg may give one
    short at the end of a span; those are repeated evenly here too).
    """
    x, y, width, height = crop_window(info, side)
    stream = ffmpeg.input(info.path, ss=f"{span.start:.6f}", t=f"{span.duration:.6f}").video
    if (width, height) != (info.width, info.height):
        stream = stream.filter("crop", width, height, x, y)
    stream = stream.filter("fps", fps=f"{frames / span.duration:.9g}")
    out = stream.output("pipe:", format="rawvideo", pix_fmt="rgb24", vframes=frames).global_args("-nostdin", "-hide_banner", "-loglevel", "error")
    try:
        raw, _ = out.run(cmd=ffmpeg_exe(), capture_stdout=True, capture_stderr=True)
    except ffmpeg.Error as err:
        raise MediaError("decode", f"ffmpeg could not decode [{span.start:.3f}, {span.end:.3f}] s of {info.path}: {_last_line(err.stderr)}") from None
    frame_bytes = width * height * 3
    if len(raw) % frame_bytes:
        raise MediaError("decode", f"ffmpeg gave {len(raw)} bytes for {width}x{height} frames from {info.path}; the frame size changes inside the file, re-encode it")
    got = len(raw) // frame_bytes
    if got == 0:
        raise MediaError("decode", f"no frames decoded from [{span.start:.3f}, {span.end:.3f}] s of {info.path}; check the file plays and the segment times")
    decoded = np.frombuffer(raw, np.uint8).reshape(got, height, width, 3)
    return decoded[even_indices(got, frames)], got


def even_indices(available: int, wanted: int) -> np.ndarray:
    """``wanted`` indices into ``available`` items, evenly spread (repeating items when there are too few)."""
    return np.minimum(((np.arange(wanted) + 0.5) * available / wanted).astype(np.int64), available - 1)
