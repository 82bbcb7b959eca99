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

Each utterance's counts (frames without a face, repeated or clipped spans; see
:meth:`FaceVideoEncoder.counts`) are stored with its features, and the run's
notes sum them. torch and timm are imported only when a timm model is built.
"""
from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import cv2
import numpy as np

from manifests import Utterance

from .base import Encoder, EncoderConfigError, ExtractError, register, torch_dtype
from .faces import FaceCropConfig, FaceCropper, FaceDetectorUnavailable
from .video_decode import END_TOLERANCE_S, MediaError, decode_frames, probe_video, resolve_span

DEFAULT_FRAMES = 16
_log = logging.getLogger(__name__)


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
    #: Seconds of video per batch: about six IEMOCAP utterances, ~100 face images at 16
    #: frames. Every utterance costs the model the same ``frames`` images, so big batches
    #: buy nothing, and small ones let the encoder start as soon as the first is decoded.
    batch_cost = 20.0

    def __init__(self, arg: str | None, *, device: str = "cpu", dtype: str = "float32", options: dict[str, Any] | None = None):
        super().__init__(arg, device=device, dtype=dtype, options=options)
        frames = self.options.get("frames", DEFAULT_FRAMES)
        if isinstance(frames, bool) or not isinstance(frames, int) or frames < 1:
            raise EncoderConfigError(f"--frames must be a whole number >= 1 (frames sampled per utterance), got {frames!r}")
        self.frames = frames
        self._pending_notes: list[str] = []
        self._setup()
        try:
            self.cropper = FaceCropper(self.face_config())
        except FaceDetectorUnavailable as err:
            raise EncoderConfigError(str(err)) from None
        self._stats_lock = threading.Lock()
        self._stats = {"utterances": 0, "frames": 0, "frames_without_face": 0, "utterances_without_face": 0, "utterances_repeated_frames": 0, "utterances_clipped": 0}
        self._noted = dict(self._stats)

    def _setup(self) -> None:
        """Build the model; runs once the common options are checked, before the face cropper is made."""

    def face_config(self) -> FaceCropConfig:
        """How faces are cropped and resized for this encoder's model."""
        return FaceCropConfig()

    def cost(self, utt: Utterance) -> float:
        """Seconds of video to decode (the model's work is always ``frames`` images)."""
        if utt.start is not None and utt.end is not None:
            return max(float(utt.end) - float(utt.start), 0.0)
        if not utt.video:
            return 0.0
        try:
            info = probe_video(utt.video)
        except MediaError:
            return 0.0  # load() reports the problem for this utterance
        return info.duration - (utt.start or 0.0) if utt.end is None else float(utt.end)

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
            frames, span_count = decode_frames(info, span, utt.video_side, self.frames)
        except MediaError as err:
            raise ExtractError(utt.utt_id, err.stage, err.message) from None
        crops = self.cropper.crop(frames)
        return VideoItem(
            utt_id=utt.utt_id,
            faces=crops.images,
            found=crops.found,
            boxes=crops.boxes,
            repeated=span_count < self.frames,
            clipped=span.clipped,
        )

    def counts(self, item: VideoItem) -> dict[str, int]:
        """Per utterance: ``frames``, ``frames_without_face`` (the cascade found none and the
        centre square was used), and 0/1 flags ``utterances_without_face`` (no face in any
        frame), ``utterances_repeated_frames`` (fewer video frames than ``frames`` in the
        span) and ``utterances_clipped`` (the end lay past the video's, cut to it); summed
        over a set, they read as their names say.
        """
        missing = item.frames_without_face
        return {
            "frames": len(item.found),
            "frames_without_face": missing,
            "utterances_without_face": int(missing == len(item.found)),
            "utterances_repeated_frames": int(item.repeated),
            "utterances_clipped": int(item.clipped),
        }

    def _count(self, items: list[VideoItem]) -> None:
        with self._stats_lock:
            for item in items:
                self._stats["utterances"] += 1
                for name, value in self.counts(item).items():
                    self._stats[name] += value

    def notes(self) -> list[str]:
        """What the run summary should say since the last call: frames without a face, clipped or short spans."""
        with self._stats_lock:
            now = dict(self._stats)
            delta = {k: now[k] - self._noted[k] for k in now}
            self._noted = now
            notes, self._pending_notes = self._pending_notes, []
        if delta["frames_without_face"]:
            notes.append(
                f"{self.spec}: no face found in {delta['frames_without_face']} of {delta['frames']} frames "
                f"({delta['utterances_without_face']} of {delta['utterances']} utterances had none in any frame); the centre square of the half frame was used"
            )
        if delta["utterances_clipped"]:
            notes.append(f"{self.spec}: {delta['utterances_clipped']} utterances end after their video (by at most {END_TOLERANCE_S} s) and were cut at its end")
        if delta["utterances_repeated_frames"]:
            notes.append(f"{self.spec}: {delta['utterances_repeated_frames']} utterances are shorter than {self.frames} video frames; their frames repeat")
        return notes

    def preprocessing(self) -> dict[str, Any]:
        return {
            "frames": self.frames,
            "sampling": "middle frame of each of `frames` equal runs of the span's N frames: floor((i + 0.5) * N / frames); N < frames repeats",
            # Before, frames were counted from where ffmpeg's seek landed: a frame or two off in AVIs.
            "frame_pick": "by timestamp: the first frame's + k / fps",
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

    def _setup(self) -> None:
        if self.arg:
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


WEIGHTS_HELP = (
    "timm:{name} needs --weights FILE, a state dict (.pt/.pth/.safetensors) of timm's {name!r}. "
    "The paper's face model is HSEmotion's enet_b0_8_best_afew.pt "
    "(https://github.com/HSE-asavchenko/face-emotion-recognition/raw/main/models/affectnet_emotions/enet_b0_8_best_afew.pt), a whole pickled "
    "tf_efficientnet_b0: use --encoder timm:tf_efficientnet_b0 --weights enet_b0_8_best_afew.pt --trust-pickle. "
    "For timm's own pretrained weights, on a machine with internet run "
    "torch.save(timm.create_model({name!r}, pretrained=True).state_dict(), '{name}.pt') and copy the file here"
)


@register
class TimmVideoEncoder(FaceVideoEncoder):
    """Pooled features (``num_classes=0``) of a timm image model over each face image.

    The model is built with ``pretrained=False`` and filled from ``weights``
    strictly; a classifier head in the file is dropped (noted in :attr:`notes`).
    Input size, resampling and normalisation come from timm's
    ``resolve_data_config`` for the model; the face square is resized straight to
    the input size (no centre crop: the square is already the face).
    """

    kind = "timm"
    computes_in_dtype = True
    #: Face images per forward pass, to bound memory on big batches.
    CHUNK = 256

    def _setup(self) -> None:
        import timm
        import torch
        from timm.data import resolve_data_config

        from .video_weights import architecture_mismatches, file_sha256, load_strict, read_weights

        name = self.arg
        if not name:
            raise EncoderConfigError("the timm video encoder needs a model name, e.g. --encoder timm:tf_efficientnet_b0 or timm:efficientnet_b0")
        if not timm.is_model(name):
            close = timm.list_models(f"*{name.split('.')[0][:12]}*")[:8]
            raise EncoderConfigError(f"timm has no model {name!r}" + (f"; close names: {close}" if close else "; see timm.list_models()"))
        if "weights" not in self.options:
            raise EncoderConfigError(WEIGHTS_HELP.format(name=name))
        self._torch_dtype = torch_dtype(self.dtype)
        self.weights_path = Path(self.options["weights"])
        if not self.weights_path.is_file():
            raise EncoderConfigError(f"weights file {self.weights_path} does not exist; " + WEIGHTS_HELP.format(name=name))
        model = timm.create_model(name, pretrained=False, num_classes=0)
        data = resolve_data_config({}, model=model)
        _, height, width = data["input_size"]
        if height != width:
            raise EncoderConfigError(f"timm model {name!r} takes {height}x{width} images; only square inputs are supported for face crops")
        self._data_config = {
            "input_size": int(height),
            "interpolation": data.get("interpolation", "bilinear"),
            "mean": [float(v) for v in data["mean"]],
            "std": [float(v) for v in data["std"]],
        }
        state, unpickled = read_weights(self.weights_path, trust_pickle=bool(self.options.get("trust_pickle", False)))
        if unpickled is not None:
            mismatches = architecture_mismatches(unpickled, model)
            if mismatches:
                raise EncoderConfigError(
                    f"the model pickled in {self.weights_path} is built differently from timm's {name!r} "
                    f"({len(mismatches)} layers, e.g. {mismatches[:2]}); its tensors would give wrong features there. "
                    "Name the architecture it was trained as (HSEmotion's enet_b0_* files are tf_efficientnet_b0)"
                )
        dropped = load_strict(model, state, self.weights_path, name)
        if dropped:
            self._pending_notes.append(f"{self.spec}: dropped the classifier head ({', '.join(dropped)}) of {self.weights_path}")
            _log.info(self._pending_notes[-1])
        self._sha256 = file_sha256(self.weights_path)
        self.model = model.eval().requires_grad_(False).to(device=self.device, dtype=self._torch_dtype)
        self._mean = torch.tensor(self._data_config["mean"], device=self.device).view(1, 3, 1, 1)
        self._std = torch.tensor(self._data_config["std"], device=self.device).view(1, 3, 1, 1)
        size = self._data_config["input_size"]
        with torch.inference_mode():
            self._dim = int(self.model(torch.zeros(1, 3, size, size, device=self.device, dtype=self._torch_dtype)).shape[-1])

    def face_config(self) -> FaceCropConfig:
        interpolation = self._data_config["interpolation"]
        return FaceCropConfig(size=self._data_config["input_size"], interpolation=interpolation if interpolation in ("bilinear", "bicubic", "nearest") else "bilinear")

    @property
    def dim(self) -> int:
        return self._dim

    def weights_sha256(self) -> str | None:
        return self._sha256

    def encode(self, items: list[VideoItem]) -> list[np.ndarray]:
        import torch

        faces = np.concatenate([item.faces for item in items])  # (B*T, S, S, 3)
        outputs = []
        with torch.inference_mode():
            for start in range(0, len(faces), self.CHUNK):
                x = torch.from_numpy(faces[start : start + self.CHUNK]).to(self.device).permute(0, 3, 1, 2).float().div_(255)
                x = ((x - self._mean) / self._std).to(self._torch_dtype)
                outputs.append(self.model(x).float().cpu())
        features = torch.cat(outputs).numpy()
        self._count(items)
        bounds = np.cumsum([0] + [len(item.faces) for item in items])
        return [np.ascontiguousarray(features[a:b], dtype=np.float32) for a, b in zip(bounds[:-1], bounds[1:])]

    def preprocessing(self) -> dict[str, Any]:
        import timm

        return {
            **super().preprocessing(),
            "model": self.arg,
            "timm": timm.__version__,
            "resize": "face square straight to input_size (no centre crop)",
            "scale": "1/255",
            **self._data_config,
        }
