"""Synthetic dialog video for the demo corpus: two drawn faces side by side.

Each half of a frame holds one large frontal face (head, hair, eyes, brows,
nose, mouth) on a neutral background. The expression (mouth curvature and
opening, brow angle and height, eye opening) follows the emotion the video
expresses for the actor's current utterance; the speaking face moves its mouth
with the speech energy.
"""
from __future__ import annotations

import subprocess
import tempfile
from pathlib import Path
from typing import IO

import cv2
import numpy as np

from extract.media import ffmpeg_exe

FPS = 15
HALF = 160  # each face gets a HALF x HALF square
WIDTH, HEIGHT = 2 * HALF, HALF

# curve (smile > 0), mouth open, brow angle (inner end up > 0), brow raise, eye opening
EXPRESSIONS: dict[str, np.ndarray] = {
    "neu": np.array([0.0, 0.0, 0.0, 0.0, 1.0]),
    "hap": np.array([0.8, 0.15, 0.0, 0.1, 0.75]),
    "exc": np.array([1.0, 0.8, 0.2, 0.9, 1.35]),
    "ang": np.array([-0.5, 0.25, -1.0, -0.4, 0.7]),
    "sad": np.array([-0.9, 0.0, 1.0, 0.1, 0.55]),
    "fru": np.array([-0.35, 0.05, -0.5, -0.1, 0.9]),
}
NEUTRAL = EXPRESSIONS["neu"]

BACKGROUND = (150, 150, 150)  # BGR
HAIR = (40, 45, 60)
FEATURE = (35, 35, 45)
LIPS = (70, 60, 150)


def head_sprite(skin: tuple[int, int, int]) -> np.ndarray:
    """The parts of a face that never move (hair, head, nose), on the background, with a margin for sway."""
    size = HALF + 2 * _MARGIN
    sprite = np.empty((size, size, 3), np.uint8)
    sprite[:] = BACKGROUND
    cx, cy = size // 2, size // 2 + 4
    aa = cv2.LINE_AA
    cv2.ellipse(sprite, (cx, cy - 8), (56, 62), 0, 180, 360, HAIR, -1, aa)  # hair behind the head
    cv2.ellipse(sprite, (cx, cy), (50, 64), 0, 0, 360, skin, -1, aa)
    cv2.ellipse(sprite, (cx, cy - 40), (50, 26), 0, 180, 360, HAIR, -1, aa)  # fringe
    darker = tuple(int(c * 0.75) for c in skin)
    cv2.line(sprite, (cx, cy - 6), (cx - 3, cy + 12), darker, 2, aa)  # nose bridge
    cv2.ellipse(sprite, (cx, cy + 14), (8, 3), 0, 0, 180, darker, 2, aa)  # nostrils
    return sprite


_MARGIN = 4
_XS = np.linspace(-20, 20, 11)
_BOW = (_XS / 20) ** 2


def draw_face(frame: np.ndarray, x0: int, sprite: np.ndarray, expr: np.ndarray, talk: float, sway: tuple[int, int]) -> None:
    """Draw one face into the ``HALF``-wide column of ``frame`` starting at ``x0``.

    ``sprite`` comes from :func:`head_sprite`; ``sway`` is an integer offset of
    at most ``_MARGIN`` pixels.
    """
    curve, mouth_open, brow_angle, brow_raise, eye_open = (float(v) for v in expr)
    dx, dy = sway
    frame[:, x0 : x0 + HALF] = sprite[_MARGIN - dy : _MARGIN - dy + HALF, _MARGIN - dx : _MARGIN - dx + HALF]
    cx, cy = x0 + HALF // 2 + dx, HALF // 2 + 4 + dy
    aa = cv2.LINE_AA

    eye_h = max(2, int(round(7 * eye_open)))
    inner_y = int(round(cy - 24 - 10 * brow_raise - 9 * brow_angle))
    outer_y = int(round(cy - 24 - 10 * brow_raise + 4 * brow_angle))
    for side in (-1, 1):
        eye = (cx + side * 20, cy - 10)
        cv2.ellipse(frame, eye, (11, eye_h), 0, 0, 360, (235, 235, 235), -1, aa)
        cv2.circle(frame, eye, min(5, eye_h), FEATURE, -1, aa)
        cv2.ellipse(frame, eye, (12, eye_h + 1), 0, 180, 360, FEATURE, 2, aa)  # upper lid
        cv2.line(frame, (cx + side * 8, inner_y), (cx + side * 32, outer_y), FEATURE, 4, aa)  # brow

    # Mouth: an upper lip curve (corners up for a smile) and a lower lip that opens with the expression and speech.
    upper = cy + 34 - curve * 13 * _BOW - 2 * curve
    opening = 2 + 14 * min(1.0, mouth_open + 0.9 * talk)
    lower = upper + opening * (1 - _BOW)
    xs = cx + _XS
    outline = np.round(np.concatenate([np.stack([xs, upper], 1), np.stack([xs, lower], 1)[::-1]])).astype(np.int32)
    cv2.fillPoly(frame, [outline], LIPS, aa)
    if opening > 5:
        inside = np.round(
            np.concatenate([np.stack([xs[2:-2], upper[2:-2] + 2], 1), np.stack([xs[2:-2], lower[2:-2] - 2], 1)[::-1]])
        ).astype(np.int32)
        cv2.fillPoly(frame, [inside], (30, 20, 40), aa)


