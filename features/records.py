"""The records every back-end stores, how each is checksummed, and how each is validated when read.

Every record a reader acts on carries a sha256 over its canonical JSON
(``digest``): a store's record (its list of sets), a set's record (provenance,
frame rate, layers), and each segment's index (ids, lengths, per-utterance
sha256 of the frames, failures, covers, counts). A record that does not parse,
misses a key, holds a value of the wrong type or does not match its digest
raises ``StoreError`` naming the file and what is wrong; nothing is allocated
from a length before the lengths are known to be sane.
"""
from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from emocache.errors import EmocacheError
from features.provenance import Provenance

STORE_FORMAT = "emocache-features"
STORE_FORMAT_VERSION = 2
DEFAULT_PART = "main"
#: The part name of a set's finished (compacted, standard-layout) data; no writer can use it.
FINISHED_PART = ""
# Used with fullmatch only: re.match with "$" also accepts a trailing newline ("audio\n").
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")
_HEX64 = re.compile(r"[0-9a-f]{64}")


class StoreError(EmocacheError):
    """A feature store cannot do what was asked; the message says why and what to do."""


class StoreLockedError(StoreError):
    """Another writer holds the lock on this set or part; the message names it (host, pid, since)."""


def digest(record: Any) -> str:
    """sha256 hex of ``record``'s canonical JSON (sorted keys, no spaces, UTF-8)."""
    blob = json.dumps(record, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


def sealed(record: dict[str, Any]) -> dict[str, Any]:
    """``record`` with its own digest added under ``sha256``."""
    body = {k: v for k, v in record.items() if k != "sha256"}
    return body | {"sha256": digest(body)}


def parse_json(raw: bytes | str, where: str) -> Any:
    """JSON from ``raw``; StoreError naming ``where`` for bytes that are not UTF-8 JSON."""
    try:
        # h5py hands back undecodable bytes of a string attribute as surrogates: refuse those too.
        text = raw.decode("utf-8") if isinstance(raw, bytes) else raw.encode("utf-8").decode("utf-8")
        return json.loads(text)
    except (UnicodeError, ValueError, RecursionError) as e:
        raise StoreError(f"{where} is damaged: not UTF-8 JSON ({type(e).__name__}: {str(e)[:120]}); restore it from a copy") from None


def unseal(record: Any, where: str) -> dict[str, Any]:
    """The body of a sealed record, after checking it is a dict whose ``sha256`` matches."""
    if not isinstance(record, dict):
        raise StoreError(f"{where} is damaged: expected a JSON object, got {type(record).__name__}")
    if record.get("format") != STORE_FORMAT:
        raise StoreError(f"{where} is damaged or not an emocache record: format {record.get('format')!r}, expected {STORE_FORMAT!r}")
    if record.get("format_version") != STORE_FORMAT_VERSION:
        raise StoreError(
            f"{where} has store format version {record.get('format_version')!r}; this emocache reads version "
            f"{STORE_FORMAT_VERSION}: re-extract into a new store, or use the emocache that wrote it"
        )
    body = {k: v for k, v in record.items() if k != "sha256"}
    if record.get("sha256") != digest(body):
        raise StoreError(f"{where} is damaged: its content does not match its sha256; restore it from a copy")
    return body


def root_record(sets: list[str]) -> dict[str, Any]:
    """A store's own record: which sets it holds (so a set that vanishes is noticed)."""
    return sealed({"format": STORE_FORMAT, "format_version": STORE_FORMAT_VERSION, "sets": sorted(sets)})


def root_sets(record: Any, where: str) -> list[str]:
    body = unseal(record, where)
    sets = body.get("sets")
    if not isinstance(sets, list) or not all(isinstance(s, str) and _NAME.fullmatch(s) for s in sets):
        raise StoreError(f"{where} is damaged: 'sets' must be a list of set names")
    return sorted(sets)


def _fail(where: str, what: str) -> StoreError:
    return StoreError(f"{where} is damaged: {what}; run `features verify` and restore it from a copy")


@dataclass(frozen=True)
class Failure:
    """An utterance that could not be extracted: which stage failed, the error, when (ISO 8601, UTC)."""

    utt_id: str
    stage: str
    error: str
    time: str

    def to_json(self) -> dict[str, str]:
        return {"utt_id": self.utt_id, "stage": self.stage, "error": self.error, "time": self.time}

    @classmethod
    def from_json(cls, data: Any, where: str = "a failure record") -> "Failure":
        keys = ("utt_id", "stage", "error", "time")
        if not isinstance(data, dict) or not all(isinstance(data.get(k), str) for k in keys):
            raise _fail(where, f"a failure must hold the strings {', '.join(keys)}, got {str(data)[:80]}")
        return cls(*(data[k] for k in keys))


@dataclass(frozen=True)
class SetInfo:
    """What ``features info`` shows about one feature set."""

    name: str
    dim: int
    layers: int | None
    dtype: str
    frame_rate: float | None
    provenance: Provenance
    identity: str
    count: int
    failed: int
    nbytes: int
    #: Totals of the per-utterance counts the encoder reported (e.g. ``frames_without_face``).
    counts: dict[str, int] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "count": self.count,
            "dim": self.dim,
            "layers": self.layers,
            "dtype": self.dtype,
            "frame_rate": self.frame_rate,
            "nbytes": self.nbytes,
            "failed": self.failed,
            "identity": self.identity,
            "provenance": self.provenance.to_json(),
            "counts": dict(self.counts),
        }


