"""Finding the speaker's face in each frame: OpenCV's bundled Haar cascade.

Per frame the largest detected face is kept, grown by a margin on every side and
made square. A frame where the cascade finds nothing falls back to the centre
square of the frame (the speaker's half of the dialog video, where the head sits)
and is counted, so a set's provenance can say how often that happened.
"""
from __future__ import annotations

import functools
import hashlib
import threading
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from emocache.errors import EmocacheError

CASCADE_FILE = "haarcascade_frontalface_default.xml"
INTERPOLATIONS = {"area": cv2.INTER_AREA, "bilinear": cv2.INTER_LINEAR, "bicubic": cv2.INTER_CUBIC, "nearest": cv2.INTER_NEAREST}


class FaceDetectorUnavailable(EmocacheError, RuntimeError):
    """OpenCV's Haar cascade file is missing from this install."""


def cascade_path() -> Path:
    return Path(cv2.data.haarcascades) / CASCADE_FILE


@functools.cache
def cascade_sha256() -> str:
    """sha256 of the cascade file (it decides which faces are found, so it is part of the preprocessing)."""
    path = cascade_path()
    if not path.is_file():
        raise FaceDetectorUnavailable(
            f"OpenCV's face cascade {path} is missing; install opencv-python-headless 4.x (5.0 no longer ships the Haar cascades)"
        )
    return hashlib.sha256(path.read_bytes()).hexdigest()


@dataclass(frozen=True)
class FaceCropConfig:
    """Everything that decides which pixels become the face image."""

    #: Side of the square face image handed to the encoder.
    size: int = 64
    #: Resampling used to bring the face square to ``size``.
    interpolation: str = "area"
    #: Fraction of the detected face's side added on each side before squaring.
    margin: float = 0.15
    scale_factor: float = 1.1
    min_neighbors: int = 5
    #: Smallest face searched for, as a fraction of the frame's shorter side.
    min_face: float = 0.15
    #: Frames are shrunk so their shorter side is at most this before detection (speed).
    detect_short_side: int = 240

    def __post_init__(self) -> None:
        if self.interpolation not in INTERPOLATIONS:
            raise ValueError(f"interpolation {self.interpolation!r} is not one of {sorted(INTERPOLATIONS)}")


@dataclass(frozen=True)
class FaceCrops:
    """Face images of ``T`` frames of one utterance."""

    #: ``(T, size, size, 3)`` uint8 RGB.
    images: np.ndarray
    #: ``(T,)`` bool: the cascade found a face in that frame.
    found: np.ndarray
    #: ``(T, 3)`` float32: centre x, centre y of the square and its side, as fractions
    #: of the frame's width, height and shorter side.
    boxes: np.ndarray


class FaceCropper:
    """Detects and crops faces; safe to share between threads (one cascade per thread)."""

    def __init__(self, config: FaceCropConfig):
        self.config = config
        # The extraction pipeline detects in several load threads at once, one frame each;
        # OpenCV's own thread pool on top of them would oversubscribe the cores and take
        # CPU from the encoder's forward pass (measured in bench/extract.py). This is
        # OpenCV's process-wide setting.
        cv2.setNumThreads(1)
        self._sha256 = cascade_sha256()
        self._local = threading.local()

    def describe(self) -> dict[str, Any]:
        """The detector and crop parameters, for an encoder's ``preprocessing()``."""
        return {
            "face_detector": "opencv-haar-cascade",
            "cascade": CASCADE_FILE,
            "cascade_sha256": self._sha256,
            "opencv": cv2.__version__,
            **{f"face_{k}": v for k, v in asdict(self.config).items()},
            "face_choice": "largest",
            "face_fallback": "centre square of the frame",
        }

    def _cascade(self) -> cv2.CascadeClassifier:
        cascade = getattr(self._local, "cascade", None)
        if cascade is None:
            cascade = cv2.CascadeClassifier(str(cascade_path()))
            if cascade.empty():
                raise FaceDetectorUnavailable(f"OpenCV could not load the face cascade {cascade_path()}; reinstall opencv-python-headless 4.x")
            self._local.cascade = cascade
        return cascade

    def detect(self, frame: np.ndarray) -> tuple[int, int, int, int] | None:
        """The largest face in an RGB frame as (x, y, w, h) in frame pixels, or None."""
        cfg = self.config
        height, width = frame.shape[:2]
        scale = min(1.0, cfg.detect_short_side / min(height, width))
        gray = cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY)
        if scale < 1.0:
            gray = cv2.resize(gray, (round(width * scale), round(height * scale)), interpolation=cv2.INTER_AREA)
        gray = cv2.equalizeHist(gray)
        smallest = max(8, int(cfg.min_face * min(gray.shape)))
        faces = self._cascade().detectMultiScale(gray, scaleFactor=cfg.scale_factor, minNeighbors=cfg.min_neighbors, minSize=(smallest, smallest))
        if len(faces) == 0:
            return None
        x, y, w, h = max((tuple(int(v) for v in f) for f in faces), key=lambda f: f[2] * f[3])
        return round(x / scale), round(y / scale), round(w / scale), round(h / scale)

    def square(self, frame_shape: tuple[int, ...], face: tuple[int, int, int, int] | None) -> tuple[int, int, int]:
        """(x0, y0, side) of the square to crop: the face grown by the margin, or the centre square; inside the frame."""
        height, width = frame_shape[:2]
        limit = min(height, width)
        if face is None:
            return (width - limit) // 2, (height - limit) // 2, limit
        x, y, w, h = face
        side = min(limit, round(max(w, h) * (1 + 2 * self.config.margin)))
        cx, cy = x + w / 2, y + h / 2
        x0 = int(np.clip(round(cx - side / 2), 0, width - side))
        y0 = int(np.clip(round(cy - side / 2), 0, height - side))
        return x0, y0, side

    def crop(self, frames: np.ndarray) -> FaceCrops:
        """Face images for ``(T, H, W, 3)`` uint8 RGB frames."""
        cfg = self.config
        count, height, width = frames.shape[:3]
        images = np.empty((count, cfg.size, cfg.size, 3), np.uint8)
        found = np.zeros(count, bool)
        boxes = np.empty((count, 3), np.float32)
        for i, frame in enumerate(frames):
            face = self.detect(frame)
            x0, y0, side = self.square(frame.shape, face)
            found[i] = face is not None
            boxes[i] = ((x0 + side / 2) / width, (y0 + side / 2) / height, side / min(height, width))
            images[i] = cv2.resize(frame[y0 : y0 + side, x0 : x0 + side], (cfg.size, cfg.size), interpolation=INTERPOLATIONS[cfg.interpolation])
        return FaceCrops(images=images, found=found, boxes=boxes)
