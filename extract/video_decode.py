"""Decoding a fixed number of RGB frames from a span of a dialog video.

ffmpeg (through ``ffmpeg-python``, with the binary :func:`extract.media.ffmpeg_exe`
finds) does the decoding; OpenCV only reads the stream's size, rate and length,
because there is no ffprobe to ask. Both are cached per file.

Frames are picked by their timestamps, not by counting frames after a seek: ffmpeg's
seek into an AVI lands a frame or two off (and with B-frames its first frames can be
grey), while the timestamps of frame ``k`` are the first frame's plus ``k / fps``.
"""
from __future__ import annotations

import math
import os
import re
import subprocess
import threading
from dataclasses import dataclass

import cv2
import ffmpeg
import numpy as np

from emocache.errors import EmocacheError
from extract.media import ffmpeg_exe

SIDES = ("left", "right")
#: How far past the end of the video an utterance may end and still be decoded
#: (clipped to the video): IEMOCAP's annotated ends can run a little past the AVI.
END_TOLERANCE_S = 1.0


class MediaError(EmocacheError):
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
    #: Timestamp (s) of the stream's first frame: 0 in most files, one frame in an AVI with B-frames.
    first_time: float = 0.0

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
    return VideoInfo(path=path, width=width, height=height, fps=fps, frame_count=count, first_time=_first_frame_time(path))


_PTS_TIME = re.compile(rb"pts_time:(-?\d+(?:\.\d+)?)")


def _first_frame_time(path: str) -> float:
    """The timestamp of the first video frame ffmpeg decodes from ``path`` (its own timestamps kept)."""
    cmd = [ffmpeg_exe(), "-hide_banner", "-nostdin", "-copyts", "-i", path, "-map", "0:v:0", "-vf", "showinfo",
           "-frames:v", "1", "-f", "null", "-"]
    try:
        proc = subprocess.run(cmd, capture_output=True, check=False, timeout=60)
    except subprocess.TimeoutExpired:
        raise MediaError("decode", f"ffmpeg did not decode the first frame of {path} in 60 s; check that the file plays") from None
    found = _PTS_TIME.search(proc.stderr)
    if found is None:
        raise MediaError("decode", f"cannot decode video {path}: {_last_line(proc.stderr) or 'no first frame'}; "
                                   "the file is damaged or not a video, copy it again from the corpus")
    return float(found.group(1))


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


def span_frames(info: VideoInfo, span: Span) -> tuple[int, int]:
    """(first, count): the video frames whose start time lies in ``[span.start, span.end)``, at the stream's constant rate.

    A span shorter than one frame gets the one frame on screen at its start.
    """
    first = math.ceil(span.start * info.fps - 1e-6)
    stop = min(math.ceil(span.end * info.fps - 1e-6), info.frame_count)
    if stop <= first:
        first = min(math.floor(span.start * info.fps + 1e-6), info.frame_count - 1)
        stop = first + 1
    return first, stop - first


def decode_frames(info: VideoInfo, span: Span, side: str | None, frames: int) -> tuple[np.ndarray, int]:
    """``frames`` RGB frames, ``(frames, H, W, 3)`` uint8, evenly spread over ``span`` in one half.

    The span's ``N`` video frames are cut in ``frames`` equal runs and the middle
    frame of each is taken: frame ``floor((i + 0.5) * N / frames)`` of the span.
    When ``N < frames`` the same formula repeats frames evenly. ffmpeg seeks to a
    second before the span (input-side ``-ss``; none near the start), keeps the
    file's timestamps (``-copyts``), crops the half and passes on only the frames
    whose timestamps are the chosen ones (``select``). Returns the frames and
    ``N``; frames are numbered from the stream's start at its constant rate
    (``span_frames``).
    """
    x, y, width, height = crop_window(info, side)
    first, count = span_frames(info, span)
    wanted = even_indices(count, frames)
    unique = np.unique(wanted)
    start = info.first_time + first / info.fps
    seek = start - 1.0  # a second early: where the seek lands no longer matters, the timestamps pick
    if seek > 0:
        read = {"ss": f"{seek:.6f}", "t": f"{count / info.fps + 1.5:.6f}"}
    else:
        read = {"t": f"{start + count / info.fps + 0.5:.6f}"}
    stream = ffmpeg.input(info.path, copyts=None, **read).video
    if (width, height) != (info.width, info.height):
        stream = stream.filter("crop", width, height, x, y)
    half = 0.5 / info.fps
    stream = stream.filter("select", "+".join(f"lt(abs(t-{start + k / info.fps:.6f}),{half:.6f})" for k in unique))
    out = stream.output("pipe:", format="rawvideo", pix_fmt="rgb24", fps_mode="passthrough", vframes=len(unique))
    out = out.global_args("-nostdin", "-hide_banner", "-loglevel", "error")
    try:
        raw, _ = out.run(cmd=ffmpeg_exe(), capture_stdout=True, capture_stderr=True)
    except ffmpeg.Error as err:
        raise MediaError("decode", f"ffmpeg could not decode [{span.start:.3f}, {span.end:.3f}] s of {info.path}: {_last_line(err.stderr)}") from None
    frame_bytes = width * height * 3
    if len(raw) % frame_bytes:
        raise MediaError("decode", f"ffmpeg gave {len(raw)} bytes for {width}x{height} frames from {info.path}; the frame size changes inside the file, re-encode it")
    got = len(raw) // frame_bytes
    if got == 0:
        raise MediaError("decode", f"no frames decoded from [{span.start:.3f}, {span.end:.3f}] s of {info.path}; check that the file plays and the segment times")
    if got < len(unique):
        raise MediaError(
            "decode",
            f"only {got} of the {len(unique)} frames wanted from [{span.start:.3f}, {span.end:.3f}] s of {info.path} could be decoded "
            f"(its header promises {info.frame_count} frames); the file is truncated or damaged, copy it again from the corpus",
        )
    decoded = np.frombuffer(raw, np.uint8).reshape(got, height, width, 3)
    return decoded[np.searchsorted(unique, wanted)], count


def even_indices(available: int, wanted: int) -> np.ndarray:
    """``wanted`` indices into ``available`` items, evenly spread (repeating items when there are too few)."""
    return np.minimum(((np.arange(wanted) + 0.5) * available / wanted).astype(np.int64), available - 1)
