"""Video encoders: a fixed number of face images per utterance, one vector per image.

:meth:`load` (CPU threads) decodes ``frames`` frames evenly spread over the
utterance's ``[start, end]`` in the speaker's half of the dialog video
(:mod:`extract.video_decode`), finds the face in each (:mod:`extract.faces`) and
resizes it for the model. :meth:`encode` turns a batch of those into ``(T, D)``
arrays, ``T`` = ``frames``.

Registered encoders:

* ``hog`` (the default): a HOG descriptor of the 64x64 grey face plus where the
  face sits in the frame; needs no weights.
* ``timm:<model>`` with ``weights``: the pooled features of a timm image model,
  e.g. ``timm:tf_efficientnet_b0`` with HSEmotion's ``enet_b0_8_best_afew.pt``
  (the paper's EfficientNet pre-trained on VGGFace2 and AFEW).

Each encoder counts, over the utterances it encoded, the frames where no face
was found (see :meth:`FaceVideoEncoder.stats`).
"""
from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import cv2
import numpy as np
import torch

from manifests import Utterance

from .base import DEFAULTS, Encoder, EncoderConfigError, ExtractError, register
from .faces import FaceCropConfig, FaceCropper, FaceDetectorUnavailable
from .video_decode import MediaError, decode_frames, probe_video, resolve_span
from .video_decode import END_TOLERANCE_S
from .video_weights import architecture_mismatches, file_sha256, load_strict, read_weights

DEFAULT_FRAMES = 16
TORCH_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


@dataclass(frozen=True)
class VideoItem:
    """What :meth:`FaceVideoEncoder.load` gives for one utterance."""

    utt_id: str
    #: ``(T, S, S, 3)`` uint8 RGB face images at the encoder's input size.
    faces: np.ndarray
    #: ``(T,)`` bool: a face was detected in that frame (else the centre square was used).
    found: np.ndarray
    #: ``(T, 3)`` float32: face square centre x, y and side, as fractions of the half frame.
    boxes: np.ndarray
    #: The span held fewer video frames than T, so frames repeat.
    repeated: bool
    #: The utterance's end lay past the video's end (within the tolerance) and was cut to it.
    clipped: bool

    @property
    def frames_without_face(self) -> int:
        return int((~self.found).sum())


class FaceVideoEncoder(Encoder):
    """Common part of the video encoders: options, decoding, face crops and their statistics."""

    modality = "video"
    accepted_options: ClassVar[frozenset[str] | None] = frozenset({"weights", "trust_pickle", "frames"})
    # Every item is T images, so batches are counted in utterances: ~8 per batch of the default cost 60.
    batch_cost: ClassVar[float] = 60.0

    def __init__(self, arg: str | None, *, device: str = "cpu", dtype: str = "float32", options: dict[str, Any] | None = None):
        super().__init__(arg, device=device, dtype=dtype, options=options)
        frames = self.options.get("frames", DEFAULT_FRAMES)
        if isinstance(frames, bool) or not isinstance(frames, int) or frames < 1:
            raise EncoderConfigError(f"--frames must be a whole number >= 1 (frames sampled per utterance), got {frames!r}")
        self.frames = frames
        try:
            self.cropper = FaceCropper(self.face_config())
        except FaceDetectorUnavailable as err:
            raise EncoderConfigError(str(err)) from None
        self._stats_lock = threading.Lock()
        self._stats = {"utterances": 0, "frames": 0, "frames_without_face": 0, "utterances_without_face": 0, "utterances_repeated_frames": 0, "utterances_clipped": 0}

    def face_config(self) -> FaceCropConfig:
        """How faces are cropped and resized for this encoder's model."""
        return FaceCropConfig()

    def cost(self, utt: Utterance) -> float:
        # Decoding time grows with the span; the model's work does not (always T images).
        if utt.start is not None and utt.end is not None:
            return max(float(utt.end) - float(utt.start), 0.0)
        return float(self.frames)

    def length(self, utt: Utterance) -> int | None:
        return self.frames

    def load(self, utt: Utterance) -> VideoItem:
        if not utt.video:
            raise ExtractError(
                utt.utt_id,
                "input",
                "the manifest row has no video path; add the dialog video (field `video`) to the manifest, or leave video out of the modalities",
            )
        try:
            info = probe_video(utt.video)
            span = resolve_span(info, utt.start, utt.end)
            frames, _ = decode_frames(info, span, utt.video_side, self.frames)
        except MediaError as err:
            raise ExtractError(utt.utt_id, err.stage, err.message) from None
        crops = self.cropper.crop(frames)
        return VideoItem(
            utt_id=utt.utt_id,
            faces=crops.images,
            found=crops.found,
            boxes=crops.boxes,
            repeated=span.duration * info.fps < self.frames,
            clipped=span.clipped,
        )

    def _count(self, items: list[VideoItem]) -> None:
        with self._stats_lock:
            for item in items:
                missing = item.frames_without_face
                self._stats["utterances"] += 1
                self._stats["frames"] += len(item.found)
                self._stats["frames_without_face"] += missing
                self._stats["utterances_without_face"] += int(missing == len(item.found))
                self._stats["utterances_repeated_frames"] += int(item.repeated)
                self._stats["utterances_clipped"] += int(item.clipped)

    def stats(self) -> dict[str, int]:
        """Totals over the utterances encoded so far by this encoder, for the set's provenance.

        ``frames_without_face``: frames where the cascade found no face and the centre
        square was used; ``utterances_without_face``: utterances with no face in any
        frame; ``utterances_repeated_frames``: spans shorter than ``frames`` video frames;
        ``utterances_clipped``: ends past the end of the video, cut to it.
        """
        with self._stats_lock:
            return dict(self._stats)

    def preprocessing(self) -> dict[str, Any]:
        return {
            "frames": self.frames,
            "sampling": "the video frame nearest to start + i * (end - start) / frames for i < frames (ffmpeg fps filter); short spans repeat frames",
            "crop": "the speaker's half (video_side), whole frame without one",
            "end_tolerance_s": END_TOLERANCE_S,
            "colour": "RGB",
            **self.cropper.describe(),
        }


