"""Locating the ffmpeg binary (for decoding in :mod:`extract` and for writing the demo corpus): the system's when there is one, else the one the imageio-ffmpeg wheel ships."""
from __future__ import annotations

import functools
import re
import shutil
import subprocess

from emocache.errors import EmocacheError


class FfmpegMissingError(EmocacheError):
    """No ffmpeg binary on this machine."""


@functools.cache
def ffmpeg_exe() -> str:
    """Path of an ffmpeg executable; raises :class:`FfmpegMissingError` with the fix when there is none."""
    found = shutil.which("ffmpeg")
    if found:
        return found
    try:
        import imageio_ffmpeg
    except ImportError as err:
        raise FfmpegMissingError("no ffmpeg found: install Debian's ffmpeg or `pip install imageio-ffmpeg`") from err
    return imageio_ffmpeg.get_ffmpeg_exe()


_DURATION = re.compile(rb"Duration: (\d+):(\d{2}):(\d{2}(?:\.\d+)?)")


def media_duration(path: str) -> float | None:
    """Seconds of ``path`` as its container states them (``ffmpeg -i``: reads the header only, ~15 ms);
    None when ffmpeg states none (no such file, not media, a stream without a length)."""
    try:
        proc = subprocess.run([ffmpeg_exe(), "-hide_banner", "-nostdin", "-i", path], capture_output=True, check=False,
                              timeout=60)
    except subprocess.TimeoutExpired:
        return None  # no seconds known: reading the file will say what is wrong with it
    found = _DURATION.search(proc.stderr)  # ffmpeg exits 1 here (no output file named), having printed the header
    if found is None:
        return None
    hours, minutes, seconds = found.groups()
    return int(hours) * 3600 + int(minutes) * 60 + float(seconds)