class DialogVideo:
    """Writes the frames of one dialog to an AVI through ffmpeg (MPEG-4 part 2, bit-exact)."""

    def __init__(self, path: Path):
        self.path = path
        # ffmpeg's messages go to a file: a pipe nobody reads while frames are written could fill up and block.
        self._log = tempfile.TemporaryFile()
        self._proc = subprocess.Popen(
            [
                ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-y",
                "-f", "rawvideo", "-pix_fmt", "bgr24", "-s", f"{WIDTH}x{HEIGHT}", "-r", str(FPS), "-i", "-",
                "-c:v", "mpeg4", "-q:v", "5", "-g", str(2 * FPS), "-pix_fmt", "yuv420p", "-threads", "1",
                "-fflags", "+bitexact", "-flags:v", "+bitexact", "-map_metadata", "-1",
                str(path),
            ],
            stdin=subprocess.PIPE,
            stderr=self._log,
        )
        self._stdin: IO[bytes] = self._proc.stdin  # type: ignore[assignment]  # stdin=PIPE makes it a stream

    def write(self, frame: np.ndarray) -> None:
        self._stdin.write(frame.tobytes())

    def close(self) -> None:
        try:
            self._stdin.close()
        except BrokenPipeError:
            pass  # ffmpeg already exited; its exit status and log say why
        status = self._proc.wait()
        self._log.seek(0)
        message = self._log.read().decode(errors="replace").strip()
        self._log.close()
        if status != 0:
            raise RuntimeError(f"ffmpeg failed writing {self.path} (exit status {status}): {message}")


def render_dialog(
    path: Path,
    duration: float,
    turns: list[tuple[int, float, float, str, np.ndarray]],
    skins: tuple[tuple[int, int, int], tuple[int, int, int]],
    rng: np.random.Generator,
) -> None:
    """Render a dialog video of ``duration`` seconds.

    ``turns``: (side 0=left/1=right, start, end, expressed emotion, per-frame
    speech energy over the turn normalised to [0, 1]) in time order. Outside its
    own turns an actor keeps a softened version of its last expression.
    """
    n_frames = int(np.ceil(duration * FPS))
    target = [NEUTRAL.copy(), NEUTRAL.copy()]
    current = [NEUTRAL.copy(), NEUTRAL.copy()]
    sway_phase = rng.uniform(0, 2 * np.pi, 4)
    sprites = [head_sprite(skins[0]), head_sprite(skins[1])]
    video = DialogVideo(path)
    try:
        turn_index = 0
        active: list[tuple[int, float, float, str, np.ndarray] | None] = [None, None]
        last: list[tuple[tuple, np.ndarray] | None] = [None, None]
        for i in range(n_frames):
            time = i / FPS
            while turn_index < len(turns) and turns[turn_index][1] <= time:
                side, start, end, emotion, _ = turns[turn_index]
                target[side] = EXPRESSIONS[emotion] + rng.normal(0, 0.08, 5)
                active[side] = turns[turn_index]
                turn_index += 1
            frame = np.empty((HEIGHT, WIDTH, 3), np.uint8)
            for side in (0, 1):
                talk = 0.0
                turn = active[side]
                if turn is not None and time >= turn[2]:
                    # The turn is over: drift halfway back to neutral.
                    target[side] = 0.5 * (target[side] + NEUTRAL)
                    active[side] = turn = None
                elif turn is not None:
                    energy = turn[4]
                    k = int((time - turn[1]) * FPS)
                    talk = round(float(energy[min(k, len(energy) - 1)]), 2) if len(energy) else 0.0
                current[side] += 0.35 * (target[side] - current[side])
                expr = current[side] + rng.normal(0, 0.02, 5) if turn is not None else current[side]
                expr = np.round(expr, 2)
                sway = (
                    int(round(3 * np.sin(0.9 * time + sway_phase[2 * side]))),
                    int(round(2 * np.sin(0.6 * time + sway_phase[2 * side + 1]))),
                )
                # A listener's face settles and stays still for many frames: reuse the last drawing.
                key = (tuple(expr), talk, sway)
                columns = slice(side * HALF, (side + 1) * HALF)
                if last[side] is not None and last[side][0] == key:
                    frame[:, columns] = last[side][1]
                else:
                    draw_face(frame, side * HALF, sprites[side], expr, talk, sway)
                    last[side] = (key, frame[:, columns].copy())
            video.write(frame)
    finally:
        video.close()
