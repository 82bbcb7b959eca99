"""The HDF5 back-end: one ``store.h5`` when finished; ``store.h5.parts/`` beside it while writers work.

Finished layout (``features/FORMAT.md``)::

    store.h5                 root attribute ``emocache``: the store's record (its sets), sealed
    store.h5/<set>/data      (T_total, D) or (L, T_total, D), contiguous, no filters
    store.h5/<set>/offsets   int64 (n + 1,): utterance i is data[offsets[i]:offsets[i+1]]
    store.h5/<set>/ids       variable-length UTF-8 strings (n,)
    store.h5/<set>/sha256    64-byte hex digests of each utterance's bytes (n,)
    store.h5/<set>/counts/<name>  int64 (n,): what the encoder counted per utterance
    store.h5/<set>/failures  JSON text: the standing failures
    attributes of <set>: ``emocache`` (its record: provenance, frame rate, layers,
    sealed) and ``index_sha256`` (over ids, lengths, sha256, failures, counts)

While writers work::

    store.h5.parts/<set>/set.json              the record of a set not yet in store.h5
    store.h5.parts/<set>/<part>/00000007.h5    one segment: data, ids, lengths, sha256,
                                               failures, covers, counts; attribute index_sha256

Why files beside the main one while writing: HDF5 allows one writer per file,
and an HDF5 file modified in place is not crash-safe (a ``kill -9`` between
metadata flushes can leave it unreadable). Every file is written once under a
temporary name, fsynced and renamed, and never modified again. Finishing writes
a whole new ``store.h5`` the same way (every set, so adding to a finished file
rewrites it: its cost is one sequential copy of the store), renames it over the
old one and then removes ``store.h5.parts/``; a crash in between leaves two
identical copies of some utterances, which readers and the next finish collapse.

Why contiguous and unfiltered: measured in ``bench/store.py`` (see
``bench/RESULTS.md``), a contiguous dataset read with ``read_direct`` into a
preallocated array runs at the speed of ``numpy.fromfile``. Every file is opened
with HDF5's own file locking off: our locks guard the writers, and HDF5's
locking fails on read-only shares and on NFS without lockd.
"""
from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from emocache.atomic import write_text
from features.base import Backend, SetPlan, register, relist_while_compacting
from features.durable import fresh_file, fsync_dir, fsync_file, publish
from features.lock import drop_stale_lock
from features.records import (
    FINISHED_PART, Segment, SegmentIndex, SetMeta, StoreError, lengths_from_offsets, parse_json, root_record, root_sets,
)

_SEGMENT = re.compile(r"(\d{8})\.h5")  # fullmatch: "$" would let a trailing newline through
# What h5py raises on a damaged file (it maps HDF5's errors onto these).
H5_ERRORS = (OSError, KeyError, ValueError, TypeError, RuntimeError, IndexError, AttributeError, UnicodeError)


def _text(value: Any) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


