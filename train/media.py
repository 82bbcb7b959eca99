"""Features for recordings never extracted, made exactly as a checkpoint's were.

The checkpoint's config.json records each input set's provenance: the encoder spec, its
weights' sha256, the layers kept, the preprocessing (frames, max tokens, compute dtype...)
and the stored dtype. The same encoder is built again from it (with the model folder or
weights file given again where the provenance names only a hash), its provenance compared
field by field with the checkpoint's, and any difference refused.

Features go to a cache store whose sets are named by that identity and whose utterances
are keyed by the content they were made from (the media file's sha256, the transcript,
the video span), so a recording is extracted once whatever its path or utterance id.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from features.provenance import Provenance
from manifests import Utterance
from train.data import DataError, ModalityData, load_set

if TYPE_CHECKING:
    from train.checkpoint import Checkpoint

MODALITY_NAMES = {"a": "audio", "t": "text", "v": "video"}
_LETTERS = {**{m: m for m in MODALITY_NAMES}, **{name: m for m, name in MODALITY_NAMES.items()}}
#: The manifest hash every cache set records: its utterances are keyed by content, not by a manifest.
CACHE_MANIFEST = "predict-cache:content-keyed"
#: The cache folder made beside a checkpoint folder when none is given.
DEFAULT_CACHE = "predict-cache"
CACHE_STORE = "features.h5"


class MediaError(DataError):
    """A checkpoint's features cannot be made again here; the message names the modality, the encoder and the fix."""


@dataclass(frozen=True)
class EncoderSource:
    """Where one modality's encoder is found again, as ``extract run`` was told.

    ``spec`` replaces the checkpoint's encoder spec (``hf:/path/to/folder`` where the checkpoint
    names only the folder); ``weights`` and ``trust_pickle`` are ``--weights`` and ``--trust-pickle``.
    """

    spec: str | None = None
    weights: str | None = None
    trust_pickle: bool = False


@dataclass(frozen=True)
class TrainedSet:
    """What a checkpoint records about the features of one input modality (a, t or v)."""

    modality: str
    set_name: str
    provenance: Provenance

    @property
    def name(self) -> str:
        return MODALITY_NAMES[self.modality]

    @property
    def label(self) -> str:
        return f"{self.name} ({self.modality}) encoder {self.provenance.encoder!r}"

    def cache_provenance(self) -> Provenance:
        return dataclasses.replace(self.provenance, manifest_hash=CACHE_MANIFEST)

    @property
    def cache_set(self) -> str:
        """The cache's set for these features: named by their identity, so checkpoints can share a cache."""
        return f"{self.name}-{self.cache_provenance().identity()[:16]}"


@dataclass(frozen=True)
class MediaFailure:
    """One recording whose features could not be made: its utterance, the stage and why."""

    utt_id: str
    modality: str
    stage: str
    message: str

    def to_json(self) -> dict[str, str]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class MediaFeatures:
    """Features of the rows that every modality could be made for, in row order."""

    rows: tuple[Utterance, ...]
    modalities: Mapping[str, ModalityData]
    failures: tuple[MediaFailure, ...]
    #: Per modality name: recordings extracted by this call, and found in the cache.
    extracted: Mapping[str, int]
    reused: Mapping[str, int]
    cache: str


def trained_sets(ckpt: Checkpoint) -> dict[str, TrainedSet]:
    """The checkpoint's input sets; refuses a checkpoint that does not record how they were made."""
    checkpoint = ckpt.folder
    out = {}
    for m in ckpt.inputs:
        recorded = ckpt.sets.get(m) or {}
        if "provenance" not in recorded:
            raise MediaError(
                f"{checkpoint}: the checkpoint does not record how its {MODALITY_NAMES.get(m, m)} features were made "
                "(no set provenance in its config.json), so they cannot be made again from recordings. "
                "Re-train it with this version, or extract the recordings yourself and pass --store")
        try:
            prov = Provenance.from_json(recorded["provenance"])
        except TypeError as err:
            raise MediaError(f"{checkpoint}: the {MODALITY_NAMES.get(m, m)} set's provenance in config.json "
                             f"cannot be read ({err}); re-train the checkpoint with this version") from err
        out[m] = TrainedSet(modality=m, set_name=recorded.get("set", MODALITY_NAMES.get(m, m)), provenance=prov)
    return out


def _accepts(modality_name: str, kind: str, option: str) -> bool:
    from extract.base import registered

    cls = registered(modality_name).get((modality_name, kind))
    return cls is not None and (cls.accepted_options is None or option in cls.accepted_options)


