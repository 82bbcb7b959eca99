"""The Zarr v3 back-end: one directory tree, readable over HTTP and fsspec URLs.

Finished layout (every node a Zarr v3 group or array; ``features/FORMAT.md``)::

    store.zarr/zarr.json            root group; attribute ``emocache``: the store's record (its sets);
                                    consolidated metadata
    store.zarr/<set>/zarr.json      set group; attributes ``emocache`` (provenance, frame rate, layers,
                                    sealed), ``index_sha256``, ``failures``
    store.zarr/<set>/data           (T_total, D) or (L, T_total, D), no codec, chunks of ``CHUNK_BYTES``
    store.zarr/<set>/offsets        int64 (n + 1,)
    store.zarr/<set>/ids            strings (n,)
    store.zarr/<set>/sha256         strings (n,): each utterance's sha256
    store.zarr/<set>/counts/<name>  int64 (n,)

While writers work, beside that (or alone, for a set not finished yet)::

    store.zarr/<set>/parts/<part>/00000007/     one segment: a group whose attribute ``emocache_segment``
                                                holds its index (ids, lengths, sha256, failures, covers,
                                                counts) and ``index_sha256`` its digest
    store.zarr/<set>/parts/<part>/00000007/data its frames, as ``data`` above

Finishing builds a set's new group beside it (``.<set>.finishing-PID``) and
swaps the two folders in one ``renameat2(RENAME_EXCHANGE)`` where the file
system has it (two renames otherwise: a crash between them is repaired by the
next writer); readers that opened the old group list the set again.

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
the consolidated metadata, which finishing refreshes.
"""
from __future__ import annotations

import contextlib
import functools
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

from emocache.atomic import write_text
from features.base import Backend, SetPlan, register, relist_while_compacting
from features.durable import fresh_dir, fsync_dir, fsync_file, fsync_tree, publish, remove_tree
from features.lock import drop_stale_lock
from features.records import (
    FINISHED_PART, Segment, SegmentIndex, SetMeta, StoreError, lengths_from_offsets, parse_json, root_record, root_sets,
)
from features.urls import is_remote, storage_options
from features.zarrchunks import DataChunksMustExist, MissingChunk, missing_chunk_message, raw_chunks, read_raw, write_data
from features.zarrswap import exchange_or_swap, repair_swaps

