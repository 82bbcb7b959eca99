"""The store contract as a test suite that every back-end runs: subclass :class:`StoreSuite` once per back-end.

    from features.testing import StoreSuite

    class TestMyBackend(StoreSuite):
        suffix = ".mine"                  # the suffix your back-end registers
        imports = ("mypackage.backend",)  # modules child processes import to register it

        def data_regions(self, path):     # where the raw frame bytes lie, for the flipped-byte test
            ...

Every test runs on real files in pytest's ``tmp_path``: round trips of random shapes and dtypes,
resume and exactly-once, failures and counts, locks held by other processes, readers racing a
compacting writer, ``kill -9`` at random points (marked ``slow``), and reads on a read-only file
system that must leave every byte as it was. Child processes run ``features.testing_children``
with the same ``features`` the tests import. Needs pytest and hypothesis (the test extras).
"""
from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import features
from features import StoreError, StoreLockedError, open_store
from features.lock import StaleLockWarning
from features.provenance import Provenance

# The folder that holds the features package in use: children import the same one.
_ROOT = str(Path(features.__file__).resolve().parents[1])


def provenance(dtype: str = "float16", dim: int = 8, encoder: str = "test:random") -> Provenance:
    return Provenance(encoder=encoder, manifest_hash="a" * 64, dtype=dtype, dim=dim, host="testhost", created="2026-01-01")


def random_arrays(seed: int, n: int, dim: int, layers: int | None = None) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    out = {}
    for i in range(n):
        t = int(rng.integers(1, 30))
        shape = (t, dim) if layers is None else (layers, t, dim)
        out[f"utt{i:03d}"] = rng.standard_normal(shape).astype(np.float32)
    return out