@register("hdf5")
class HDF5Backend(Backend):
    suffixes = (".h5", ".hdf5")

    def __init__(self, location: str, mode: str) -> None:
        super().__init__(location, mode)
        self.path = Path(location)
        self.parts = Path(location + ".parts")
        self._files: dict[Path, h5py.File] = {}
        # Every main file opened, by inode: a finish renames a new one over it, and sets
        # listed from the old one keep reading from it.
        self._mains: dict[int, h5py.File] = {}
        self._current: int | None = None
        self._root_sets: list[str] | None = None

    @classmethod
    def exists(cls, location: str) -> bool:
        return Path(location).is_file()

    def _beside(self, what: str) -> Path:
        return self.path.with_name(f".{self.path.name}.{what}")

    def create(self) -> None:
        if self.parts.exists():
            # Someone deleted the store's file but not its segments: reviving them silently
            # would undo what was surely meant as deleting the store.
            raise StoreError(
                f"{self.parts} is left over from a deleted store {self.path.name}: "
                f"delete it too (rm -r {self.parts}) to start afresh, or restore {self.path}"
            )
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = fresh_file(self._beside(f"tmp-{os.getpid()}"))
        with h5py.File(tmp, "w", locking=False) as f:
            f.attrs["emocache"] = json.dumps(root_record([]))
        fsync_file(tmp)
        publish(tmp, self.path)

    def creation_lock_path(self) -> Path:
        # Beside the file: the .parts folder must not exist before the store does.
        return self._beside("create.lock")

    def writers_lock_path(self) -> Path:
        return self._beside("writers.lock")

    def check(self) -> None:
        self._finished_sets()

    def _main(self) -> h5py.File:
        if self._current is None:
            try:
                f = h5py.File(self.path, "r", locking=False)
            except H5_ERRORS as e:
                if not self.path.exists():
                    raise StoreError(f"{self.path} vanished while it was opened") from None
                raise StoreError(f"{self.path} is not a readable HDF5 file ({type(e).__name__}: {e})") from None
            ino = os.fstat(f.id.get_vfd_handle()).st_ino
            self._mains.setdefault(ino, f)
            if self._mains[ino] is not f:
                f.close()
            self._current = ino
        return self._mains[self._current]

    def _refresh(self) -> int | None:
        """Follow a finish that replaced the main file since it was opened; its inode now."""
        try:
            ino = os.stat(self.path).st_ino
        except FileNotFoundError:
            return None
        if ino != self._current:
            self._current = None
            self._root_sets = None
        return ino

    def _finished_sets(self) -> list[str]:
        # Another process may have finished the store since the list was read: a finish or a
        # delete built from a stale list would drop the sets it lacks, and a writer would miss
        # a set's record (and its identity check). A stat tells whether the file was replaced.
        self._refresh()
        if self._root_sets is None:
            f = self._main()
            try:
                raw = f.attrs.get("emocache")
            except H5_ERRORS as e:
                raise StoreError(f"{self.path} is not a readable HDF5 file ({type(e).__name__}: {e})") from None
            if raw is None:
                raise StoreError(f"{self.path} is an HDF5 file but not an emocache feature store (no 'emocache' attribute)")
            where = f"the store record (root attribute 'emocache') of {self.path}"
            self._root_sets = root_sets(parse_json(raw if isinstance(raw, bytes) else _text(raw), where), where)
        return self._root_sets

    def _writing_sets(self) -> list[str]:
        if not self.parts.is_dir():
            return []
        # Dot names are sets being deleted (renamed away first): never listed. A folder with
        # segments but no record is listed too, so that its loss is reported, not hidden.
        return [p.name for p in self.parts.iterdir() if not p.name.startswith(".") and p.is_dir()
                and ((p / "set.json").exists() or any(p.glob("*/[0-9]*.h5")))]

    def set_names(self) -> list[str]:
        # The parts first: a finish in between moves a set from them into the main file, never out of both.
        writing = set(self._writing_sets())
        return sorted(writing | set(self._finished_sets()))

    def _group(self, name: str) -> h5py.Group:
        try:
            group = self._main()[name]
        except H5_ERRORS as e:
            raise StoreError(f"set {name!r} is listed in the record of {self.path} but cannot be read ({type(e).__name__}: {e}); restore the file from a copy") from None
        if not isinstance(group, h5py.Group):
            raise StoreError(f"{self.path}: /{name} is not a group; the file is damaged")
        return group

    def read_set_meta(self, name: str) -> SetMeta | None:
        if name in self._finished_sets():
            where = f"the record of set {name!r} (attribute 'emocache' of /{name}) in {self.path}"
            try:
                raw = self._group(name).attrs["emocache"]
            except H5_ERRORS as e:
                raise StoreError(f"{where} cannot be read ({type(e).__name__}: {e})") from None
            return SetMeta.from_json(parse_json(raw if isinstance(raw, bytes) else _text(raw), where), where)
        record = self.parts / name / "set.json"
        try:
            raw = record.read_bytes()
        except (FileNotFoundError, NotADirectoryError):
            if any((self.parts / name).glob("*/[0-9]*.h5")):
                raise StoreError(f"{record} is missing but {self.parts / name} holds segments; restore it from a copy") from None
            return None
        except OSError as e:
            raise StoreError(f"{record} cannot be read ({e})") from None
        return SetMeta.from_json(parse_json(raw, str(record)), str(record))

    def write_set_meta(self, name: str, meta: SetMeta) -> None:
        (self.parts / name).mkdir(parents=True, exist_ok=True)
        write_text(self.parts / name / "set.json", json.dumps(meta.to_json(), indent=1, sort_keys=True), durable=True)

    def segments(self, name: str) -> list[Segment]:
        # The parts first (their files stay readable once open), then the main file as it is
        # after: a finish in between moved what the parts held into it, never out of both.
        for _ in range(10):
            before = self._refresh()
            self._main()
            base = self.parts / name
            try:
                parts = sorted(p for p in base.iterdir() if p.is_dir() and not p.name.startswith(".")) if base.is_dir() else []
                listed = [segment for part_dir in parts for segment in relist_while_compacting(part_dir, self._part_segments)]
            except FileNotFoundError:
                continue  # a finish removed the parts meanwhile
            if self._refresh() != before:
                continue
            return ([self._finished_segment(name)] if name in self._finished_sets() else []) + listed
        raise StoreError(f"{self.location} kept changing while set {name!r} was listed; retry once its writers have closed")

    def _part_segments(self, part_dir: Path) -> list[Segment]:
        """The segments of one part; FileNotFoundError when one vanished after the listing."""
        out = []
        if not part_dir.is_dir():
            return out  # removed by a finish: the caller sees the main file change and lists again
        for entry in sorted(part_dir.iterdir()):
            match = _SEGMENT.fullmatch(entry.name)
            if match:
                out.append(self._load_segment(part_dir.name, int(match.group(1)), entry))
        return out

    def _file(self, path: Path) -> h5py.File:
        f = self._files.get(path)
        if f is None:
            try:
                f = h5py.File(path, "r", locking=False)
            except H5_ERRORS as e:
                if not path.exists():
                    # Compacted away by its part's writer since the listing (h5py may say so as a
                    # failed stat, not ENOENT): the caller lists again.
                    raise FileNotFoundError(str(path)) from None
                raise StoreError(f"cannot read {path} ({type(e).__name__}: {e}); run `features verify {self.location}`") from None
            self._files[path] = f
        return f

    def _data(self, where: str, group: h5py.Group) -> h5py.Dataset:
        data = group["data"]
        if not isinstance(data, h5py.Dataset) or data.ndim not in (2, 3):
            raise StoreError(f"{where} is damaged: 'data' is not a 2- or 3-dimensional dataset")
        return data

    def _read_index(self, where: str, group: h5py.Group, finished: bool) -> dict[str, Any]:
        """The index's JSON as read from ``group`` (a segment file or a finished set; see :func:`_write_index`)."""
        def ints(key: str) -> list:
            values = group[key][()]
            if not isinstance(values, np.ndarray) or values.ndim != 1 or values.dtype.kind not in "iu":
                raise StoreError(f"{where} is damaged: {key!r} is not a 1-D integer dataset")
            return values.tolist()

        ids = [_text(u) for u in np.atleast_1d(group["ids"][()]).tolist()]
        index = {
            "ids": ids,
            "sha256": [_text(h) for h in np.atleast_1d(group["sha256"][()]).tolist()],
            "failures": parse_json(group["failures"][()], f"{where}: failures"),
        }
        if finished:
            return index | {
                "lengths": lengths_from_offsets(ints("offsets"), len(ids), where),
                "covers": [],
                "counts": {str(k): ints(f"counts/{k}") for k in group["counts"]},
            }
        return index | {
            "lengths": ints("lengths"),
            "covers": ints("covers"),
            "counts": parse_json(group["counts"][()], f"{where}: counts"),
        }

    def _load(self, part: str, seq: int, where: str, group: h5py.Group, handle: Any, meta: SetMeta | None) -> Segment:
        try:
            index = self._read_index(where, group, finished=part == FINISHED_PART)
            recorded = _text(group.attrs["index_sha256"])
            data = self._data(where, group)
            shape, dtype = data.shape, data.dtype
        except StoreError:
            raise
        except H5_ERRORS as e:
            raise StoreError(f"{where} is damaged ({type(e).__name__}: {e}); run `features verify {self.location}`") from None

        def frames() -> int:
            if meta is not None and (shape != meta.frame_shape(shape[-2]) or dtype != np.dtype(meta.dtype)):
                raise StoreError(f"{where} is damaged: its data is {dtype} {shape}; the set stores {meta.dtype} {meta.frame_shape(0)}")
            return int(shape[-2])

        return Segment(part, seq, SegmentIndex.from_json(index, where, recorded, frames), handle)

    def _finished_segment(self, name: str) -> Segment:
        meta = self.read_set_meta(name)
        return self._load(FINISHED_PART, 0, f"set {name!r} of {self.path}", self._group(name), (self._current, name), meta)

    def _load_segment(self, part: str, seq: int, path: Path) -> Segment:
        f = self._file(path)
        name = path.parent.parent.name
        meta = self.read_set_meta(name)
        return self._load(part, seq, f"segment {path}", f, (path, None), meta)

    def write_segment(self, name: str, meta: SetMeta, part: str, seq: int, index: SegmentIndex, blocks: Iterable[np.ndarray]) -> None:
        part_dir = self.parts / name / part
        part_dir.mkdir(parents=True, exist_ok=True)
        tmp = fresh_file(part_dir / f".tmp-{seq:08d}-{os.getpid()}.h5")
        with h5py.File(tmp, "w", locking=False) as f:
            _write_data(f, meta, blocks, index.frames, f"segment {seq} of {name}/{part}")
            _write_index(f, index, finished=False)
        fsync_file(tmp)
        publish(tmp, part_dir / f"{seq:08d}.h5")

    def part_names(self, name: str) -> list[str]:
        base = self.parts / name
        return sorted(p.name for p in base.iterdir() if p.is_dir() and not p.name.startswith(".")) if base.is_dir() else []

    def delete_segment(self, name: str, segment: Segment) -> None:
        path = segment.handle[0]
        f = self._files.pop(path, None)
        if f is not None:
            f.close()
        path.unlink(missing_ok=True)

    def read_frames(self, segment: Segment, start: int, stop: int, out: np.ndarray) -> None:
        if stop <= start:
            return
        path, group = segment.handle
        if group is None:
            f = self._file(path)
        elif path in self._mains:
            f = self._mains[path]
        else:
            raise FileNotFoundError(f"{self.path} was finished again since set {group!r} was listed")
        try:
            data = (f if group is None else f[group])["data"]
            source = np.s_[start:stop] if data.ndim == 2 else np.s_[:, start:stop]
            if out.flags.c_contiguous:
                data.read_direct(out, source_sel=source)
            else:
                out[...] = data[source]
        except H5_ERRORS as e:
            raise StoreError(f"cannot read frames {start}:{stop} of {self.path if group else path} ({type(e).__name__}: {e}); run `features verify {self.location}`") from None

    def lock_path(self, name: str, part: str | None) -> Path:
        if part is None:
            return self.parts / ".create.lock"
        return self.parts / name / part / ".writer.lock"

    def cleanup(self, name: str, part: str) -> None:
        part_dir = self.parts / name / part
        if part_dir.is_dir():
            for entry in part_dir.glob(".tmp-*"):
                entry.unlink(missing_ok=True)

    def cleanup_store(self) -> None:
        for leftover in self.path.parent.glob(f".{self.path.name}.tmp-*"):
            leftover.unlink(missing_ok=True)
        for leftover in self.path.parent.glob(f".{self.path.name}.parts.deleting-*"):
            shutil.rmtree(leftover, ignore_errors=True)
        drop_stale_lock(self.creation_lock_path(), self.location)
        if self.parts.is_dir():
            drop_stale_lock(self.parts / ".create.lock", self.location)
            for leftover in self.parts.glob(".deleting-*"):
                shutil.rmtree(leftover, ignore_errors=True)
            for set_dir in self.parts.iterdir():
                if set_dir.is_dir() and not set_dir.name.startswith("."):
                    # emocache.atomic's temporaries, and those of emocache before it.
                    for leftover in [*set_dir.glob(".set.json.*.partial"), *set_dir.glob(".set.json.tmp-*")]:
                        leftover.unlink(missing_ok=True)

    def write_finished(self, plans: list[SetPlan], removed: list[str]) -> None:
        if not removed and all(p.unchanged for p in plans) and set(self._finished_sets()) == {p.name for p in plans}:
            self._remove_parts()
            return
        tmp = fresh_file(self._beside(f"tmp-finish-{os.getpid()}"))
        with h5py.File(tmp, "w", locking=False) as out:
            out.attrs["emocache"] = json.dumps(root_record([p.name for p in plans]))
            for plan in plans:
                if plan.unchanged:
                    main = self._main()
                    main.copy(main[plan.name], out, name=plan.name)
                    continue
                group = out.create_group(plan.name)
                _write_data(group, plan.meta, plan.blocks(), plan.index.frames, f"set {plan.name}")
                _write_index(group, plan.index, finished=True)
                group.attrs["emocache"] = json.dumps(plan.meta.to_json(), sort_keys=True)
        fsync_file(tmp)
        self.close()
        publish(tmp, self.path)
        self._remove_parts()

    def _remove_parts(self) -> None:
        """Remove ``store.h5.parts/`` once ``store.h5`` holds everything in it (renamed away first)."""
        self.close()
        if self.parts.exists():
            doomed = self._beside(f"parts.deleting-{os.getpid()}")
            os.replace(self.parts, doomed)
            fsync_dir(self.path.parent)
            shutil.rmtree(doomed)

    def close(self) -> None:
        for f in [*self._files.values(), *self._mains.values()]:
            f.close()
        self._files.clear()
        self._mains.clear()
        self._current = None
        self._root_sets = None