def _assign(flag: str, text: str, trained: Mapping[str, TrainedSet], fits) -> tuple[str, str]:
    """``MODALITY=VALUE`` or a bare VALUE that fits exactly one of the checkpoint's inputs."""
    key, sep, value = text.partition("=")
    inputs = ", ".join(t.label for t in trained.values())
    if sep and key in _LETTERS:
        m = _LETTERS[key]
        if m not in trained:
            raise MediaError(f"{flag} {text!r}: the checkpoint has no {MODALITY_NAMES[m]} input; its inputs: {inputs}")
        return m, value
    fitting = [m for m in trained if fits(trained[m], text)]
    if len(fitting) != 1:
        example = MODALITY_NAMES[(fitting or list(trained))[0]]
        raise MediaError(f"{flag} {text!r}: say which input it is for, e.g. {flag} {example}={text} "
                         f"(the checkpoint's inputs: {inputs})")
    return fitting[0], text


def encoder_sources(trained: Mapping[str, TrainedSet], encoders: Sequence[str] = (), weights: Sequence[str] = (),
                    trust_pickle: bool = False) -> dict[str, EncoderSource]:
    """Parse ``--encoder [MODALITY=]SPEC`` and ``--weights [MODALITY=]FILE`` (MODALITY: a, t, v or its name).

    A bare spec goes to the input whose recorded encoder is of the same kind, a bare file to the
    input whose encoder takes weights; ``trust_pickle`` applies to every weights file given."""
    if trust_pickle and not weights:
        raise MediaError("--trust-pickle allows a pickled --weights file: give the --weights file too")
    specs: dict[str, str] = {}
    files: dict[str, str] = {}
    for text in encoders:
        m, spec = _assign("--encoder", text, trained,
                          lambda t, s: t.provenance.encoder.partition(":")[0] == s.partition(":")[0])
        specs[m] = spec
    for text in weights:
        m, path = _assign("--weights", text, trained, lambda t, _: _accepts(
            t.name, (specs.get(t.modality) or t.provenance.encoder).partition(":")[0], "weights"))
        files[m] = path
    return {m: EncoderSource(spec=specs.get(m), weights=files.get(m), trust_pickle=trust_pickle and m in files)
            for m in trained if m in specs or m in files}


def build_encoder(trained: TrainedSet, source: EncoderSource | None, device: str):
    """The encoder the checkpoint's features came from, checked against their provenance, and its provenance."""
    from extract.base import EncoderConfigError, create_encoder
    from extract.pipeline import build_provenance

    prov = trained.provenance
    spec = source.spec if source and source.spec else prov.encoder
    kind = spec.partition(":")[0]
    recorded = {"layers": prov.layers, "frames": prov.preprocessing.get("frames"),
                "max_tokens": prov.preprocessing.get("max_tokens")}
    options = {k: v for k, v in recorded.items() if v is not None and _accepts(trained.name, kind, k)}
    if source and source.weights:
        options["weights"] = source.weights
    if source and source.trust_pickle:
        options["trust_pickle"] = True
    dtype = prov.preprocessing.get("compute_dtype", "float32")
    sha = f"weights sha256 {prov.weights_sha256[:16]}..." if prov.weights_sha256 else "no weights"
    hint = (f"Give the encoder again as `extract run` was given it: --encoder {trained.name}=SPEC "
            f"(hf:DIR for a model folder), --weights {trained.name}=FILE, --trust-pickle; "
            f"the checkpoint's features were made with {sha}")
    try:
        encoder = create_encoder(trained.name, spec, device=device, dtype=dtype, options=options)
    except EncoderConfigError as err:
        raise MediaError(f"{trained.label}: cannot be loaded here ({spec!r}): {err}. {hint}") from err
    made = build_provenance(encoder, CACHE_MANIFEST, prov.dtype, dtype, device=device)
    differences = trained.cache_provenance().differences(made)
    if differences:
        raise MediaError(f"{trained.label}: the encoder loaded here ({spec!r}) differs from the one the checkpoint "
                         f"was trained with ({'; '.join(differences)}; checkpoint -> here). {hint}")
    return encoder, made


def _sha256_file(path: str, memo: dict[str, str]) -> str:
    if path not in memo:
        digest = hashlib.sha256()
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
        memo[path] = digest.hexdigest()
    return memo[path]


