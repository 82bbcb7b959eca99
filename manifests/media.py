"""Locating the ffmpeg binary: the system's when there is one, else the one the imageio-ffmpeg wheel ships."""
from __future__ import annotations

import functools
import shutil


@functools.cache
def ffmpeg_exe() -> str:
    """Path of an ffmpeg executable; raises RuntimeError with the fix when there is none."""
    found = shutil.which("ffmpeg")
    if found:
        return found
    try:
        import imageio_ffmpeg
    except ImportError as err:
        raise RuntimeError("no ffmpeg found: install Debian's ffmpeg or `pip install imageio-ffmpeg`") from err
    return imageio_ffmpeg.get_ffmpeg_exe()
