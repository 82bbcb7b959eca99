"""Feature-store layouts measured on an IEMOCAP-sized workload.

    python bench/store.py [--scale 1.0] [--dir DIR] [--candidates] [--json OUT]

Workload: 7,380 utterances (times ``--scale``) whose durations follow a
lognormal fitted to IEMOCAP (mean 4.55 s, 95th percentile 11 s), clipped to
[0.5 s, 34 s], at 50 frames/s x 768 dims float16 (about 2.5 GB at scale 1).
Values are standard-normal noise, so compression figures are a lower bound on
what real features would give.

For the layouts the store uses (``features`` HDF5 and Zarr, through the public
API: commits every 64 utterances, then the close-time compaction) it prints
bytes on disk over raw float16 bytes, files, write throughput, a full
``read_all`` as a ratio to ``numpy.fromfile`` of the same bytes (both from the
page cache, interleaved, best of 3), and random single-utterance reads per second.
``--candidates`` also measures the layouts that lost (one array per utterance,
chunked, compressed, sharded) the same way with plain h5py/zarr.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shutil
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import features  # noqa: E402
from features.provenance import Provenance  # noqa: E402

N_UTTERANCES = 7380
FRAME_RATE = 50
DIM = 768
MEAN_S, P95_S, MAX_S, MIN_S = 4.55, 11.0, 34.0, 0.5
COMMIT_EVERY = 64


def lengths(n: int, seed: int = 0) -> np.ndarray:
    """Frames per utterance: lognormal with IEMOCAP's mean and 95th percentile, clipped."""
    # mean = exp(mu + s^2/2), p95 = exp(mu + 1.645 s)  =>  s^2/2 - 1.645 s + ln(p95/mean) = 0
    z = 1.6448536269514722
    sigma = z - math.sqrt(z * z - 2 * math.log(P95_S / MEAN_S))
    mu = math.log(MEAN_S) - sigma * sigma / 2
    seconds = np.clip(np.random.default_rng(seed).lognormal(mu, sigma, n), MIN_S, MAX_S)
    return np.maximum(1, np.round(seconds * FRAME_RATE)).astype(np.int64)