def _write_data(group: h5py.Group, meta: SetMeta, blocks: Iterable[np.ndarray], frames: int, what: str) -> None:
    data = group.create_dataset("data", shape=meta.frame_shape(frames), dtype=meta.dtype)
    at = 0
    for block in blocks:
        n = block.shape[-2]
        if n:
            data[..., at : at + n, :] = block
        at += n
    if at != frames:
        raise StoreError(f"internal: {what} got {at} frames, expected {frames}")


def _write_index(group: h5py.Group, index: SegmentIndex, *, finished: bool) -> None:
    """Lay ``index`` out in ``group`` as FORMAT.md says (read back by ``HDF5Backend._read_index``).

    A finished set keeps ``offsets`` and one ``counts/<name>`` array per count, as plain h5py
    readers want them; a segment keeps ``lengths``, ``covers`` and its counts as JSON text.
    """
    group.create_dataset("ids", data=np.array(index.ids, dtype=object).reshape(-1), dtype=h5py.string_dtype())
    group.create_dataset("sha256", data=np.array([h.encode("ascii") for h in index.sha256], dtype="S64").reshape(-1))
    group.create_dataset("failures", data=json.dumps([f.to_json() for f in index.failures]), dtype=h5py.string_dtype())
    if finished:
        group.create_dataset("offsets", data=index.offsets())
        counts = group.create_group("counts")
        for key, values in index.counts.items():
            counts.create_dataset(key, data=np.asarray(values, dtype=np.int64).reshape(-1))
    else:
        group.create_dataset("lengths", data=np.asarray(index.lengths, dtype=np.int64).reshape(-1))
        group.create_dataset("covers", data=np.asarray(index.covers, dtype=np.int64).reshape(-1))
        group.create_dataset("counts", data=json.dumps(index.to_json()["counts"]), dtype=h5py.string_dtype())
    group.attrs["index_sha256"] = index.digest