def content_key(modality: str, row: Utterance, memo: dict[str, str]) -> str | MediaFailure:
    """The cache key of what ``modality``'s encoder reads from ``row``, or why there is nothing to read."""
    name = MODALITY_NAMES[modality]
    if modality == "t":
        if not row.text or not row.text.strip():
            return MediaFailure(row.utt_id, name, "input", "no transcript: give the row a text (--text for one recording)")
        parts = {"text": row.text}
    else:
        path = row.audio if modality == "a" else row.video
        if not path:
            return MediaFailure(row.utt_id, name, "input", f"no {name} file: give the row one (--{name} for one recording)")
        if not os.path.isfile(path):
            return MediaFailure(row.utt_id, name, "input", f"{name} file not found: {path}; fix the path or restore the file")
        parts = {"sha256": _sha256_file(path, memo)}
        if modality == "v":
            parts |= {"start": row.start, "end": row.end, "video_side": row.video_side}
    blob = json.dumps(parts, sort_keys=True, ensure_ascii=False).encode("utf-8")
    return f"{modality}{hashlib.sha256(blob).hexdigest()}"


def _extract(trained: TrainedSet, encoder, made: Provenance, store_path: Path, rows: list[Utterance],
             progress: bool) -> list[tuple[str, str, str]]:
    from extract.loop import extract_rows
    from features import open_store

    with open_store(str(store_path), mode="a") as store:
        with store.writer(trained.cache_set, made, frame_rate=encoder.frame_rate, layers=encoder.num_layers) as writer:
            todo = [r for r in rows if r.utt_id not in writer.done]  # another run may have written some since
            tally = extract_rows(encoder, writer, todo, store_dtype=made.dtype, progress=progress, desc=trained.name)
    return tally.failures


def _present(store_path: Path, trained: TrainedSet) -> set[str]:
    from features import open_store

    if not store_path.exists():
        return set()
    with open_store(str(store_path), mode="r") as store:
        if trained.cache_set not in store:
            return set()
        fs = store[trained.cache_set]
        if fs.info.identity != trained.cache_provenance().identity():
            raise MediaError(f"{store_path}: set {trained.cache_set!r} holds features of identity {fs.info.identity[:16]}, "
                             f"not the checkpoint's {trained.label}; delete the cache folder or pass another --cache")
        return set(fs.ids)


def media_features(trained: Mapping[str, TrainedSet], rows: Sequence[Utterance], cache: str | os.PathLike,
                   sources: Mapping[str, EncoderSource] | None = None, *, device: str = "cpu",
                   progress: bool = False) -> MediaFeatures:
    """Make (or find in ``cache``) every modality's features of ``rows``, as the checkpoint's were made.

    An encoder is built, and checked against the checkpoint, when a recording needs extracting
    or when ``sources`` names it; recordings already in the cache are never extracted again."""
    sources = sources or {}
    cache = Path(cache)
    store_path = cache / CACHE_STORE
    memo: dict[str, str] = {}
    keys: dict[str, list[str | None]] = {}
    failures: list[MediaFailure] = []
    extracted: dict[str, int] = {}
    reused: dict[str, int] = {}
    for m, t in trained.items():
        keyed = [content_key(m, row, memo) for row in rows]
        failures += [k for k in keyed if isinstance(k, MediaFailure)]
        keys[m] = [k if isinstance(k, str) else None for k in keyed]
        wanted = {k: row for k, row in zip(keys[m], rows) if k is not None}
        present = _present(store_path, t)
        missing = [dataclasses.replace(row, utt_id=k) for k, row in wanted.items() if k not in present]
        failed: dict[str, tuple[str, str]] = {}
        if missing or m in sources:
            encoder, made = build_encoder(t, sources.get(m), device)
            if missing:
                cache.mkdir(parents=True, exist_ok=True)
                failed = {u: (stage, message) for u, stage, message in _extract(t, encoder, made, store_path, missing, progress)}
                for k, row in zip(keys[m], rows):
                    if k in failed:
                        failures.append(MediaFailure(row.utt_id, t.name, *failed[k]))
                keys[m] = [None if k in failed else k for k in keys[m]]
        extracted[t.name] = len(missing) - len(failed)
        reused[t.name] = len(wanted) - len(missing)
    ok = [i for i in range(len(rows)) if all(keys[m][i] is not None for m in trained)]
    modalities = {}
    if ok:
        from features import open_store

        with open_store(str(store_path), mode="r") as store:
            for m, t in trained.items():
                modalities[m] = load_set(store[t.cache_set], [keys[m][i] for i in ok], t.cache_set)
    return MediaFeatures(rows=tuple(rows[i] for i in ok), modalities=modalities, failures=tuple(failures),
                         extracted=extracted, reused=reused, cache=str(cache))