def snapshot(root: Path) -> dict[str, tuple[int, int, bytes]]:
    """Every file and directory under ``root``: mtime, size and (files) content."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            st = p.lstat()
            out[str(p.relative_to(root))] = (st.st_mtime_ns, st.st_size, p.read_bytes() if p.is_file() else b"")
    return out


def wait_for_files(folder: Path, pattern: str, count: int, procs: list[subprocess.Popen], timeout: float = 120.0) -> None:
    """Return once ``count`` files match ``pattern`` in ``folder`` (a barrier children reach by creating one each)."""
    deadline = time.monotonic() + timeout
    while len(list(folder.glob(pattern))) < count:
        for proc in procs:
            if proc.poll() is not None:
                raise AssertionError(f"a child exited ({proc.returncode}) before the barrier: {proc.stderr.read() if proc.stderr else ''}")
        if time.monotonic() > deadline:
            raise AssertionError(f"only {len(list(folder.glob(pattern)))} of {count} children reached the barrier in {timeout} s")
        time.sleep(0.005)


class StoreSuite:
    """Subclasses set ``suffix`` (and ``imports``, ``data_regions``); every test runs on a fresh store of that back-end."""

    suffix: ClassVar[str]
    #: Modules a child process imports before it opens a store, so that the back-end is registered there.
    imports: ClassVar[tuple[str, ...]] = ()

    def child(self, *args: str) -> list[str]:
        """The command line of a ``features.testing_children`` program."""
        flags = [flag for module in self.imports for flag in ("--import", module)]
        return [sys.executable, "-m", "features.testing_children", *flags, *args]

    def child_env(self) -> dict[str, str]:
        return os.environ | {"PYTHONPATH": os.pathsep.join(p for p in (_ROOT, os.environ.get("PYTHONPATH")) if p)}

    def spawn(self, *args: str) -> subprocess.Popen:
        return subprocess.Popen(self.child(*args), env=self.child_env(), stderr=subprocess.PIPE, text=True)

    @pytest.fixture
    def path(self, tmp_path) -> str:
        return str(tmp_path / f"store{self.suffix}")

    def write(self, path, arrays, *, name="audio", prov=None, layers=None, every=4, part=None):
        prov = prov or provenance()
        with open_store(path, "a") as store:
            with store.writer(name, prov, frame_rate=50.0, layers=layers, part=part) as w:
                for i, (utt_id, array) in enumerate(arrays.items()):
                    w.write(utt_id, array)
                    if i % every == every - 1:
                        w.commit()

    # -- round trip

    @settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.differing_executors])
    @given(
        seed=st.integers(0, 2**16),
        n=st.integers(1, 12),
        dim=st.integers(1, 9),
        layers=st.one_of(st.none(), st.integers(1, 3)),
        dtype=st.sampled_from(["float16", "float32"]),
        every=st.integers(1, 5),
    )
    def test_round_trip(self, tmp_path_factory, seed, n, dim, layers, dtype, every):
        path = str(tmp_path_factory.mktemp("rt") / f"s{self.suffix}")
        arrays = random_arrays(seed, n, dim, layers)
        prov = provenance(dtype, dim)
        self.write(path, arrays, prov=prov, layers=layers, every=every)
        with open_store(path) as store:
            fs = store["audio"]
            assert fs.ids == list(arrays)
            everything = fs.read_all()
            subset = list(arrays)[::-2]
            some = fs.read_all(subset)
            shuffled = random.Random(seed).sample(list(arrays), n)
            everything_shuffled = fs.read_all(shuffled)
            assert everything_shuffled.ids == shuffled
            for i, utt_id in enumerate(shuffled):
                assert np.array_equal(everything_shuffled[i], arrays[utt_id].astype(dtype))
            for utt_id, array in arrays.items():
                expected = array.astype(dtype)
                got = fs.read(utt_id)
                assert got.dtype == np.dtype(dtype) and got.shape == expected.shape
                assert np.array_equal(got, expected)
                assert np.array_equal(everything.get(utt_id), expected)
            for i, utt_id in enumerate(subset):
                assert np.array_equal(some[i], arrays[utt_id].astype(dtype))
            assert list(everything.lengths) == [a.shape[-2] for a in arrays.values()]
            info = fs.info
            assert (info.count, info.dim, info.layers, info.dtype, info.frame_rate) == (n, dim, layers, dtype, 50.0)
            assert info.nbytes == sum(a.size for a in arrays.values()) * np.dtype(dtype).itemsize
            assert info.provenance == prov and info.identity == prov.identity()
            assert len(fs.segments) == 1, "a closed writer leaves one segment per part"

    def test_unknown_set_names_the_sets(self, path):
        self.write(path, random_arrays(0, 2, 8))
        with open_store(path) as store:
            with pytest.raises(StoreError, match=r"no feature set 'text' in .*; sets there: 'audio'"):
                store["text"]
            assert "audio" in store and "text" not in store

    def test_read_only_store_refuses_writers(self, path):
        self.write(path, random_arrays(0, 2, 8))
        with open_store(path) as store, pytest.raises(StoreError, match="open read-only"):
            store.writer("audio", provenance())

    def test_missing_store(self, tmp_path):
        with pytest.raises(StoreError, match="no .* feature store at"):
            open_store(str(tmp_path / f"absent{self.suffix}"))

    def test_names_that_could_escape_the_store_are_refused(self, path):
        with open_store(path, "a") as store:
            for bad in ("../x", "a/b", ".hidden", ""):
                with pytest.raises(StoreError, match=r"invalid set name .*: use 1-128 letters"):
                    store.writer(bad, provenance())
            with pytest.raises(StoreError, match=r"invalid part name '\.\.': use 1-128 letters"):
                store.writer("audio", provenance(), part="..")

    def test_bad_shapes_and_values_name_the_utterance(self, path):
        with open_store(path, "a") as store, store.writer("audio", provenance()) as w:
            with pytest.raises(StoreError, match=r"utterance 'x': set 'audio' stores arrays of shape \(T, 8\), got \(3, 7\)"):
                w.write("x", np.zeros((3, 7)))
            with pytest.raises(StoreError, match="utterance 'big': 1 values are NaN or infinite once stored as float16"):
                w.write("big", np.array([[1e6] + [0.0] * 7]))

    # -- resume, exactly once, failures

    def test_resume_skips_done_and_refuses_duplicates(self, path):
        arrays = random_arrays(1, 10, 8)
        first = dict(list(arrays.items())[:6])
        self.write(path, first)
        with open_store(path, "a") as store, store.writer("audio", provenance()) as w:
            assert w.done == set(first)
            with pytest.raises(StoreError, match="utterance 'utt000' is already committed to set 'audio'"):
                w.write("utt000", arrays["utt000"])
            for utt_id, array in arrays.items():
                if utt_id not in w.done:
                    w.write(utt_id, array)
        with open_store(path) as store:
            fs = store["audio"]
            assert fs.ids == list(arrays)
            assert all(np.array_equal(fs.read(u), a.astype(np.float16)) for u, a in arrays.items())

    def test_uncommitted_writes_are_absent_after_a_crash_without_close(self, path):
        arrays = random_arrays(2, 6, 8)
        proc = self.spawn("crash", path)
        _, stderr = proc.communicate()
        assert proc.returncode == -signal.SIGKILL, stderr
        with open_store(path) as store:
            assert store["audio"].ids == ["a"]
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            with open_store(path, "a") as store, store.writer("audio", provenance()) as w:
                assert w.done == {"a"}
                for utt_id, array in arrays.items():
                    w.write(utt_id, array)
        stale = [w for w in caught if issubclass(w.category, StaleLockWarning)]
        assert len(stale) == 1 and "taking over a stale lock on set 'audio' part 'main'" in str(stale[0].message)
        assert f"pid {proc.pid}, since 20" in str(stale[0].message)
        with open_store(path) as store:
            assert store["audio"].ids == ["a", *arrays]

    def test_readers_see_each_commit_while_a_writer_runs(self, path):
        arrays = random_arrays(3, 9, 8)
        with open_store(path, "a") as store, store.writer("audio", provenance()) as w:
            for i, (utt_id, array) in enumerate(arrays.items()):
                w.write(utt_id, array)
                if i % 2 == 1:
                    w.commit()
            with open_store(path) as reader:
                fs = reader["audio"]
                committed = list(arrays)[:8]
                assert fs.ids == committed and len(fs.segments) == 4
                shuffled = random.Random(0).sample(committed, 8)
                for ragged in (fs.read_all(), fs.read_all(shuffled), fs.read_all(shuffled[:3])):
                    for i, utt_id in enumerate(ragged.ids):
                        assert np.array_equal(ragged[i], arrays[utt_id].astype(np.float16))

    def test_failures_are_recorded_retried_and_cleared(self, path):
        with open_store(path, "a") as store, store.writer("audio", provenance()) as w:
            w.write("ok", np.ones((2, 8)))
            w.fail("bad1", "load", "cannot decode bad1.wav")
            w.fail("bad2", "encode", "CUDA out of memory")
        with open_store(path) as store:
            failures = store["audio"].failures()
            assert [(f.utt_id, f.stage, f.error) for f in failures] == [
                ("bad1", "load", "cannot decode bad1.wav"),
                ("bad2", "encode", "CUDA out of memory"),
            ]
            assert all(f.time.startswith("20") for f in failures)
            assert store["audio"].info.failed == 2
        with open_store(path, "a") as store, store.writer("audio", provenance()) as w:
            assert w.failed == {"bad1", "bad2"}
            w.write("bad1", np.zeros((1, 8)))
            w.fail("bad2", "encode", "still out of memory")
        with open_store(path) as store:
            fs = store["audio"]
            assert [(f.utt_id, f.error) for f in fs.failures()] == [("bad2", "still out of memory")]
            assert set(fs.ids) == {"ok", "bad1"}

    def test_counts_are_kept_per_utterance_and_summed(self, path):
        arrays = random_arrays(0, 6, 8)
        with open_store(path, "a") as store:
            with store.writer("video", provenance()) as w:
                for i, (utt_id, array) in enumerate(arrays.items()):
                    w.write(utt_id, array, {"frames": 16, "frames_without_face": i, "utterances_repeated_frames": 0} if i < 5 else None)
                    if i == 2:
                        w.commit()
                w.write("utt005", arrays["utt005"], {"frames": 16, "utterances_clipped": 1})  # a rewrite replaces
                with pytest.raises(StoreError, match=r"utterance 'x': counts must map names to whole numbers, got 'frames': 1\.5"):
                    w.write("x", arrays["utt000"], {"frames": 1.5})
        with open_store(path) as store:  # closed: compacted into one segment, counts carried per utterance
            fs = store["video"]
            assert len(fs.segments) == 1
            assert fs.info.counts == {  # a name reported only as zeros still shows, as 0
                "frames": 96, "frames_without_face": 0 + 1 + 2 + 3 + 4, "utterances_clipped": 1, "utterances_repeated_frames": 0,
            }
            segment = fs.segments[0]
            assert segment.utterance_counts(segment.ids.index("utt000")) == {
                "frames": 16, "frames_without_face": 0, "utterances_clipped": 0, "utterances_repeated_frames": 0,
            }
            assert fs.info.to_json()["counts"] == fs.info.counts

    def test_identity_mismatch_is_refused(self, path):
        self.write(path, random_arrays(0, 2, 8))
        other = provenance(encoder="test:other")
        with open_store(path, "a") as store:
            with pytest.raises(StoreError, match=r"set 'audio' in .* was made with identity [0-9a-f]{16} \(encoder test:random.*not [0-9a-f]{16} \(encoder test:other.*differences \(set -> this run\): encoder: 'test:random' -> 'test:other'\. "
                               r"Run with the set's settings, use another --set name, or delete the set"):
                store.writer("audio", other)
            with store.writer("audio", provenance()) as w:  # the refusal released the lock
                assert len(w.done) == 2

    def test_delete_set_then_recreate_with_another_identity(self, path):
        self.write(path, random_arrays(0, 3, 8))
        self.write(path, random_arrays(1, 2, 8), name="text")
        with open_store(path, "a") as store:
            with store.writer("audio", provenance(), part="w1"):
                with pytest.raises(StoreLockedError, match="set 'audio' part 'w1' of .* is locked by another writer"):
                    store.delete_set("audio")
            store.delete_set("audio")
            assert store.set_names() == ["text"]
            with store.writer("audio", provenance(encoder="test:other")) as w:
                assert w.done == set()
                w.write("new", np.ones((2, 8)))
        with open_store(path) as store:
            assert store["audio"].ids == ["new"] and store["audio"].info.provenance.encoder == "test:other"
            assert len(store["text"]) == 2
        assert features.verify(path).ok

    # -- locking

    def test_second_writer_is_refused_naming_the_holder(self, path):
        with open_store(path, "a") as store, store.writer("audio", provenance()) as w:
            w.write("a", np.ones((2, 8)))
            lock = Path(store.backend.lock_path("audio", "main"))
            with open_store(path, "a") as other:
                with pytest.raises(StoreLockedError) as caught:
                    other.writer("audio", provenance())
                record = json.loads(lock.read_text())
                assert str(caught.value) == (
                    f"set 'audio' part 'main' of {path} is locked by another writer: host {record['host']}, "
                    f"pid {os.getpid()}, since {record['since']} (lock file {lock}). "
                    "Wait for it to finish, or give this writer another part."
                )
                with other.writer("audio", provenance(), part="w1") as w1:  # other parts are free
                    w1.write("b", np.ones((3, 8)))
        assert not lock.exists()
        with open_store(path) as store:
            assert sorted(store["audio"].ids) == ["a", "b"]
            # The last writer to close finished the store: one finished segment, no parts.
            assert [s.part for s in store["audio"].segments] == [features.base.FINISHED_PART]

    def test_readers_never_fail_while_a_writer_compacts(self, path):
        # A writer in another process commits segments and compacts its part at every close,
        # deleting the segments it covers; a reader listing the part meanwhile must list again,
        # never fail and never see fewer utterances than before.
        rounds = 25
        self.write(path, {"seed": np.ones((2, 8))})
        proc = self.spawn("compact-rounds", path, str(rounds))
        seen, reads = 1, 0
        while proc.poll() is None:
            with open_store(path) as store:
                fs = store["audio"]
                count = len(fs)
                assert count >= seen
                assert len(fs.read_all().ids) == count
            seen, reads = count, reads + 1
        assert proc.returncode == 0, proc.stderr.read()
        assert reads > 0
        with open_store(path) as store:
            assert len(store["audio"]) == 1 + 4 * rounds

    def test_parallel_processes_write_their_own_parts_of_one_new_set(self, path):
        procs = [self.spawn("part", path, f"w{k}") for k in range(3)]
        for proc in procs:
            _, stderr = proc.communicate()
            assert proc.returncode == 0, stderr
        with open_store(path) as store:
            fs = store["audio"]
            assert sorted(fs.ids) == sorted(f"w{k}-{i}" for k in range(3) for i in range(6))
            assert [s.part for s in fs.segments] == [features.base.FINISHED_PART]  # the last to close finished it
            assert np.array_equal(fs.read("w2-3"), np.full((4, 8), 3, dtype=np.float16))
        assert features.verify(path).ok

    def test_processes_creating_one_store_at_once_all_open_it(self, tmp_path):
        # Three `extract run`s started together into one new store: every one must open it.
        for round_ in range(3):
            path, barrier = str(tmp_path / f"new{round_}{self.suffix}"), tmp_path / f"barrier{round_}"
            barrier.mkdir()
            procs = [self.spawn("open", path, str(barrier)) for _ in range(5)]
            wait_for_files(barrier, "ready-*", len(procs), procs)  # every process imported, waiting at the line
            (barrier / "go").touch()
            for proc in procs:
                _, stderr = proc.communicate()
                assert proc.returncode == 0, stderr
            with open_store(path) as store:
                assert store.set_names() == []
            assert not [p.name for p in tmp_path.iterdir() if "lock" in p.name]
            shutil.rmtree(barrier)

    def test_lock_from_another_host_is_not_taken_over(self, path):
        self.write(path, random_arrays(0, 2, 8))
        with open_store(path, "a") as store:
            lock = Path(store.backend.lock_path("audio", "main"))
            lock.parent.mkdir(parents=True)
            lock.write_text(json.dumps({"host": "elsewhere", "pid": 1, "since": "2026-01-01T00:00:00+00:00"}))
            with pytest.raises(StoreLockedError, match=r"locked by a writer on another host: host elsewhere, pid 1.*delete .*\.writer\.lock"):
                store.writer("audio", provenance())

    @pytest.mark.slow
    def test_kill_9_at_random_points_then_resume_equals_an_uninterrupted_run(self, tmp_path):
        # Each write sleeps 0.02 s, a lower bound on its time, and every kill lands within 0.5 s
        # of the store appearing: at most 25 writes fit before a kill, so with 100 utterances the
        # first three kills land on a running writer whatever the machine's speed.
        n, every = 100, 4
        reference = str(tmp_path / f"ref{self.suffix}")
        killed = str(tmp_path / f"killed{self.suffix}")
        for _ in range(2):  # the second run retries the simulated failures
            subprocess.run(self.child("write", reference, str(n), str(every)), env=self.child_env(), check=True)
        rng = random.Random(1234)
        kills = 0
        for attempt in range(40):
            proc = subprocess.Popen(self.child("write", killed, str(n), str(every), "0.02"), env=self.child_env())
            if attempt < 5:
                # Kill somewhere in the writing phase, which starts once the store exists.
                while not os.path.exists(killed) and proc.poll() is None:
                    time.sleep(0.01)
                time.sleep(rng.uniform(0.0, 0.5))
                if proc.poll() is None:
                    proc.send_signal(signal.SIGKILL)
                    kills += 1
            proc.wait()
            if not os.path.exists(killed):
                continue
            with open_store(killed) as store:  # opens and verifies after every kill
                report = features.verify(killed)
                assert report.ok, report.problems
                if "audio" in store and len(store["audio"]) == n:
                    break
        assert kills >= 3
        with open_store(reference) as ref, open_store(killed) as got:
            a, b = ref["audio"], got["audio"]
            assert sorted(a.ids) == sorted(b.ids) == [f"u{i:04d}" for i in range(n)]
            assert len(set(b.ids)) == n
            for utt_id in a.ids:
                assert a.read(utt_id).tobytes() == b.read(utt_id).tobytes()
                assert a.checksum(utt_id) == b.checksum(utt_id)
            assert b.failures() == []

    # -- integrity and read-only sharing

    def data_regions(self, path: str) -> list[tuple[Path, int, int, int]]:
        """(file, byte offset, byte count, first frame) of every stretch of raw frame bytes, in frame order."""
        raise NotImplementedError

    def test_verify_catches_a_flipped_byte_in_the_data(self, path):
        arrays = random_arrays(5, 12, 8)
        self.write(path, arrays)
        assert features.verify(path).ok
        regions = self.data_regions(path)
        rng = random.Random(99)
        file, offset, count, first_frame = rng.choice(regions)
        at = rng.randrange(count)
        with open(file, "r+b") as f:
            f.seek(offset + at)
            byte = f.read(1)
            f.seek(offset + at)
            f.write(bytes([byte[0] ^ 0x5A]))
        frame = first_frame + at // (8 * 2)
        ends = np.cumsum([a.shape[0] for a in arrays.values()])
        victim = list(arrays)[int(np.searchsorted(ends, frame, side="right"))]
        report = features.verify(path)
        assert not report.ok
        assert [(p[0], p[1], p[2]) for p in report.problems] == [("audio", victim, "corrupt")]

    def test_reading_never_writes_even_on_a_read_only_file_system(self, path, tmp_path):
        self.write(path, random_arrays(6, 9, 8))
        with open_store(path, "a") as store, store.writer("audio", provenance(), part="w2") as w:
            w.write("extra", np.ones((4, 8)))
            w.fail("broken", "load", "unreadable wav")
        before = snapshot(tmp_path)
        proc = self.run_read_only(tmp_path, path)
        assert proc.returncode == 0, proc.stderr + proc.stdout
        result = json.loads(proc.stdout.strip().splitlines()[-1])
        assert result["ok"] and result["sets"]["audio"][0] == 10
        assert snapshot(tmp_path) == before

    def run_read_only(self, root: Path, path: str) -> subprocess.CompletedProcess:
        """Run the ``read`` child on ``path`` where ``root`` cannot be written.

        As root, permission bits do not stop writes, so the reader runs in a private
        mount namespace with ``root`` bind-mounted read-only (any write is EROFS);
        otherwise ``chmod -R a-w`` does it.
        """
        reader = self.child("read", path)
        env = self.child_env()
        if os.geteuid() == 0:
            script = 'mount --bind "$1" "$1" && mount -o remount,bind,ro "$1" && shift && exec "$@"'
            return subprocess.run(["unshare", "-m", "sh", "-c", script, "sh", str(root), *reader], capture_output=True, text=True, env=env)
        subprocess.run(["chmod", "-R", "a-w", str(root)], check=True)
        try:
            return subprocess.run(reader, capture_output=True, text=True, env=env)
        finally:
            subprocess.run(["chmod", "-R", "u+w", str(root)], check=True)
