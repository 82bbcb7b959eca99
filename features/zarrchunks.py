"""Zarr arrays of frames: writing them in whole chunks, reading raw chunks straight into an array,
and, over a URL, refusing to read a missing chunk as zeros.

Why large unsharded chunks, no codec, and direct reads: see ``features.zarrstore``
and ``bench/RESULTS.md``.
"""
from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
from zarr.storage import FsspecStore

from features.records import Segment, SetMeta, StoreError

# Bytes per chunk of a data array along time (see bench/RESULTS.md).
CHUNK_BYTES = 8 << 20


def raw_chunks(array: Any) -> bool:
    """Whether each chunk file of ``array`` is its plain little-endian C-order bytes."""
    codecs = array.metadata.codecs
    return (
        len(codecs) == 1
        and type(codecs[0]).__name__ == "BytesCodec"
        and str(getattr(codecs[0], "endian", "little")).endswith("little")
        and array.order == "C"
        and array.metadata.chunk_key_encoding.name == "default"
    )


def read_raw(root_path: Path, location: str, handle: str, array: Any, start: int, stop: int, out: np.ndarray) -> None:
    """Read uncompressed little-endian chunks straight from their files into ``out``.

    A chunk written with no codec but ``bytes`` is the C-order bytes of the
    chunk, so frames ``[a, b)`` of it are one byte range per layer: reading
    them with ``readinto`` skips zarr's decode-and-copy, which makes a full
    load run near ``numpy.fromfile`` and a random read touch only its bytes.
    """
    metadata = array.metadata
    chunk = array.chunks[-2]
    row = array.shape[-1] * array.dtype.itemsize
    layers = array.shape[0] if array.ndim == 3 else None
    base = root_path / handle / "data"
    first, last = start // chunk, (stop - 1) // chunk
    for k in range(first, last + 1):
        lo, hi = max(start, k * chunk), min(stop, (k + 1) * chunk)
        key = metadata.encode_chunk_key((k, 0) if layers is None else (0, k, 0))
        try:
            f = open(base / key, "rb", buffering=0)
        except FileNotFoundError:
            if not (root_path / handle).exists():
                raise  # compacted away since the set was listed: the reader lists again
            # Segments are written with every chunk present, so a chunk missing from a live segment is damage.
            raise StoreError(
                f"chunk {base / key} of {location} is missing; if a writer was compacting this part, "
                "reopen the set, otherwise run `features verify`"
            ) from None
        with f:
            for layer in range(layers or 1):
                target = out[lo - start : hi - start] if layers is None else out[layer, lo - start : hi - start]
                f.seek((layer * chunk + lo - k * chunk) * row)
                if target.flags.c_contiguous:
                    got = f.readinto(memoryview(target).cast("B"))
                else:
                    buffer = np.empty(target.shape, dtype=target.dtype)
                    got = f.readinto(memoryview(buffer).cast("B"))
                    target[...] = buffer
                if got != (hi - lo) * row:
                    raise StoreError(
                        f"chunk {base / key} of {location} is truncated ({got} of {(hi - lo) * row} bytes "
                        "read); run `features verify`"
                    )


def write_data(group: Any, meta: SetMeta, blocks: Iterable[np.ndarray], frames: int, what: str) -> None:
    """Create ``data`` in ``group`` (no codec, chunks of CHUNK_BYTES along time) and fill it from ``blocks``."""
    chunk = max(1, min(frames, CHUNK_BYTES // meta.frame_bytes))
    data = group.create_array(
        "data",
        shape=meta.frame_shape(frames),
        dtype=meta.dtype,
        chunks=meta.frame_shape(chunk),
        compressors=None,
        filters=None,
        fill_value=0,
        # Otherwise zarr skips chunks equal to the fill value, and a chunk of -0.0 would read back as +0.0.
        config={"write_empty_chunks": True},
    )
    # Write whole chunks only: a partial chunk would be read back and rewritten.
    buffer = np.empty(meta.frame_shape(chunk), dtype=meta.dtype)
    filled = written = 0
    for block in blocks:
        at = 0
        n = block.shape[-2]
        while at < n:
            take = min(chunk - filled, n - at)
            buffer[..., filled : filled + take, :] = block[..., at : at + take, :]
            filled += take
            at += take
            if filled == chunk:
                data[..., written : written + chunk, :] = buffer
                written += chunk
                filled = 0
    if filled:
        data[..., written : written + filled, :] = buffer[..., :filled, :]
        written += filled
    if written != frames:
        raise StoreError(f"internal: {what} got {written} frames, expected {frames}")


# A chunk of a frames array (``<set>/data`` or a segment's ``.../data``) under the default key encoding.
_DATA_CHUNK = re.compile(r"(?:^|/)data/c/(\d+(?:/\d+)*)$")


class MissingChunk(Exception):
    """Raised from inside zarr's read; the back-end's ``read_frames``, which knows the set and its
    utterances, turns it into :func:`missing_chunk_message`."""

    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


class DataChunksMustExist(FsspecStore):
    """An fsspec store on which a missing chunk of frames raises instead of reading as zeros.

    Zarr reads a chunk that is not there (a 404 over HTTP, an absent S3 key) as the fill
    value, so a store copied or uploaded only in part would hand out zeros for training.
    Frames are written with every chunk present (``write_empty_chunks``), so a missing one
    is always damage, as it is for local reads (:func:`read_raw`). Other arrays keep
    zarr's rule: it leaves out their chunks that equal the fill value.
    """

    async def get(self, key: str, prototype: Any, byte_range: Any = None) -> Any:
        value = await super().get(key, prototype, byte_range)
        if value is None and _DATA_CHUNK.search(key):
            raise MissingChunk(key)
        return value


def missing_chunk_message(location: str, segment: Segment, key: str, chunk: int, start: int, stop: int) -> str:
    """What to tell a reader of the remote store at ``location`` that lacks chunk ``key`` (``chunk``
    frames each) while reading frames ``start:stop`` of ``segment``: the set, the utterances it holds
    frames of, and the way out."""
    k = int(_DATA_CHUNK.search(key).group(1).split("/")[-2])
    lo, hi = max(start, k * chunk), min(stop, (k + 1) * chunk)
    ends = np.cumsum(segment.lengths)
    hit = [u for u, end, n in zip(segment.ids, ends, segment.lengths) if end - n < hi and end > lo]
    shown = ", ".join(repr(u) for u in hit[:3]) + (f" and {len(hit) - 3} more" if len(hit) > 3 else "")
    return (
        f"the store at {location} is missing chunk {key} (frames {lo}:{hi} of set {segment.handle.split('/')[0]!r}, "
        f"utterance(s) {shown}); it was copied or uploaded only in part: copy or upload it again, "
        f"then check it with `features verify {location}`"
    )
