"""The programs the store suite (``features.testing``) runs in child processes: writers to kill, writers
that race readers, processes that create one store at once, and a reader on a read-only mount.

    python -m features.testing_children [--import MODULE]... PROGRAM STORE [ARGS]

``--import`` names a module to import first, so that a back-end registered outside ``features``
opens in the child as it does in the test. Every program writes set ``audio`` with dim 8 (``write``:
16) in float16, as the suite's tests expect.
"""
from __future__ import annotations

import hashlib
import importlib
import json
import os
import signal
import sys
import time
from pathlib import Path

import numpy as np

import features
from features.provenance import Provenance

PROVENANCE = Provenance(encoder="test:random", manifest_hash="a" * 64, dtype="float16", dim=8, host="testhost", created="2026-01-01")


def crash(path: str) -> None:
    """Commit 'a', buffer 'b', then die by SIGKILL without closing."""
    store = features.open_store(path, "a")
    w = store.writer("audio", PROVENANCE, frame_rate=50.0)
    w.write("a", np.ones((3, 8)))
    w.commit()
    w.write("b", np.ones((2, 8)))
    os.kill(os.getpid(), signal.SIGKILL)


def compact_rounds(path: str, rounds: str) -> None:
    """ROUNDS writers one after another, each committing twice and compacting its part at close."""
    for r in range(int(rounds)):
        with features.open_store(path, "a") as s, s.writer("audio", PROVENANCE, frame_rate=50.0) as w:
            for i in range(4):
                w.write(f"r{r}-{i}", np.full((i + 1, 8), i, dtype=np.float32))
                if i % 2:
                    w.commit()


def part(path: str, name: str) -> None:
    """Six utterances ``NAME-i`` into part NAME of a set that other processes create at the same time."""
    prov = Provenance.now(encoder="test:random", manifest_hash="a" * 64, dtype="float16", dim=8)
    with features.open_store(path, "a") as s, s.writer("audio", prov, frame_rate=50.0, part=name) as w:
        for i in range(6):
            w.write(f"{name}-{i}", np.full((i + 1, 8), i, dtype=np.float32))
            if i % 2:
                w.commit()


def open_at_once(path: str, barrier: str) -> None:
    """Say ready (a file ``ready-PID`` in BARRIER), wait for BARRIER/go, then open (creating) the store."""
    folder = Path(barrier)
    (folder / f"ready-{os.getpid()}").touch()
    while not (folder / "go").exists():
        time.sleep(0.001)
    features.open_store(path, "a").close()


def utterance(i: int) -> np.ndarray:
    rng = np.random.default_rng(i)
    return rng.standard_normal((int(rng.integers(1, 40)), 16)).astype(np.float32)


def write(path: str, n: str, every: str, sleep: str = "0") -> None:
    """A deterministic extraction stand-in for the kill -9 test.

    Writes u0000..u{N-1}, skipping what is done, committing every EVERY utterances, sleeping
    SLEEP seconds after each write (so a kill lands at many points), and failing every 7th
    utterance once (it succeeds on the next run), so failures take part in the resume too.
    """
    prov = Provenance(encoder="test:random", manifest_hash="0" * 64, dtype="float16", dim=16)
    with features.open_store(path, "a") as store, store.writer("audio", prov, frame_rate=50.0) as w:
        done, failed = w.done, w.failed
        pending = 0
        for i in range(int(n)):
            utt_id = f"u{i:04d}"
            if utt_id in done:
                continue
            if i % 7 == 3 and utt_id not in failed:
                w.fail(utt_id, "encode", f"simulated failure of {utt_id}")
            else:
                w.write(utt_id, utterance(i))
            pending += 1
            if pending == int(every):
                w.commit()
                pending = 0
            time.sleep(float(sleep))


def read(path: str) -> None:
    """Read everything a user can read; print JSON {sets: {set: [count, sha256 of all values]}, ok, problems}."""
    from click.testing import CliRunner

    from features.cli import cli

    out = {}
    with features.open_store(path) as store:
        for name in store.set_names():
            fs = store[name]
            digest = hashlib.sha256()
            everything = fs.read_all()
            for utt_id in fs.ids:
                one = fs.read(utt_id)
                if one.tobytes() != everything.get(utt_id).tobytes():
                    raise SystemExit(f"{name}/{utt_id}: read and read_all differ")
                digest.update(one.tobytes())
            fs.failures()
            out[name] = [fs.info.count, digest.hexdigest()]
    report = features.verify(path)
    for args in (["info", path], ["info", "--json", path], ["ls", path], ["verify", path]):
        result = CliRunner().invoke(cli, args)
        if result.exit_code != 0:
            raise SystemExit(f"features {' '.join(args)} failed: {result.output}")
    print(json.dumps({"sets": out, "ok": report.ok, "problems": report.problems}))


PROGRAMS = {"crash": crash, "compact-rounds": compact_rounds, "part": part, "open": open_at_once, "write": write, "read": read}


def main(argv: list[str]) -> None:
    while argv[:1] == ["--import"]:
        importlib.import_module(argv[1])
        argv = argv[2:]
    PROGRAMS[argv[0]](*argv[1:])


if __name__ == "__main__":
    main(sys.argv[1:])