def make_data(lens: np.ndarray, seed: int = 1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    total = int(lens.sum())
    data = np.empty((total, DIM), dtype=np.float16)
    step = 1 << 16
    for at in range(0, total, step):
        n = min(step, total - at)
        data[at : at + n] = rng.standard_normal((n, DIM), dtype=np.float32)
    return data


def du(path: Path) -> tuple[int, int]:
    """(bytes allocated on disk, number of files) under ``path`` (a file or a tree)."""
    paths = [path] if path.is_file() else [Path(d) / f for d, _, fs in os.walk(path) for f in fs]
    return sum(p.stat().st_blocks * 512 for p in paths), len(paths)


class Workload:
    def __init__(self, scale: float, root: Path) -> None:
        self.n = max(16, int(round(N_UTTERANCES * scale)))
        self.lens = lengths(self.n)
        self.offsets = np.concatenate([[0], np.cumsum(self.lens)])
        self.data = make_data(self.lens)
        self.ids = [f"utt{i:05d}" for i in range(self.n)]
        self.raw_bytes = self.data.nbytes
        self.root = root
        raw = root / "raw.bin"
        self.data.tofile(raw)
        self.raw_path = raw

    def utterance(self, i: int) -> np.ndarray:
        return self.data[int(self.offsets[i]) : int(self.offsets[i + 1])]

    def versus_fromfile(self, read) -> tuple[float, float, float]:
        """(read s, fromfile s, ratio) with the two interleaved, best of 3 each, so load on a shared machine hits both."""
        read()
        np.fromfile(self.raw_path, dtype=np.float16)
        reads, raws = [], []
        for _ in range(3):
            t = time.perf_counter()
            np.fromfile(self.raw_path, dtype=np.float16)
            raws.append(time.perf_counter() - t)
            t = time.perf_counter()
            read()
            reads.append(time.perf_counter() - t)
        return min(reads), min(raws), min(raws) / min(reads)


def measure_store(work: Workload, suffix: str) -> dict:
    """The layout the store uses, through the public API."""
    path = work.root / f"store{suffix}"
    prov = Provenance.now(encoder="bench:noise", manifest_hash="0" * 64, dtype="float16", dim=DIM)
    t = time.perf_counter()
    with features.open_store(str(path), "a") as store:
        with store.writer("audio", prov, frame_rate=FRAME_RATE) as w:
            for i, utt_id in enumerate(work.ids):
                w.write(utt_id, work.utterance(i))
                if i % COMMIT_EVERY == COMMIT_EVERY - 1:
                    w.commit()
            w.commit()
            commits_s = time.perf_counter() - t
    write_s = time.perf_counter() - t
    disk, files = du(path)  # the writer's close finished the store: it is this one file or tree
    with features.open_store(str(path)) as store:
        fs = store["audio"]
        got = fs.read_all()
        if not np.array_equal(got.data.view(np.uint16), work.data.view(np.uint16)):
            raise SystemExit(f"{suffix}: read_all returned different values")
        del got
        read_s, fromfile_s, ratio = work.versus_fromfile(lambda: fs.read_all())
    rng = np.random.default_rng(7)
    picks = [work.ids[i] for i in rng.integers(0, work.n, 500)]
    with features.open_store(str(path)) as store:
        fs = store["audio"]
        t = time.perf_counter()
        for utt_id in picks:
            fs.read(utt_id)
        random_s = time.perf_counter() - t
    return {
        "layout": f"features {suffix[1:]} (chosen)",
        "disk_over_raw": disk / work.raw_bytes,
        "files": files,
        "commit_MBps": work.raw_bytes / 1e6 / commits_s,
        "write_MBps": work.raw_bytes / 1e6 / write_s,
        "read_all_s": read_s,
        "fromfile_s": fromfile_s,
        "read_all_vs_fromfile": ratio,
        "random_reads_per_s": len(picks) / random_s,
    }


def measure_candidate(work: Workload, name: str, write, read_all, read_one, path: Path) -> dict:
    t = time.perf_counter()
    write(path)
    write_s = time.perf_counter() - t
    disk, files = du(path)
    read_s, fromfile_s, ratio = work.versus_fromfile(lambda: read_all(path))
    rng = np.random.default_rng(7)
    picks = rng.integers(0, work.n, 300)
    t = time.perf_counter()
    read_one(path, picks)
    random_s = time.perf_counter() - t
    shutil.rmtree(path) if path.is_dir() else path.unlink()
    return {
        "layout": name,
        "disk_over_raw": disk / work.raw_bytes,
        "files": files,
        "commit_MBps": None,
        "write_MBps": work.raw_bytes / 1e6 / write_s,
        "read_all_s": read_s,
        "fromfile_s": fromfile_s,
        "read_all_vs_fromfile": ratio,
        "random_reads_per_s": len(picks) / random_s,
    }


def candidates(work: Workload) -> list[dict]:
    import h5py
    import zarr
    from zarr.codecs import ZstdCodec

    out = []
    total = int(work.offsets[-1])

    def h5_per_utt_write(p):
        with h5py.File(p, "w") as f:
            for i, u in enumerate(work.ids):
                f.create_dataset(u, data=work.utterance(i))

    def h5_per_utt_all(p):
        with h5py.File(p, "r") as f:
            out_ = np.empty((total, DIM), np.float16)
            for i, u in enumerate(work.ids):
                f[u].read_direct(out_, dest_sel=np.s_[work.offsets[i] : work.offsets[i + 1]])

    def h5_per_utt_one(p, picks):
        with h5py.File(p, "r") as f:
            for i in picks:
                f[work.ids[i]][()]

    out.append(measure_candidate(work, "hdf5 one dataset per utterance", h5_per_utt_write, h5_per_utt_all,
                                 h5_per_utt_one, work.root / "per_utt.h5"))

    def h5_concat(chunks, **kw):
        def write(p):
            with h5py.File(p, "w") as f:
                f.create_dataset("data", data=work.data, chunks=chunks, **kw)

        def read_all(p):
            with h5py.File(p, "r") as f:
                buf = np.empty((total, DIM), np.float16)
                f["data"].read_direct(buf)

        def read_one(p, picks):
            with h5py.File(p, "r") as f:
                d = f["data"]
                for i in picks:
                    d[work.offsets[i] : work.offsets[i + 1]]

        return write, read_all, read_one

    out.append(measure_candidate(work, "hdf5 concatenated, chunks 256x768", *h5_concat((256, DIM)), work.root / "c256.h5"))
    out.append(measure_candidate(work, "hdf5 concatenated, chunks 256x768, gzip-4 + shuffle",
                                 *h5_concat((256, DIM), compression="gzip", compression_opts=4, shuffle=True),
                                 work.root / "gz.h5"))

    def zarr_concat(chunk, shard=None, compressors=None):
        def write(p):
            g = zarr.create_group(p)
            a = g.create_array("data", shape=(total, DIM), dtype="float16", chunks=(chunk, DIM),
                               shards=None if shard is None else (shard, DIM), compressors=compressors, filters=None)
            a[:] = work.data

        def read_all(p):
            zarr.open_group(p, mode="r")["data"][:]

        def read_one(p, picks):
            a = zarr.open_group(p, mode="r")["data"]
            for i in picks:
                a[work.offsets[i] : work.offsets[i + 1]]

        return write, read_all, read_one

    for chunk in (4096, 16384, 43690):
        out.append(measure_candidate(work, f"zarr concatenated, chunks {chunk}x768", *zarr_concat(chunk),
                                     work.root / f"z{chunk}.zarr"))
    out.append(measure_candidate(work, "zarr concatenated, inner chunks 256x768 in shards 32768x768",
                                 *zarr_concat(256, 32768), work.root / "zshard.zarr"))
    out.append(measure_candidate(work, "zarr concatenated, chunks 43690x768, zstd",
                                 *zarr_concat(43690, compressors=ZstdCodec(level=3)), work.root / "zstd.zarr"))

    def zarr_per_utt_write(p):
        g = zarr.create_group(p)
        for i, u in enumerate(work.ids):
            x = work.utterance(i)
            g.create_array(u, shape=x.shape, dtype="float16", chunks=x.shape, compressors=None, filters=None)[:] = x

    def zarr_per_utt_all(p):
        g = zarr.open_group(p, mode="r")
        buf = np.empty((total, DIM), np.float16)
        for i, u in enumerate(work.ids):
            buf[work.offsets[i] : work.offsets[i + 1]] = g[u][:]

    def zarr_per_utt_one(p, picks):
        g = zarr.open_group(p, mode="r")
        for i in picks:
            g[work.ids[i]][:]

    out.append(measure_candidate(work, "zarr one array per utterance", zarr_per_utt_write, zarr_per_utt_all,
                                 zarr_per_utt_one, work.root / "per_utt.zarr"))
    return out


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=1.0, help="fraction of IEMOCAP's 7,380 utterances (default 1)")
    parser.add_argument("--dir", default=None, help="where to write the stores (default: a temporary directory)")
    parser.add_argument("--candidates", action="store_true", help="also measure the layouts that were not chosen")
    parser.add_argument("--only", choices=["h5", "zarr"], default=None, help="measure one chosen back-end only")
    parser.add_argument("--json", default=None, help="also write the figures as JSON here")
    args = parser.parse_args()
    warnings.filterwarnings("ignore", module="zarr")
    if args.dir is not None:
        Path(args.dir).mkdir(parents=True, exist_ok=True)
    root = Path(tempfile.mkdtemp(prefix="bench-store-", dir=args.dir))
    try:
        work = Workload(args.scale, root)
        seconds = work.lens / FRAME_RATE
        print(
            f"workload: {work.n} utterances (scale {args.scale}), mean {seconds.mean():.2f} s, "
            f"p95 {np.percentile(seconds, 95):.1f} s, max {seconds.max():.1f} s, {int(work.offsets[-1])} frames x {DIM} "
            f"float16 = {work.raw_bytes / 1e9:.2f} GB; machine: {os.cpu_count()} cores, {cpu_model()}"
        )
        rows = []
        for suffix in (".h5", ".zarr"):
            if args.only and suffix[1:] != args.only:
                continue
            rows.append(measure_store(work, suffix))
        if args.candidates:
            rows.extend(candidates(work))
        header = (f"{'layout':62s} {'disk/raw':>8s} {'files':>6s} {'commit MB/s':>11s} {'write MB/s':>10s} "
                  f"{'read_all s':>10s} {'fromfile s':>10s} {'ratio':>6s} {'random/s':>8s}")
        print(header)
        for row in rows:
            commit = "-" if row["commit_MBps"] is None else f"{row['commit_MBps']:.0f}"
            print(
                f"{row['layout']:62s} {row['disk_over_raw']:8.3f} {row['files']:6d} {commit:>11s} {row['write_MBps']:10.0f} "
                f"{row['read_all_s']:10.2f} {row['fromfile_s']:10.2f} {row['read_all_vs_fromfile']:6.2f} "
                f"{row['random_reads_per_s']:8.0f}"
            )
        print("commit MB/s: writes with a durable commit every 64 utterances; write MB/s: the same plus the "
              "close-time compaction; ratio: numpy.fromfile time / read_all time, interleaved, best of 3, page cache")
        if args.json:
            Path(args.json).write_text(json.dumps({"scale": args.scale, "n": work.n, "raw_bytes": work.raw_bytes,
                                                   "rows": rows}, indent=1))
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