@register
class HogVideoEncoder(FaceVideoEncoder):
    """HOG of the grey 64x64 face (8x8-pixel cells, 9 orientation bins, 2x2-cell blocks
    normalised side by side without overlap: 576 values), then 4 measures of the face's
    place in the frame: detected (0/1), centre x, centre y, size.
    """

    kind = "hog"
    accepted_options = frozenset({"frames"})
    FACE = 64
    CELL = 8
    BLOCK = 16
    BINS = 9
    GEOMETRY = ("face_found", "centre_x", "centre_y", "size")

    def __init__(self, arg: str | None, **kwargs: Any):
        super().__init__(arg, **kwargs)
        if arg:
            raise EncoderConfigError(f"the hog video encoder takes no argument, got {self.spec!r}; use --encoder hog")
        self._hog = cv2.HOGDescriptor((self.FACE, self.FACE), (self.BLOCK, self.BLOCK), (self.BLOCK, self.BLOCK), (self.CELL, self.CELL), self.BINS)
        self._hog_dim = int(self._hog.getDescriptorSize())

    def check_options(self) -> None:
        # The CLI may pass --trust-pickle's default (False) to every encoder; only a real request is refused.
        if self.options.get("trust_pickle") is False:
            del self.options["trust_pickle"]
        super().check_options()

    def face_config(self) -> FaceCropConfig:
        return FaceCropConfig(size=self.FACE, interpolation="area")

    @property
    def dim(self) -> int:
        return self._hog_dim + len(self.GEOMETRY)

    def encode(self, items: list[VideoItem]) -> list[np.ndarray]:
        out = []
        for item in items:
            hog = np.stack([self._hog.compute(cv2.cvtColor(face, cv2.COLOR_RGB2GRAY)).reshape(-1) for face in item.faces])
            geometry = np.concatenate([item.found[:, None].astype(np.float32), item.boxes], axis=1)
            out.append(np.concatenate([hog, geometry], axis=1).astype(np.float32))
        self._count(items)
        return out

    def preprocessing(self) -> dict[str, Any]:
        return {
            **super().preprocessing(),
            "descriptor": "opencv-hog",
            "hog": {"window": self.FACE, "cell": self.CELL, "block": self.BLOCK, "block_stride": self.BLOCK, "bins": self.BINS, "input": "grey"},
            "geometry": list(self.GEOMETRY),
        }


if "video" not in DEFAULTS:
    DEFAULTS["video"] = "hog"
