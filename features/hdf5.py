"""The HDF5 back-end: ``store.h5`` plus ``store.h5.parts/``.

Layout::

    store.h5                                   marks the store (root attribute ``emocache``)
    store.h5.parts/<set>/set.json              the set's record (provenance, frame rate, layers)
    store.h5.parts/<set>/<part>/00000007.h5    one segment: an HDF5 file with
        data     (T_total, D) or (L, T_total, D), contiguous, no filters
        ids      variable-length UTF-8 strings
        lengths  int64
        sha256   64-byte hex digests, one per utterance
        failures JSON text (scalar string)
        covers   int64: the segments of this part this one replaces
        counts   JSON text: per-utterance counts, {name: [one int per id]}

Why files beside the main one instead of groups inside it: HDF5 allows one
writer per file, and an HDF5 file modified in place is not crash-safe (a
``kill -9`` between metadata flushes can leave it unreadable). Every file
here is written once under a temporary name, fsynced and renamed, and never
modified again, so any instant of any writer leaves readable files, and
parallel writers of different parts never share a file.

Why contiguous and unfiltered: measured in ``bench/store.py`` (see
``bench/RESULTS.md``), a contiguous dataset read with ``read_direct``
into a preallocated array runs at the speed of ``numpy.fromfile``; chunking costs
a third to two thirds of that, and compression saves little on float16 at a
large cost in write time. Checksums are the per-utterance sha256, which catches
what HDF5's per-chunk fletcher32 (unavailable on contiguous data) would.

The main file is written once, when the store is created. Every file is
opened with HDF5's own file locking off: segments are immutable once renamed,
a temporary segment is known only to its writer (our lock guards the part),
and HDF5's locking fails on read-only shares and on NFS without lockd.
"""
from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import h5py
import numpy as np

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
from features.durable import fsync_file, publish, remove_tree, write_text_atomic

_SEGMENT = re.compile(r"^(\d{8})\.h5$")


