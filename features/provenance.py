"""What made a feature set, and the identity derived from it.

A set's *identity* is a sha256 over everything that changes its values: the
encoder, its weights, the layers kept, the preprocessing, the manifest's content
hash, the dtype and the store format version. Who ran it, where and when is
recorded too, but is left out of the identity, so that two people who extract
with the same configuration get the same identity and can tell their stores agree.
"""
from __future__ import annotations

import dataclasses
import datetime as _dt
import hashlib
import json
import os
import socket
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# Bump when a change to the writers changes stored values for the same inputs.
FORMAT_VERSION = 1

_IDENTITY_KEYS = ("encoder", "weights_sha256", "layers", "preprocessing", "manifest_hash", "dtype", "dim")


@dataclass(frozen=True)
class Provenance:
    """Everything recorded about how a feature set was made.

    ``encoder`` is a spec such as ``hf:facebook/wav2vec2-base``, ``hf:/models/tiny``,
    ``opensmile:eGeMAPSv02``, ``timm:efficientnet_b0`` or ``hog``.
    ``preprocessing`` holds the parameters that change values (sample rate,
    frames per clip, crop, face detector, max tokens...), JSON-serialisable.
    """

    encoder: str
    manifest_hash: str
    dtype: str
    dim: int
    weights_sha256: str | None = None
    layers: str | None = None
    preprocessing: dict[str, Any] = field(default_factory=dict)
    format_version: int = FORMAT_VERSION
    package_version: str = ""
    git_commit: str | None = None
    host: str = ""
    created: str = ""
    stats: dict[str, Any] = field(default_factory=dict)

    def identity(self) -> str:
        """sha256 hex over the value-changing fields (see module docstring)."""
        payload = {key: getattr(self, key) for key in _IDENTITY_KEYS}
        payload["format_version"] = self.format_version
        blob = json.dumps(payload, sort_keys=True, ensure_ascii=False, default=str)
        return hashlib.sha256(blob.encode("utf-8")).hexdigest()

    def differences(self, other: "Provenance") -> list[str]:
        """The value-changing fields where ``other`` differs, as ``field: mine -> theirs`` lines.

        Preprocessing is compared key by key, so a message can say ``preprocessing.compute_dtype``
        rather than "preprocessing".
        """
        out = []
        for key in (*_IDENTITY_KEYS, "format_version"):
            mine, theirs = getattr(self, key), getattr(other, key)
            if key == "preprocessing":
                for sub in sorted(set(mine) | set(theirs)):
                    if mine.get(sub) != theirs.get(sub):
                        out.append(f"preprocessing.{sub}: {mine.get(sub)!r} -> {theirs.get(sub)!r}")
            elif mine != theirs:
                out.append(f"{key}: {mine!r} -> {theirs!r}")
        return out

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self) | {"identity": self.identity()}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "Provenance":
        values = {k: v for k, v in data.items() if k != "identity"}
        return cls(**values)

    @classmethod
    def now(cls, **values: Any) -> "Provenance":
        """A provenance stamped with this package's version, git commit, host and time."""
        values.setdefault("package_version", package_version())
        values.setdefault("git_commit", git_commit())
        values.setdefault("host", socket.gethostname())
        values.setdefault("created", _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"))
        return cls(**values)


def package_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("emocache")
    except PackageNotFoundError:
        return "0+unknown"


def git_commit() -> str | None:
    """The commit of the source tree this package runs from, or None outside a checkout."""
    here = Path(__file__).resolve().parent
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=5, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def sha256_files(paths: list[str | os.PathLike]) -> str:
    """sha256 over the bytes of ``paths`` in sorted order (weights files, a model folder's contents)."""
    digest = hashlib.sha256()
    for path in sorted(Path(p) for p in paths):
        digest.update(path.name.encode("utf-8"))
        with path.open("rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()
