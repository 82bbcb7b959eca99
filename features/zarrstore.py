"""The Zarr v3 back-end: one directory tree, readable over HTTP and fsspec URLs.

Layout (every node a Zarr v3 group or array, so plain zarr-python can browse it)::

    store.zarr/zarr.json                        root group; attribute ``emocache``; consolidated metadata
    store.zarr/<set>/zarr.json                  set group; attribute ``emocache``: provenance, frame rate, layers
    store.zarr/<set>/parts/<part>/00000007/     one segment: a group whose attribute ``emocache_segment``
                                                holds its index (ids, lengths, sha256, failures, covers, counts)
    store.zarr/<set>/parts/<part>/00000007/data (T_total, D) or (L, T_total, D), no compressor,
                                                chunks of ``CHUNK_BYTES`` along time

Why concatenated frames with the index in attributes: Zarr has no ragged
arrays, and one array per utterance means two files per utterance (tens of
thousands per store), which network file systems and HTTP punish. Here a
compacted part of an IEMOCAP-sized set is a few hundred chunk files, and the
whole index of a store arrives with one request, inside the consolidated
metadata.

Why large unsharded chunks, no codec, and direct reads (figures in
``bench/RESULTS.md``): through zarr-python's decode path no chunking
reached half of ``numpy.fromfile`` for a full load, and sharding with small
inner chunks was slower still; compression saves under 15% on float16 at a
large cost. An uncompressed chunk file is the C-order bytes of the chunk, so
local reads take the byte ranges they need straight into the output array:
a full load at ~0.8 of ``fromfile`` and random reads that touch only one
utterance's bytes. 8 MB chunks keep an IEMOCAP set to ~310 files. A segment
is written by exactly one process and never modified, so the shard/region
write races of zarr-python (#3682) cannot occur.

A segment is built in a temporary directory, fsynced, and renamed into place.
Writers are local only; readers use the local tree directly (never the
consolidated metadata, which a running writer makes stale) or, for URLs,
the consolidated metadata, which each writer refreshes when it closes.
"""
from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import warnings
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import zarr
from zarr.storage import LocalStore

from features.base import (
    STORE_FORMAT,
    STORE_FORMAT_VERSION,
    Backend,
    Segment,
    SetMeta,
    StoreError,
    register,
    relist_while_compacting,
)
from features.durable import fsync_file, fsync_tree, publish, remove_tree
from features.urls import is_remote, storage_options

_SEGMENT = re.compile(r"^\d{8}$")
# Bytes per chunk of a segment's data along time (see bench/RESULTS.md).
CHUNK_BYTES = 8 << 20