_SEGMENT = re.compile(r"\d{8}")  # fullmatch: "$" would let a trailing newline through
# Our own files in a store's root folder, which zarr does not know (fullmatch, as _SEGMENT).
# Temporaries: ours (emocache.atomic's .NAME.*.partial, .NAME.tmp-PID before it) and zarr's NAME.<hex>.partial.
_OURS = re.compile(r"\.create\.lock|\.writers\.lock|\.zarr\.json\.(tmp-\d+|\w+\.partial)|zarr\.json\.[0-9a-f]+\.partial")
# What zarr and numcodecs raise on damaged metadata or chunks.
ZARR_ERRORS = (OSError, KeyError, ValueError, TypeError, RuntimeError, IndexError, AttributeError, UnicodeError)
@contextlib.contextmanager
def _quiet():
    """zarr warns about our lock files and about consolidated metadata being outside the v3 spec."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*not recognized as a component of a Zarr hierarchy.*")
        warnings.filterwarnings("ignore", message=".*Consolidated metadata is currently not part.*")
        yield


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
        # Inode of each finished set's folder when it was listed: a finish swaps the folder.
        self._listed: dict[str, int] = {}

    @classmethod
    def exists(cls, location: str) -> bool:
        if is_remote(location):
            return True  # opening tells; a static server cannot be listed
        # zarr rewrites the root zarr.json by an atomic rename, so it is never missing from a
        # store; a folder without one is a store being created, or no store.
        return (Path(location) / "zarr.json").is_file()

    def create(self) -> None:
        self.root_path.mkdir(parents=True, exist_ok=True)
        foreign = sorted(p.name for p in self.root_path.iterdir() if not _OURS.fullmatch(p.name))
        if foreign:
            raise StoreError(
                f"{self.location} is a folder with other files in it ({', '.join(foreign[:3])}...) but no Zarr store; "
                "give a new path for the feature store"
            )
        for leftover in self.root_path.glob("zarr.json.*.partial"):  # a creation killed mid-write
            leftover.unlink(missing_ok=True)
        zarr.create_group(store=LocalStore(self.root_path), attributes={"emocache": root_record([])})
        fsync_file(self.root_path / "zarr.json")

    def creation_lock_path(self) -> Path:
        return self.root_path / ".create.lock"

    def writers_lock_path(self) -> Path:
        return self.root_path / ".writers.lock"

    def check(self) -> None:
        self._finished_sets()

    def _finished_sets(self) -> list[str]:
        attrs = self._attrs("")
        if attrs is None:
            raise StoreError(f"no Zarr store at {self.location}")
        if "emocache" not in attrs:
            raise StoreError(f"{self.location} is a Zarr group but not an emocache feature store (no 'emocache' attribute)")
        where = f"the store record (attribute 'emocache' of {self.location}/zarr.json)"
        return root_sets(attrs["emocache"], where)

    # -- reading the hierarchy: the local tree directly, remote stores through consolidated metadata

    def _root_group(self) -> zarr.Group:
        if self._root is None:
            try:
                with _quiet():
                    if self.remote:
                        store = DataChunksMustExist.from_url(
                            self.location, storage_options=storage_options(self.location), read_only=True)
                        self._root = zarr.open_group(store, mode="r", use_consolidated=True)
                    else:
                        store = LocalStore(self.root_path, read_only=self.mode == "r")
                        self._root = zarr.open_group(store, mode="r", use_consolidated=False)
            except ZARR_ERRORS as e:
                hint = (
                    " (a remote store needs consolidated metadata: its writers must have closed cleanly; "
                    "run `features compact` on the original)"
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

    def _node(self, path: str) -> dict[str, Any] | None:
        """The parsed ``zarr.json`` of ``path`` (validated as a JSON object), or None when absent."""
        if not self.remote:
            file = self.root_path / path / "zarr.json"
            try:
                raw = file.read_bytes()
            except (FileNotFoundError, NotADirectoryError):
                return None
            node = parse_json(raw, str(file))
            if not isinstance(node, dict) or not isinstance(node.get("attributes", {}), dict):
                raise StoreError(f"{file} is damaged: not a Zarr node with an 'attributes' object")
            return node
        if not path:
            return {"attributes": dict(self._root_group().attrs)}
        meta = self._root_group().metadata.consolidated_metadata.flattened_metadata.get(path)
        return None if meta is None else {"attributes": dict(meta.attributes), **meta.to_dict()}

    def _attrs(self, path: str) -> dict[str, Any] | None:
        node = self._node(path)
        return None if node is None else node.get("attributes", {})

    def set_names(self) -> list[str]:
        # Dot names are sets being deleted or finished (built beside, then swapped in): never listed.
        on_disk = [n for n in self._children("") if not n.startswith(".")]
        return sorted(set(on_disk) | set(self._finished_sets()))

    def read_set_meta(self, name: str) -> SetMeta | None:
        attrs = self._attrs(name)
        where = f"the record of set {name!r} (attribute 'emocache' of {self.location}/{name}/zarr.json)"
        if attrs is None:
            if name in self._finished_sets():
                raise StoreError(f"set {name!r} is listed in the record of {self.location} but its group is missing; restore it from a copy")
            return None
        if "emocache" not in attrs:
            raise StoreError(f"{where} is missing: the set's zarr.json is damaged; restore it from a copy")
        return SetMeta.from_json(attrs["emocache"], where)

    def write_set_meta(self, name: str, meta: SetMeta) -> None:
        store = LocalStore(self.root_path)
        # Never overwrite=True: it deletes everything under the path, lock files of running writers included.
        zarr.create_group(store=store, path=name, attributes={"emocache": meta.to_json()})
        zarr.create_group(store=store, path=f"{name}/parts")
        fsync_file(self.root_path / name / "zarr.json")
        self._write_root_record(sorted(set(self._finished_sets()) | {name}))

    def _write_root_record(self, sets: list[str]) -> None:
        """Rewrite the root zarr.json with ``sets`` in its record (the caller holds the creation lock)."""
        node = self._node("")
        node.setdefault("attributes", {})["emocache"] = root_record(sets)
        write_text(self.root_path / "zarr.json", json.dumps(node, indent=2), durable=True)
        self._root = None

    def _inode(self, name: str) -> int | None:
        try:
            return None if self.remote else os.stat(self.root_path / name).st_ino
        except FileNotFoundError:
            return None

    def segments(self, name: str) -> list[Segment]:
        # A finish swaps the set's folder (finished data and parts together): list again if it did meanwhile.
        for _ in range(10):
            before = self._inode(name)
            try:
                attrs = self._attrs(name) or {}
                # Finished when it has data of its own; its record must then say so, or it is damage.
                finished = "index_sha256" in attrs or "data" in self._children(name)
                out = [self._finished_segment(name, attrs)] if finished else []
                parts = self._children(f"{name}/parts")
                out += [segment for part in parts if not part.startswith(".")
                        for segment in relist_while_compacting(f"{name}/parts/{part}", self._part_segments)]
            except FileNotFoundError:
                continue
            except StoreError:
                if self._inode(name) != before:
                    continue  # read across a swap: the old folder's record, the new one's arrays
                raise
            if self._inode(name) == before:
                return out
        raise StoreError(f"set {name!r} of {self.location} kept changing while it was listed; retry once its writers have closed")

    def _frames(self, path: str, meta: SetMeta) -> int:
        """Frames the ``data`` array at ``path`` holds, once its metadata agrees with the set's."""
        where = f"{self.location}/{path}/data/zarr.json"
        if self.remote:
            array = self._array(path)
            node = {"shape": list(array.shape), "data_type": str(array.dtype)}
        else:
            node = self._node(f"{path}/data")
        if node is None:
            if not (self.root_path / path).exists():
                raise FileNotFoundError(path)  # compacted or finished away since it was listed
            raise StoreError(f"{where} is missing; run `features verify`")
        shape, dtype = node.get("shape"), node.get("data_type")
        if not isinstance(shape, list) or not shape or not all(type(n) is int and n >= 0 for n in shape):
            raise StoreError(f"{where} is damaged: shape {shape!r}")
        if tuple(shape) != meta.frame_shape(shape[-2]) or dtype != meta.dtype:
            raise StoreError(f"{where} is damaged: its data is {dtype} {tuple(shape)}; the set stores {meta.dtype} {meta.frame_shape(0)}")
        return shape[-2]

    def _finished_segment(self, name: str, attrs: dict[str, Any]) -> Segment:
        meta = self.read_set_meta(name)
        where = f"set {name!r} of {self.location}"
        try:
            with _quiet():
                group = self._root_group()[name]
                ids = [str(u) for u in np.asarray(group["ids"][...]).reshape(-1).tolist()]
                sha = [str(h) for h in np.asarray(group["sha256"][...]).reshape(-1).tolist()]
                offsets = np.asarray(group["offsets"][...])
                counts_group = group["counts"] if "counts" in group else None
                counts = {} if counts_group is None else {k: np.asarray(counts_group[k][...]) for k in counts_group.array_keys()}
        except StoreError:
            raise
        except ZARR_ERRORS as e:
            raise StoreError(f"{where} is damaged ({type(e).__name__}: {e}); run `features verify`") from None
        if offsets.ndim != 1 or offsets.dtype.kind not in "iu" or any(v.ndim != 1 or v.dtype.kind not in "iu" for v in counts.values()):
            raise StoreError(f"{where} is damaged: offsets and counts must be 1-D integer arrays")
        index = {
            "ids": ids,
            "lengths": lengths_from_offsets(offsets.tolist(), len(ids), where),
            "sha256": sha,
            "failures": attrs.get("failures"),
            "covers": [],
            "counts": {k: v.tolist() for k, v in counts.items()},
        }
        if not self.remote:
            self._listed[name] = self._inode(name)
        frames = functools.partial(self._frames, name, meta)
        return Segment(FINISHED_PART, 0, SegmentIndex.from_json(index, where, attrs.get("index_sha256"), frames), name)

    def _part_segments(self, part_path: str) -> list[Segment]:
        """The segments of one part; FileNotFoundError when one vanished after the listing."""
        out = []
        part = part_path.rsplit("/", 1)[1]
        name = part_path.split("/", 1)[0]
        meta = self.read_set_meta(name)
        for seq in self._children(part_path):
            if not _SEGMENT.fullmatch(seq):
                continue
            path = f"{part_path}/{seq}"
            attrs = self._attrs(path)
            if attrs is None:
                raise FileNotFoundError(path)
            where = f"segment {self.location}/{path}"
            if "emocache_segment" not in attrs:
                raise StoreError(f"{where} has no index (attribute 'emocache_segment'); run `features verify`")
            frames = functools.partial(self._frames, path, meta)
            index = SegmentIndex.from_json(attrs["emocache_segment"], where, attrs.get("index_sha256"), frames)
            out.append(Segment(part, int(seq), index, path))
        return out

    def write_segment(self, name: str, meta: SetMeta, part: str, seq: int, index: SegmentIndex, blocks: Iterable[np.ndarray]) -> None:
        part_dir = self.root_path / name / "parts" / part
        for group in (f"{name}/parts", f"{name}/parts/{part}"):  # parts/ too: a crash may have cut set creation short
            if not (self.root_path / group / "zarr.json").is_file():
                zarr.create_group(store=LocalStore(self.root_path), path=group)
        tmp = fresh_dir(part_dir / f".tmp-{seq:08d}-{os.getpid()}")
        attributes = {"emocache_segment": index.to_json(), "index_sha256": index.digest}
        group = zarr.create_group(store=LocalStore(tmp), attributes=attributes)
        write_data(group, meta, blocks, index.frames, f"segment {seq} of {name}/{part}")
        fsync_tree(tmp)
        publish(tmp, part_dir / f"{seq:08d}")

    def part_names(self, name: str) -> list[str]:
        base = self.root_path / name / "parts"
        return sorted(p.name for p in base.iterdir() if p.is_dir() and not p.name.startswith(".")) if base.is_dir() else []

    def delete_segment(self, name: str, segment: Segment) -> None:
        self._arrays.pop((segment.handle, None), None)
        target = self.root_path / segment.handle
        # Rename first so a crash mid-delete never leaves a half-deleted segment under a live name.
        doomed = target.with_name(f".tmp-deleting-{target.name}-{os.getpid()}")
        try:
            os.replace(target, doomed)
        except FileNotFoundError:
            return
        shutil.rmtree(doomed)

    def _unchanged(self, handle: str) -> int | None:
        """The inode a finished set had when listed; FileNotFoundError if a finish swapped it since."""
        expected = self._listed.get(handle)
        if expected is not None and self._inode(handle) != expected:
            raise FileNotFoundError(f"set {handle} of {self.location} was finished again since it was listed")
        return expected

    def _array(self, handle: str):
        key = (handle, self._unchanged(handle))
        array = self._arrays.get(key)
        if array is None:
            try:
                with _quiet():
                    array = self._root_group()[f"{handle}/data"]
            except ZARR_ERRORS:
                if not self.remote and not (self.root_path / handle).exists():
                    raise FileNotFoundError(f"segment {handle} of {self.location} was compacted away") from None
                raise StoreError(f"segment {handle} of {self.location} has no readable data array; run `features verify`") from None
            self._unchanged(handle)
            self._arrays[key] = array
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
        if self.remote or not raw_chunks(array):
            try:
                out[...] = array[..., start:stop, :]
            except MissingChunk as e:
                raise StoreError(missing_chunk_message(self.location, segment, e.key, array.chunks[-2], start, stop)) from None
            except ZARR_ERRORS as e:
                raise StoreError(f"cannot read frames {start}:{stop} of {segment.handle} in {self.location} ({type(e).__name__}: {e})") from None
        else:
            read_raw(self.root_path, self.location, segment.handle, array, start, stop, out)
        self._unchanged(segment.handle)  # what was read came from the folder that was listed

    def lock_path(self, name: str, part: str | None) -> Path:
        if part is None:
            return self.creation_lock_path()
        return self.root_path / name / "parts" / part / ".writer.lock"

    def cleanup(self, name: str, part: str) -> None:
        part_dir = self.root_path / name / "parts" / part
        if part_dir.is_dir():
            for entry in part_dir.glob(".tmp-*"):
                if entry.is_dir() and not entry.is_symlink():
                    shutil.rmtree(entry, ignore_errors=True)
                else:
                    entry.unlink(missing_ok=True)

    def cleanup_store(self) -> None:
        # zarr writes every file as NAME.<uuid>.partial, then renames it: a kill leaves the partial.
        for dirpath, dirnames, filenames in os.walk(self.root_path):
            for name in filenames:
                if name.endswith(".partial") or re.fullmatch(r"\.zarr\.json\.tmp-\d+", name):
                    os.unlink(os.path.join(dirpath, name))
        for leftover in self.root_path.glob(".deleting-*"):
            shutil.rmtree(leftover, ignore_errors=True)
        repair_swaps(self.root_path)
        drop_stale_lock(self.creation_lock_path(), self.location)

    def write_finished(self, plans: list[SetPlan], removed: list[str]) -> None:
        # The record first: a crash after it leaves a removed set on disk, listed and readable, never
        # a set the record promises and the tree lacks.
        self._write_root_record([p.name for p in plans])
        for name in removed:
            if (self.root_path / name).exists():
                remove_tree(self.root_path, name)
        for plan in plans:
            if not plan.unchanged or self.part_names(plan.name):
                self._finish_set(plan)
        self.close()
        with _quiet():
            zarr.consolidate_metadata(LocalStore(self.root_path))
        fsync_file(self.root_path / "zarr.json")
        fsync_dir(self.root_path)

    def _finish_set(self, plan: SetPlan) -> None:
        """Build the set's finished group beside it, then swap it in for the old one."""
        if plan.unchanged:  # already finished; only the empty parts of writers that wrote nothing to drop
            remove_tree(self.root_path / plan.name, "parts")
            return
        build = fresh_dir(self.root_path / f".{plan.name}.finishing-{os.getpid()}")
        store = LocalStore(build)
        group = zarr.create_group(store=store)
        index = plan.index
        write_data(group, plan.meta, plan.blocks(), index.frames, f"set {plan.name}")
        group.create_array("offsets", data=index.offsets(), compressors=None)
        for key, values in (("ids", index.ids), ("sha256", index.sha256)):
            strings = group.create_array(key, shape=(len(values),), dtype=str, chunks=(max(1, len(values)),))
            if values:
                strings[:] = np.array(values, dtype=object)
        counts = group.create_group("counts")
        for key, values in index.counts.items():
            counts.create_array(key, data=np.asarray(values, dtype=np.int64).reshape(-1), compressors=None)
        # The set's record last: a build folder whose zarr.json has it is complete.
        node = json.loads((build / "zarr.json").read_text(encoding="utf-8"))
        node["attributes"] = {
            "emocache": plan.meta.to_json(),
            "index_sha256": index.digest,
            "failures": [f.to_json() for f in index.failures],
        }
        write_text(build / "zarr.json", json.dumps(node, indent=2), durable=True)
        fsync_tree(build)
        exchange_or_swap(self.root_path, plan.name, build)

    def close(self) -> None:
        self._arrays.clear()
        self._listed.clear()
        self._root = None