#: The dtypes a store keeps frames in (the choices of ``extract run --store-dtype``).
STORE_DTYPES = ("float16", "float32")


@dataclass(frozen=True)
class SetMeta:
    """The record a set is created with; identical in every back-end."""

    provenance: Provenance
    frame_rate: float | None
    layers: int | None

    @property
    def dtype(self) -> str:
        return self.provenance.dtype

    @property
    def dim(self) -> int:
        return int(self.provenance.dim)

    @property
    def frame_bytes(self) -> int:
        return (self.layers or 1) * self.dim * np.dtype(self.dtype).itemsize

    def frame_shape(self, frames: int) -> tuple[int, ...]:
        """Shape of ``frames`` concatenated frames: ``(frames, D)`` or ``(L, frames, D)``."""
        return (frames, self.dim) if self.layers is None else (self.layers, frames, self.dim)

    def to_json(self) -> dict[str, Any]:
        return sealed({
            "format": STORE_FORMAT,
            "format_version": STORE_FORMAT_VERSION,
            "provenance": self.provenance.to_json(),
            "frame_rate": self.frame_rate,
            "layers": self.layers,
        })

    @classmethod
    def from_json(cls, data: Any, where: str) -> "SetMeta":
        body = unseal(data, where)
        layers, rate, prov = body.get("layers"), body.get("frame_rate"), body.get("provenance")
        if layers is not None and (type(layers) is not int or layers < 1):
            raise _fail(where, f"layers must be null or a positive integer, got {layers!r}")
        if rate is not None and (type(rate) not in (int, float) or not rate > 0):
            raise _fail(where, f"frame_rate must be null or a positive number, got {rate!r}")
        if not isinstance(prov, dict):
            raise _fail(where, "provenance must be an object")
        try:
            provenance = Provenance.from_json(prov)
        except TypeError as e:
            raise _fail(where, f"provenance: {e}") from None
        if provenance.dtype not in STORE_DTYPES or type(provenance.dim) is not int or provenance.dim < 1:
            raise _fail(where, f"provenance dtype {provenance.dtype!r} / dim {provenance.dim!r} (dtype one of {STORE_DTYPES}, dim a positive integer)")
        if prov.get("identity") != provenance.identity():
            raise _fail(where, "the recorded identity does not match the provenance")
        return cls(provenance, None if rate is None else float(rate), layers)


#: The fields of an index, which its digest covers.
_INDEX_KEYS = ("ids", "lengths", "sha256", "failures", "covers", "counts")


