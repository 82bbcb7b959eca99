"""Locating the ffmpeg binary (for decoding in :mod:`extract` and for writing the demo corpus): the system's when there is one, else the one the imageio-ffmpeg wheel ships."""
from __future__ import annotations

import functools
import shutil

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
