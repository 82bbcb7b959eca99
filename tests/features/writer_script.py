"""A deterministic extraction stand-in, run as a subprocess by the kill -9 tests.

    python writer_script.py STORE N EVERY [SLEEP]

Writes utterances u0000..u{N-1} to set "audio" of STORE, skipping what is
done, committing every EVERY utterances, sleeping SLEEP seconds after each
write (so a kill lands at many points), and failing every 7th utterance once
(it succeeds on the next run), so failures take part in the resume too.
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import features  # noqa: E402
from features.provenance import Provenance  # noqa: E402

PROVENANCE = Provenance(encoder="test:random", manifest_hash="0" * 64, dtype="float16", dim=16)


def utterance(i: int) -> np.ndarray:
    rng = np.random.default_rng(i)
    return rng.standard_normal((int(rng.integers(1, 40)), 16)).astype(np.float32)


def main(store_path: str, n: int, every: int, sleep: float) -> None:
    with features.open_store(store_path, "a") as store:
        with store.writer("audio", PROVENANCE, frame_rate=50.0) as w:
            done, failed = w.done, w.failed
            pending = 0
            for i in range(n):
                utt_id = f"u{i:04d}"
                if utt_id in done:
                    continue
                if i % 7 == 3 and utt_id not in failed:
                    w.fail(utt_id, "encode", f"simulated failure of {utt_id}")
                else:
                    w.write(utt_id, utterance(i))
                pending += 1
                if pending == every:
                    w.commit()
                    pending = 0
                if sleep:
                    time.sleep(sleep)


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4]) if len(sys.argv) > 4 else 0.0)