@contextlib.contextmanager
def _quiet():
    """zarr warns about our lock files and about consolidated metadata being outside the v3 spec."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*not recognized as a component of a Zarr hierarchy.*")
        warnings.filterwarnings("ignore", message=".*Consolidated metadata is currently not part.*")
        yield


def _raw_chunks(array: Any) -> bool:
    """Whether each chunk file of ``array`` is its plain little-endian C-order bytes."""
    codecs = array.metadata.codecs
    return (
        len(codecs) == 1
        and type(codecs[0]).__name__ == "BytesCodec"
        and str(getattr(codecs[0], "endian", "little")).endswith("little")
        and array.order == "C"
        and array.metadata.chunk_key_encoding.name == "default"
    )


@register("zarr")
class ZarrBackend(Backend):
    suffixes = (".zarr",)
    reads_urls = True

    def __init__(self, location: str, mode: str) -> None:
        super().__init__(location.rstrip("/"), mode)
        self.remote = is_remote(self.location)
        self.root_path = None if self.remote else Path(self.location)
        self._root: zarr.Group | None = None
        self._arrays: dict[str, Any] = {}

    @classmethod
    def exists(cls, location: str) -> bool:
        if is_remote(location):
            return True  # opening tells; a static server cannot be listed
        # zarr rewrites the root zarr.json (consolidation) by an atomic rename, so it is never
        # missing from a store; a folder without one is a store being created, or no store.
        return (Path(location) / "zarr.json").is_file()

    def create(self) -> None:
        self.root_path.mkdir(parents=True, exist_ok=True)
        foreign = sorted(p.name for p in self.root_path.iterdir() if p.name != self.creation_lock_path().name)
        if foreign:
            raise StoreError(
                f"{self.location} is a folder with other files in it ({', '.join(foreign[:3])}...) but no Zarr store; "
                "give a new path for the feature store"
            )
        zarr.create_group(
            store=LocalStore(self.root_path),
            attributes={"emocache": {"format": STORE_FORMAT, "format_version": STORE_FORMAT_VERSION}},
        )
        fsync_file(self.root_path / "zarr.json")

    def creation_lock_path(self) -> Path:
        return self.root_path / ".create.lock"

    def check(self) -> None:
        attrs = self._attrs("")
        if attrs is None:
            raise StoreError(f"no Zarr store at {self.location}")
        if "emocache" not in attrs:
            raise StoreError(f"{self.location} is a Zarr group but not an emocache feature store (no 'emocache' attribute)")

    # -- reading the hierarchy: the local tree directly, remote stores through consolidated metadata

    def _root_group(self) -> zarr.Group:
        if self._root is None:
            try:
                with _quiet():
                    if self.remote:
                        self._root = zarr.open_group(self.location, mode="r", use_consolidated=True,
                                                     storage_options=storage_options(self.location))
                    else:
                        store = LocalStore(self.root_path, read_only=self.mode == "r")
                        self._root = zarr.open_group(store, mode="r", use_consolidated=False)
            except (FileNotFoundError, ValueError, KeyError, OSError) as e:
                hint = (
                    " (a remote store needs consolidated metadata: its writers must have closed cleanly; "
                    "run `features consolidate` on the original)"
                    if self.remote
                    else ""
                )
                raise StoreError(f"cannot open Zarr store {self.location}: {type(e).__name__}: {e}{hint}") from None
        return self._root

    def _children(self, path: str) -> list[str]:
        if not self.remote:
            base = self.root_path / path
            if not base.is_dir():
                return []
            return sorted(p.name for p in base.iterdir() if (p / "zarr.json").is_file())
        flat = self._root_group().metadata.consolidated_metadata.flattened_metadata
        prefix = f"{path}/" if path else ""
        return sorted({k[len(prefix) :] for k in flat if k.startswith(prefix) and "/" not in k[len(prefix) :]})

    def _attrs(self, path: str) -> dict[str, Any] | None:
        if not self.remote:
            try:
                return json.loads((self.root_path / path / "zarr.json").read_text(encoding="utf-8")).get("attributes", {})
            except (FileNotFoundError, NotADirectoryError):
                return None
        if not path:
            return dict(self._root_group().attrs)
        meta = self._root_group().metadata.consolidated_metadata.flattened_metadata.get(path)
        return None if meta is None else dict(meta.attributes)

    def set_names(self) -> list[str]:
        # Dot names are sets being deleted (renamed away first): never listed.
        return [n for n in self._children("") if not n.startswith(".") and "emocache" in (self._attrs(n) or {})]

    def read_set_meta(self, name: str) -> SetMeta | None:
        attrs = self._attrs(name)
        if not attrs or "emocache" not in attrs:
            return None
        try:
            return SetMeta.from_json(attrs["emocache"])
        except (KeyError, TypeError, ValueError) as e:
            raise StoreError(f"the record of set {name!r} in {self.location} is damaged ({e})") from None

    def write_set_meta(self, name: str, meta: SetMeta) -> None:
        store = LocalStore(self.root_path)
        # Never overwrite=True: it deletes everything under the path, lock files of running writers included.
        zarr.create_group(store=store, path=name, attributes={"emocache": meta.to_json()})
        zarr.create_group(store=store, path=f"{name}/parts")
        fsync_file(self.root_path / name / "zarr.json")

    def segments(self, name: str) -> list[Segment]:
        parts = self._children(f"{name}/parts")
        return [segment for part in parts
                for segment in relist_while_compacting(f"{name}/parts/{part}", self._part_segments)]

    def _part_segments(self, part_path: str) -> list[Segment]:
        """The segments of one part; FileNotFoundError when one vanished after the listing."""
        out = []
        part = part_path.rsplit("/", 1)[1]
        for seq in self._children(part_path):
            if not _SEGMENT.match(seq):
                continue
            path = f"{part_path}/{seq}"
            attrs = self._attrs(path)
            if attrs is None:
                raise FileNotFoundError(path)
            if "emocache_segment" not in attrs:
                raise StoreError(f"segment {path} of {self.location} has no index; run `features verify`")
            out.append(Segment.from_index_json(part, int(seq), attrs["emocache_segment"], path))
        return out

    def write_segment(
        self,
        name: str,
        meta: SetMeta,
        part: str,
        seq: int,
        index: dict[str, Any],
        blocks: Iterable[np.ndarray],
        frames: int,
    ) -> None:
        part_dir = self.root_path / name / "parts" / part
        for group in (f"{name}/parts", f"{name}/parts/{part}"):  # parts/ too: a crash may have cut set creation short
            if not (self.root_path / group / "zarr.json").is_file():
                zarr.create_group(store=LocalStore(self.root_path), path=group)
        tmp = part_dir / f".tmp-{seq:08d}-{os.getpid()}"
        group = zarr.create_group(store=LocalStore(tmp), attributes={"emocache_segment": index})
        per_frame = (meta.layers or 1) * meta.dim * np.dtype(meta.dtype).itemsize
        chunk = max(1, min(frames, CHUNK_BYTES // per_frame))
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
            raise StoreError(f"internal: segment {seq} of {name}/{part} got {written} frames, expected {frames}")
        fsync_tree(tmp)
        publish(tmp, part_dir / f"{seq:08d}")

    def part_names(self, name: str) -> list[str]:
        base = self.root_path / name / "parts"
        return sorted(p.name for p in base.iterdir() if p.is_dir() and not p.name.startswith(".")) if base.is_dir() else []

    def delete_set(self, name: str) -> None:
        self.close()
        remove_tree(self.root_path, name)
        self.finish()

    def delete_segment(self, name: str, segment: Segment) -> None:
        self._arrays.pop(segment.handle, None)
        target = self.root_path / segment.handle
        # Rename first so a crash mid-delete never leaves a half-deleted segment under a live name.
        doomed = target.with_name(f".tmp-deleting-{target.name}-{os.getpid()}")
        try:
            os.replace(target, doomed)
        except FileNotFoundError:
            return
        shutil.rmtree(doomed)

    def _array(self, handle: str):
        array = self._arrays.get(handle)
        if array is None:
            try:
                with _quiet():
                    array = self._root_group()[f"{handle}/data"]
            except KeyError:
                if not self.remote and not (self.root_path / handle).exists():
                    raise FileNotFoundError(f"segment {handle} of {self.location} was compacted away") from None
                raise StoreError(f"segment {handle} of {self.location} has no data array; run `features verify`") from None
            self._arrays[handle] = array
        return array

    def read_frames(self, segment: Segment, start: int, stop: int, out: np.ndarray) -> None:
        if stop <= start:
            return
        array = self._array(segment.handle)
        if stop > array.shape[-2]:
            raise StoreError(
                f"segment {segment.handle} of {self.location} holds {array.shape[-2]} frames, its index says "
                f"at least {stop}; run `features verify`"
            )
        if self.remote or not _raw_chunks(array):
            out[...] = array[..., start:stop, :]
            return
        self._read_raw(segment.handle, array, start, stop, out)

    def _read_raw(self, handle: str, array: Any, start: int, stop: int, out: np.ndarray) -> None:
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
        base = self.root_path / handle / "data"
        first, last = start // chunk, (stop - 1) // chunk
        for k in range(first, last + 1):
            lo, hi = max(start, k * chunk), min(stop, (k + 1) * chunk)
            key = metadata.encode_chunk_key((k, 0) if layers is None else (0, k, 0))
            try:
                f = open(base / key, "rb", buffering=0)
            except FileNotFoundError:
                if not (self.root_path / handle).exists():
                    raise  # compacted away since the set was listed: the reader lists again
                # Segments are written with every chunk present, so a chunk missing from a live segment is damage.
                raise StoreError(
                    f"chunk {base / key} of {self.location} is missing; if a writer was compacting this part, "
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
                            f"chunk {base / key} of {self.location} is truncated ({got} of {(hi - lo) * row} bytes "
                            "read); run `features verify`"
                        )

    def lock_path(self, name: str, part: str | None) -> Path:
        if part is None:
            return self.creation_lock_path()
        return self.root_path / name / "parts" / part / ".writer.lock"

    def cleanup(self, name: str, part: str) -> None:
        part_dir = self.root_path / name / "parts" / part
        if part_dir.is_dir():
            for entry in part_dir.glob(".tmp-*"):
                shutil.rmtree(entry, ignore_errors=True)

    def finish(self) -> None:
        """Consolidate the metadata so HTTP/fsspec readers see the store without listing it."""
        for attempt in range(3):
            try:
                with _quiet():
                    zarr.consolidate_metadata(LocalStore(self.root_path))
                break
            except (OSError, KeyError) as e:
                # Another part's writer renamed or deleted a segment while we listed the tree.
                if attempt == 2:
                    raise StoreError(
                        f"could not consolidate {self.location} ({type(e).__name__}: {e}); "
                        "run `features consolidate` when its writers are done"
                    ) from None
        fsync_file(self.root_path / "zarr.json")

    def close(self) -> None:
        self._arrays.clear()
        self._root = None
