"""Flip random bytes in every file of finished stores: nothing a reader returns changes while verify passes,
and nothing raises but StoreError.

After each flip the store is verified, its info taken (what `features info` prints) and read in full
through the library (ids, every utterance one by one and all at once, failures, counts, provenance);
then the byte is put back. A flip is *silent* when verify reports the store sound while a reader gets
something other than what was written.
"""
from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest

import features
from features import StoreError, open_store
from features.cli import store_info
from features.provenance import Provenance

FLIPS = 300  # per finished store; half that per store left in progress (segments, set.json)


def build(path: str, finish: bool) -> None:
    """Two sets (one layered) with counts and failures; unfinished: in segments of two parts."""
    rng = np.random.default_rng(11)
    with open_store(path, "a") as store:
        for name, dim, layers in (("audio", 4, None), ("video", 3, 2)):
            p = Provenance(encoder=f"test:{name}", manifest_hash="f" * 64, dtype="float16", dim=dim,
                           preprocessing={"rate": 16000}, host="h", created="2026-01-01")
            for part in ("main", "w1") if not finish else ("main",):
                with store.writer(name, p, frame_rate=25.0, layers=layers, part=part, finish=finish) as w:
                    for i in range(5):
                        shape = (int(rng.integers(1, 6)), dim) if layers is None else (layers, int(rng.integers(1, 6)), dim)
                        w.write(f"{name}{part}{i}", rng.standard_normal(shape), {"frames_without_face": i})
                    w.fail(f"{name}{part}_bad", "load", "cannot decode")


def everything(path: str) -> dict:
    """All a reader gets from the store: raises StoreError when the store says it is damaged."""
    out = {}
    with open_store(path) as store:
        for name in store.set_names():
            fs = store[name]
            batch = fs.read_all()
            out[name] = {
                "ids": fs.ids,
                "each": [fs.read(u).tobytes() for u in fs.ids],
                "all": batch.data.tobytes(),
                "offsets": batch.offsets.tolist(),
                "failures": fs.failures(),
                "info": fs.info.to_json(),
            }
    return out


def verified(path: str) -> bool:
    try:
        return features.verify(path).ok
    except StoreError:
        return False


@pytest.mark.slow
@pytest.mark.parametrize("finish", [True, False], ids=["finished", "in-progress"])
@pytest.mark.parametrize("suffix", [".h5", ".zarr"])
def test_no_flipped_byte_changes_what_a_reader_gets_while_verify_passes(tmp_path, suffix, finish):
    path = str(tmp_path / f"fuzz{suffix}")
    build(path, finish)
    reference = everything(path)
    assert verified(path) and sorted(reference) == ["audio", "video"]
    root = Path(path) if suffix == ".zarr" else Path(path + ".parts")
    files = [Path(path)] * (suffix == ".h5") + sorted(p for p in root.rglob("*") if p.is_file() and not p.name.endswith(".lock"))
    if finish and suffix == ".h5":
        assert files == [Path(path)], "a finished HDF5 store is one file"
    rng = random.Random(20261201)
    silent, crashes, caught = [], [], 0
    for flip in range(FLIPS if finish else FLIPS // 2):
        file = files[flip % len(files)]  # every file, in turn
        blob = file.read_bytes()
        if not blob:
            continue
        at = rng.randrange(len(blob))
        damaged = bytearray(blob)
        damaged[at] ^= rng.randrange(1, 256)
        file.write_bytes(bytes(damaged))
        try:
            ok = verified(path)
            try:
                store_info(path)
                got = everything(path)
            except StoreError:
                got = None
            if got is None or got != reference:
                caught += 1
                if ok and got is not None:
                    silent.append(f"{file.relative_to(tmp_path)} byte {at}")
        except Exception as e:  # noqa: BLE001 - any other exception is what this test looks for
            crashes.append(f"{file.relative_to(tmp_path)} byte {at}: {type(e).__name__}: {e}")
        finally:
            file.write_bytes(blob)
    assert not silent, f"{len(silent)} silent changes: {silent[:5]}"
    assert not crashes, f"{len(crashes)} exceptions other than StoreError: {crashes[:5]}"
    assert caught > 0
    assert everything(path) == reference and verified(path)