@register("hdf5")
class HDF5Backend(Backend):
    suffixes = (".h5", ".hdf5")

    def __init__(self, location: str, mode: str) -> None:
        super().__init__(location, mode)
        self.path = Path(location)
        self.parts = Path(location + ".parts")
        self._files: dict[Path, h5py.File] = {}

    @classmethod
    def exists(cls, location: str) -> bool:
        return Path(location).is_file()

    def create(self) -> None:
        if self.parts.exists():
            # Someone deleted the store's file but not its segments: reviving them silently
            # would undo what was surely meant as deleting the store.
            raise StoreError(
                f"{self.parts} is left over from a deleted store {self.path.name}: "
                f"delete it too (rm -r {self.parts}) to start afresh, or restore {self.path}"
            )
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{self.path.name}.tmp-{os.getpid()}")
        with h5py.File(tmp, "w", locking=False) as f:
            f.attrs["emocache"] = json.dumps({"format": STORE_FORMAT, "format_version": STORE_FORMAT_VERSION})
        fsync_file(tmp)
        publish(tmp, self.path)

    def creation_lock_path(self) -> Path:
        # Beside the file: the .parts folder must not exist before the store does.
        return self.path.with_name(f".{self.path.name}.create.lock")

    def check(self) -> None:
        try:
            with h5py.File(self.path, "r", locking=False) as f:
                ok = "emocache" in f.attrs
        except OSError as e:
            raise StoreError(f"{self.path} is not a readable HDF5 file ({e})") from None
        if not ok:
            raise StoreError(f"{self.path} is an HDF5 file but not an emocache feature store (no 'emocache' attribute)")

    def set_names(self) -> list[str]:
        if not self.parts.is_dir():
            return []
        # Dot names are sets being deleted (renamed away first): never listed.
        return sorted(p.name for p in self.parts.iterdir() if not p.name.startswith(".") and (p / "set.json").is_file())

    def read_set_meta(self, name: str) -> SetMeta | None:
        record = self.parts / name / "set.json"
        try:
            text = record.read_text(encoding="utf-8")
        except (FileNotFoundError, NotADirectoryError):
            return None
        try:
            return SetMeta.from_json(json.loads(text))
        except (ValueError, KeyError, TypeError) as e:
            raise StoreError(f"{record} is damaged ({e}); restore it from a copy of the store") from None

    def write_set_meta(self, name: str, meta: SetMeta) -> None:
        (self.parts / name).mkdir(parents=True, exist_ok=True)
        write_text_atomic(self.parts / name / "set.json", json.dumps(meta.to_json(), indent=1, sort_keys=True))

    def segments(self, name: str) -> list[Segment]:
        base = self.parts / name
        if not base.is_dir():
            return []
        parts = sorted(p for p in base.iterdir() if p.is_dir())
        return [segment for part_dir in parts for segment in relist_while_compacting(part_dir, self._part_segments)]

    def _part_segments(self, part_dir: Path) -> list[Segment]:
        """The segments of one part; FileNotFoundError when one vanished after the listing."""
        out = []
        for entry in sorted(part_dir.iterdir()):
            match = _SEGMENT.match(entry.name)
            if match:
                out.append(self._load_index(part_dir.name, int(match.group(1)), entry))
        return out

    def _file(self, path: Path) -> h5py.File:
        f = self._files.get(path)
        if f is None:
            try:
                f = h5py.File(path, "r", locking=False)
            except OSError as e:
                if not path.exists():
                    # Compacted away by its part's writer since the listing (h5py may say so as a
                    # failed stat, not ENOENT): the caller lists again.
                    raise FileNotFoundError(str(path)) from None
                raise StoreError(f"cannot read segment {path} ({e}); run `features verify {self.location}`") from None
            self._files[path] = f
        return f

    def _load_index(self, part: str, seq: int, path: Path) -> Segment:
        f = self._file(path)
        try:
            index = {
                "ids": [s for s in f["ids"].asstr()[()]],
                "lengths": f["lengths"][()],
                "sha256": [h.decode("ascii") for h in f["sha256"][()]],
                "failures": json.loads(f["failures"].asstr()[()]),
                "covers": f["covers"][()],
                "counts": json.loads(f["counts"].asstr()[()]) if "counts" in f else {},
            }
        except (KeyError, OSError, ValueError) as e:
            raise StoreError(f"segment {path} is damaged ({e}); run `features verify {self.location}`") from None
        return Segment.from_index_json(part, seq, index, path)

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
        part_dir = self.parts / name / part
        part_dir.mkdir(parents=True, exist_ok=True)
        tmp = part_dir / f".tmp-{seq:08d}-{os.getpid()}.h5"
        with h5py.File(tmp, "w", locking=False) as f:
            data = f.create_dataset("data", shape=meta.frame_shape(frames), dtype=meta.dtype)
            at = 0
            for block in blocks:
                n = block.shape[-2]
                if n:
                    data[..., at : at + n, :] = block
                at += n
            if at != frames:
                raise StoreError(f"internal: segment {seq} of {name}/{part} got {at} frames, expected {frames}")
            f.create_dataset("ids", data=np.array(index["ids"], dtype=object), dtype=h5py.string_dtype())
            f.create_dataset("lengths", data=np.asarray(index["lengths"], dtype=np.int64).reshape(-1))
            f.create_dataset("sha256", data=np.array([h.encode("ascii") for h in index["sha256"]], dtype="S64").reshape(-1))
            f.create_dataset("failures", data=json.dumps(index["failures"]), dtype=h5py.string_dtype())
            f.create_dataset("covers", data=np.asarray(index["covers"], dtype=np.int64).reshape(-1))
            f.create_dataset("counts", data=json.dumps(index.get("counts", {})), dtype=h5py.string_dtype())
        fsync_file(tmp)
        publish(tmp, part_dir / f"{seq:08d}.h5")

    def part_names(self, name: str) -> list[str]:
        base = self.parts / name
        return sorted(p.name for p in base.iterdir() if p.is_dir()) if base.is_dir() else []

    def delete_set(self, name: str) -> None:
        self.close()
        remove_tree(self.parts, name)

    def delete_segment(self, name: str, segment: Segment) -> None:
        f = self._files.pop(segment.handle, None)
        if f is not None:
            f.close()
        segment.handle.unlink(missing_ok=True)

    def read_frames(self, segment: Segment, start: int, stop: int, out: np.ndarray) -> None:
        if stop <= start:
            return
        data = self._file(segment.handle)["data"]
        source = np.s_[start:stop] if data.ndim == 2 else np.s_[:, start:stop]
        if out.flags.c_contiguous:
            data.read_direct(out, source_sel=source)
        else:
            out[...] = data[source]

    def lock_path(self, name: str, part: str | None) -> Path:
        if part is None:
            return self.parts / ".create.lock"
        return self.parts / name / part / ".writer.lock"

    def cleanup(self, name: str, part: str) -> None:
        part_dir = self.parts / name / part
        if part_dir.is_dir():
            for entry in part_dir.glob(".tmp-*"):
                entry.unlink(missing_ok=True)

    def close(self) -> None:
        for f in self._files.values():
            f.close()
        self._files.clear()
