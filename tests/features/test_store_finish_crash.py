"""A finish killed at any rename, unlink, fsync or delete loses, duplicates or changes nothing.

The store starts finished with some utterances, then a second part adds more (``finish=False``);
a subprocess finishes it and kills itself (SIGKILL) at its k-th file-system event, for every k
until a finish runs to the end. After each kill, a reader sees exactly what was written, verify
passes, and the next writer cleans up and finishes the store into the one path it was given.
Every one of the first events is tried, then a spread of the rest (a Zarr finish fsyncs every file).
"""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import features
from features import open_store
from features.provenance import Provenance

ROOT = Path(__file__).resolve().parents[2]
PROV = Provenance(encoder="test:finish", manifest_hash="7" * 64, dtype="float16", dim=3, host="h", created="2026-01-01")

KILLER = """
import os, shutil, signal, sys
sys.path.insert(0, %(root)r)
import features
target, count = int(sys.argv[2]), [0]
def counted(fn):
    def wrapper(*args, **kwargs):
        count[0] += 1
        if count[0] == target:
            os.kill(os.getpid(), signal.SIGKILL)
        return fn(*args, **kwargs)
    return wrapper
for name in ("replace", "rename", "unlink", "fsync", "mkdir"):
    setattr(os, name, counted(getattr(os, name)))
shutil.rmtree = counted(shutil.rmtree)
with features.open_store(sys.argv[1], "a") as store:
    store.finish()
print("finished after", count[0], "events")
"""


def start(path: str) -> dict[str, bytes]:
    values = {}
    with open_store(path, "a") as store:
        with store.writer("audio", PROV, frame_rate=10.0) as w:
            for i in range(3):
                values[f"a{i}"] = np.full((i + 2, 3), i, dtype=np.float16)
                w.write(f"a{i}", values[f"a{i}"])
            w.fail("bad", "load", "broken")
        with store.writer("audio", PROV, part="more", finish=False) as w:
            for i in range(2):
                values[f"b{i}"] = np.full((i + 1, 3), 10 + i, dtype=np.float16)
                w.write(f"b{i}", values[f"b{i}"])
                w.commit()
        with store.writer("text", PROV, finish=False) as w:
            values["t0"] = np.ones((4, 3), dtype=np.float16)
            w.write("t0", values["t0"])
    return {k: v.tobytes() for k, v in values.items()}


def read(path: str) -> dict[str, bytes]:
    with open_store(path) as store:
        out = {}
        for name in store.set_names():
            fs = store[name]
            assert len(set(fs.ids)) == len(fs.ids)
            out.update({u: fs.read(u).tobytes() for u in fs.ids})
            assert [f.utt_id for f in fs.failures()] == (["bad"] if name == "audio" else [])
        return out


def finish(path: str, kill_at: int) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", KILLER % {"root": str(ROOT)}, path, str(kill_at)], capture_output=True, text=True)


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::features.lock.StaleLockWarning")  # the killed finisher's lock, taken over
@pytest.mark.parametrize("suffix", [".h5", ".zarr"])
def test_a_finish_killed_at_any_event_loses_nothing(tmp_path, suffix):
    pristine = tmp_path / "pristine"
    pristine.mkdir()
    written = start(str(pristine / f"s{suffix}"))
    dry = tmp_path / "dry"
    shutil.copytree(pristine, dry, symlinks=True)
    proc = finish(str(dry / f"s{suffix}"), 0)
    assert proc.returncode == 0, proc.stderr
    events = int(proc.stdout.split()[2])
    assert events > 5 and read(str(dry / f"s{suffix}")) == written
    kills = sorted(set(range(1, 13)) | {int(x) for x in np.linspace(13, events, 12)})
    for k in kills:
        work = tmp_path / f"k{k}"
        shutil.copytree(pristine, work, symlinks=True)
        path = str(work / f"s{suffix}")
        proc = finish(path, k)
        if proc.returncode == 0:
            assert "finished after" in proc.stdout
            continue
        assert proc.returncode == -9, proc.stderr
        assert read(path) == written, f"killed at event {k}"
        assert features.verify(path).ok, f"killed at event {k}"
        with open_store(path, "a") as store:  # the next writer cleans up; its close finishes the store
            store.writer("audio", PROV).close()
        assert read(path) == written
        assert sorted(p.name for p in work.iterdir()) == [Path(path).name], f"killed at event {k}"
        shutil.rmtree(work)