@dataclass(frozen=True)
class SegmentIndex:
    """What cuts a segment's (or a finished set's) frames into utterances, and what it records with them.

    ``lengths[i]`` frames of ``ids[i]``, in order, with the sha256 of their bytes;
    the failures recorded since the previous segment; the segment numbers a
    compaction ``covers``; ``counts`` maps a count's name to one whole number per
    id (what the encoder reported for that utterance, e.g. video frames without a
    face; a name an utterance did not report counts 0 for it). Its JSON
    (:meth:`to_json`) is the one every back-end stores and digests; values are
    kept as Python ints and strings, so the digest of a store written before
    is the digest recomputed now.
    """

    ids: tuple[str, ...]
    lengths: tuple[int, ...]
    sha256: tuple[str, ...]
    failures: tuple[Failure, ...] = ()
    covers: tuple[int, ...] = ()
    counts: dict[str, tuple[int, ...]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # numpy integers and lists in, Python ints and tuples out: the JSON and its digest depend on it.
        set_ = object.__setattr__
        set_(self, "ids", tuple(self.ids))
        set_(self, "lengths", tuple(int(n) for n in self.lengths))
        set_(self, "sha256", tuple(self.sha256))
        set_(self, "failures", tuple(self.failures))
        set_(self, "covers", tuple(int(c) for c in self.covers))
        set_(self, "counts", {name: tuple(int(x) for x in values) for name, values in sorted(self.counts.items())})

    @property
    def frames(self) -> int:
        return sum(self.lengths)

    def offsets(self) -> np.ndarray:
        """int64 ``(n + 1,)``: utterance ``i`` is frames ``offsets[i]:offsets[i+1]`` (the finished layout's array)."""
        return np.concatenate([[0], np.cumsum(self.lengths, dtype=np.int64)]).astype(np.int64)

    def utterance_counts(self, position: int) -> dict[str, int]:
        """The counts of the utterance at ``position`` in :attr:`ids`: every name this index records."""
        return {name: values[position] for name, values in self.counts.items()}

    def to_json(self) -> dict[str, Any]:
        return {
            "ids": list(self.ids),
            "lengths": list(self.lengths),
            "sha256": list(self.sha256),
            "failures": [f.to_json() for f in self.failures],
            "covers": list(self.covers),
            "counts": {name: list(values) for name, values in self.counts.items()},
        }

    @property
    def digest(self) -> str:
        """The sha256 the index is stored with (``index_sha256``)."""
        return digest(self.to_json())

    @classmethod
    def from_json(cls, data: Any, where: str, recorded: Any, frames: Callable[[], int]) -> "SegmentIndex":
        """An index as read, validated: its digest equals ``recorded``, the types are right, the
        lengths are non-negative and sum to ``frames()`` (the frames the data array holds).
        """
        if not isinstance(data, dict) or any(k not in data for k in _INDEX_KEYS):
            raise _fail(where, f"its index must hold {', '.join(_INDEX_KEYS)}")
        try:
            # Over exactly the six fields, as written: a digest of what was read, not of a copy.
            actual = digest({k: data[k] for k in _INDEX_KEYS})
        except (TypeError, ValueError) as e:
            raise _fail(where, f"its index holds values that are not JSON ({e})") from None
        if actual != recorded:
            raise _fail(where, "its index (ids, lengths, checksums, failures, counts) does not match the sha256 recorded with it")
        ids, lengths, sha, failures, covers, counts = (data[k] for k in _INDEX_KEYS)
        if not isinstance(ids, list) or not all(isinstance(u, str) and u for u in ids) or len(set(ids)) != len(ids):
            raise _fail(where, "ids must be distinct non-empty strings")
        if not isinstance(lengths, list) or len(lengths) != len(ids) or not all(type(n) is int and n >= 0 for n in lengths):
            raise _fail(where, f"lengths must be {len(ids)} non-negative integers, one per id")
        if not isinstance(sha, list) or len(sha) != len(ids) or not all(isinstance(h, str) and _HEX64.fullmatch(h) for h in sha):
            raise _fail(where, f"sha256 must be {len(ids)} hex digests, one per id")
        if not isinstance(covers, list) or not all(type(c) is int and c >= 0 for c in covers):
            raise _fail(where, "covers must be a list of segment numbers")
        if not isinstance(failures, list):
            raise _fail(where, "failures must be a list")
        if not isinstance(counts, dict) or not all(
            isinstance(name, str) and _NAME.fullmatch(name) and isinstance(v, list) and len(v) == len(ids)
            and all(type(x) is int for x in v)
            for name, v in counts.items()
        ):
            raise _fail(where, f"counts must map names to {len(ids)} integers each")
        total = sum(lengths)
        present = frames()
        if total != present:
            raise _fail(where, f"its lengths sum to {total} frames but its data holds {present}")
        return cls(ids, lengths, sha, tuple(Failure.from_json(f, where) for f in failures), covers, counts)


def lengths_from_offsets(offsets: list[int], n: int, where: str) -> list[int]:
    """Frames per utterance from a finished set's ``offsets``, once they are ``n + 1`` non-decreasing integers from 0."""
    if len(offsets) != n + 1 or offsets[0] != 0 or any(b < a for a, b in zip(offsets, offsets[1:])):
        raise StoreError(f"{where} is damaged: offsets must be {n + 1} non-decreasing integers from 0")
    return [b - a for a, b in zip(offsets, offsets[1:])]


@dataclass(frozen=True)
class Segment:
    """One immutable segment as listed by a back-end: where it belongs, its index, and ``handle``,
    the back-end's own locator. A set's finished data is listed as one segment of part
    ``FINISHED_PART`` (``""``), sequence 0.
    """

    part: str
    seq: int
    index: SegmentIndex
    handle: Any

    @property
    def ids(self) -> tuple[str, ...]:
        return self.index.ids

    @property
    def lengths(self) -> tuple[int, ...]:
        return self.index.lengths

    @property
    def sha256(self) -> tuple[str, ...]:
        return self.index.sha256

    @property
    def failures(self) -> tuple[Failure, ...]:
        return self.index.failures

    @property
    def covers(self) -> tuple[int, ...]:
        return self.index.covers

    @property
    def frames(self) -> int:
        return self.index.frames

    def utterance_counts(self, position: int) -> dict[str, int]:
        """The counts of the utterance at ``position`` in :attr:`ids`: every name this segment records."""
        return self.index.utterance_counts(position)


def index_counts(per_utterance: list[dict[str, int]]) -> dict[str, list[int]]:
    """Per-utterance count dicts as the index's columns: name -> one value per utterance."""
    names = sorted({name for counts in per_utterance for name in counts})
    return {name: [int(counts.get(name, 0)) for counts in per_utterance] for name in names}


def check_name(kind: str, name: str) -> str:
    """Set, part and count names become file names; refuse anything that could escape or collide."""
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise StoreError(
            f"invalid {kind} name {name!r}: use 1-128 letters, digits, '_', '-' or '.', starting with a letter or digit"
        )
    return name
