"""Bad input never stops a run, a repeating bug does; a killed run loses nothing committed and a rerun finishes it."""
from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import sys
import time
import traceback

import numpy as np
import pytest
import soundfile
from click.testing import CliRunner

import features
from extract.cli import cli
from extract.loop import EncoderBugError
from extract.pipeline import run_extraction
from features import open_store
from manifests import Utterance, read_manifest, write_manifest


@pytest.fixture()
def broken_corpus(tmp_path, wav_writer):
    """Three good utterances and one of each kind of broken input."""
    root = tmp_path / "broken"
    root.mkdir()
    rows = []

    def add(utt_id, audio, text="a perfectly fine sentence"):
        rows.append(Utterance(utt_id=utt_id, label="neu", group="1", audio=audio, text=text))

    for i in range(3):
        wav_writer(root / f"good{i}.wav", 1.0 + i * 0.3, seed=i)
        add(f"good{i}", f"good{i}.wav")
    add("missing", "missing.wav")
    (root / "empty.wav").write_bytes(b"")
    add("empty", "empty.wav")
    whole = wav_writer(root / "whole.wav", 1.5).read_bytes()
    (root / "truncated.wav").write_bytes(whole[: len(whole) // 2])
    add("truncated", "truncated.wav")
    soundfile.write(root / "no_samples.wav", np.zeros(0, dtype=np.float32), 16000)
    add("no_samples", "no_samples.wav")
    (root / "garbage.wav").write_bytes(np.random.default_rng(0).integers(0, 256, 4000, dtype=np.uint8).tobytes())
    add("garbage", "garbage.wav")
    soundfile.write(root / "blip.wav", np.zeros(150, dtype=np.float32), 16000)
    add("blip", "blip.wav")  # decodes, but too short for openSMILE: fails in encode, inside a batch
    wav_writer(root / "notext.wav", 1.0)
    add("notext", "notext.wav", text="")
    return write_manifest(rows, root / "manifest.jsonl")


AUDIO_FAILURES = {
    "missing": ("input", "audio file not found: "),
    "empty": ("decode", "is an empty file (0 bytes)"),
    "truncated": ("decode", "is truncated: its header declares"),
    "no_samples": ("decode", "holds no audio samples"),
    "garbage": ("decode", "cannot decode "),
    "blip": ("encode", "openSMILE gave no usable frames"),
}


def test_broken_audio_is_recorded_and_the_run_goes_on(broken_corpus, tmp_path):
    store_path = str(tmp_path / "b.h5")
    result = CliRunner().invoke(
        cli, ["run", "--modality", "audio", "--manifest", str(broken_corpus), "--store", store_path, "--batch-size", "4"]
    )
    assert result.exit_code == 3, result.output
    lines = result.stdout.splitlines()
    assert lines[0].startswith(f"extracted 4 utterances into set 'audio' of {store_path} in ")
    assert lines[0].endswith(" s (0 already present, 6 failed)")
    assert lines[1] == "6 utterance(s) failed:"
    assert lines[-1] == "fix them and rerun with --retry-failed"
    for utt_id, (stage, fragment) in AUDIO_FAILURES.items():
        assert any(line.startswith(f"  {utt_id} [{stage}] ") and fragment in line for line in lines), (utt_id, result.output)
    with open_store(store_path) as store:
        fs = store["audio"]
        assert sorted(fs.ids) == ["good0", "good1", "good2", "notext"]
        recorded = {f.utt_id: f for f in fs.failures()}
        assert set(recorded) == set(AUDIO_FAILURES)
        for utt_id, (stage, fragment) in AUDIO_FAILURES.items():
            assert recorded[utt_id].stage == stage and fragment in recorded[utt_id].error

    # A rerun leaves earlier failures alone and says so; --retry-failed tries them again.
    again = run_extraction(broken_corpus, store_path, "audio", progress=False)
    assert again.already_complete and (again.done, again.failed_before, again.exit_code) == (0, 6, 3)
    assert {u for u, _, _ in again.failures} == set(AUDIO_FAILURES)
    root = broken_corpus.parent
    (root / "truncated.wav").write_bytes((root / "whole.wav").read_bytes())
    retried = run_extraction(broken_corpus, store_path, "audio", retry_failed=True, progress=False)
    assert (retried.done, retried.failed, retried.skipped) == (1, 5, 4)
    with open_store(store_path) as store:
        assert "truncated" in store["audio"] and "truncated" not in {f.utt_id for f in store["audio"].failures()}
    assert features.verify(store_path).ok


def test_empty_transcript_fails_at_input(broken_corpus, tiny_roberta, tmp_path):
    store_path = str(tmp_path / "t.h5")
    summary = run_extraction(broken_corpus, store_path, "text", encoder=f"hf:{tiny_roberta}", progress=False)
    assert summary.exit_code == 3 and summary.done == len(read_manifest(broken_corpus)) - 1
    assert summary.failures == [("notext", "input", "empty transcript: the manifest row has no text for this utterance")]


def _committed(store_path: str) -> int:
    """Utterances a reader sees in the store now (0 before the first commit)."""
    if not os.path.exists(store_path):
        return 0
    try:
        with open_store(store_path) as store:
            return len(store["audio"]) if "audio" in store else 0
    except features.StoreError:
        return 0  # the store is being created


@pytest.mark.slow
def test_kill_9_then_rerun_equals_an_uninterrupted_run(demo_manifest, tmp_path):
    # Ten copies of each recording under new ids: a run long enough to be killed after its first
    # commits and well before its end, whatever the machine's speed. The barrier is what a reader
    # sees in the store, not a progress line (which tqdm may skip).
    rows = [dataclasses.replace(r, utt_id=f"{r.utt_id}_c{k}") for k in range(10) for r in read_manifest(demo_manifest)]
    manifest = write_manifest(rows, tmp_path / "long.jsonl")
    n = len(rows)
    killed = str(tmp_path / "killed.h5")
    cmd = [sys.executable, "-c", "from extract.cli import cli; cli()", "run", "--modality", "audio",
           "--manifest", str(manifest), "--store", killed, "--batch-size", "1"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while _committed(killed) < 8 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert proc.poll() is None, "the run finished (or failed) before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    with open_store(killed) as store:
        committed = len(store["audio"]) if "audio" in store else 0
    assert 0 < committed < n, committed  # commits every 4 batches: the kill landed mid-run

    with pytest.warns(UserWarning, match="taking over a stale lock"):
        resumed = run_extraction(manifest, killed, "audio", progress=False)
    assert (resumed.done, resumed.skipped, resumed.failed) == (n - committed, committed, 0)
    report = features.verify(killed)
    assert report.ok, report.problems

    whole = str(tmp_path / "whole.h5")
    run_extraction(manifest, whole, "audio", progress=False)
    with open_store(killed) as a, open_store(whole) as b:
        assert sorted(a["audio"].ids) == sorted(b["audio"].ids)
        assert a["audio"].info.identity == b["audio"].info.identity
        for utt_id in b["audio"].ids:
            np.testing.assert_array_equal(a["audio"].read(utt_id), b["audio"].read(utt_id))


def test_one_bad_item_does_not_fail_its_batch(corpus_factory, tmp_path):
    manifest = corpus_factory(tmp_path / "c", n=3)
    rows = read_manifest(manifest)
    soundfile.write(tmp_path / "c" / "blip.wav", np.zeros(150, dtype=np.float32), 16000)
    rows.append(Utterance(utt_id="blip", label="neu", group="1", audio=str(tmp_path / "c" / "blip.wav")))
    write_manifest(rows, manifest)
    # One batch of four: openSMILE's encode raises on the blip, the batch is redone item by item.
    summary = run_extraction(manifest, str(tmp_path / "s.h5"), "audio", batch_size=4, progress=False)
    assert (summary.done, summary.failed) == (3, 1)
    assert summary.failures[0][:2] == ("blip", "encode")


# -- a bug in an encoder is no bad input


def test_the_same_unexpected_error_in_a_row_stops_the_run_keeping_what_was_done(registry, rms_encoders, small_corpus, tmp_path, monkeypatch):
    registry.register(rms_encoders.ShortInputBug)
    store_path = str(tmp_path / "s.h5")
    # Longest first, one per batch: the 7 utterances of 1.2 s or more are done, then the 5 shorter ones hit the bug.
    with pytest.raises(EncoderBugError) as caught:
        run_extraction(small_corpus, store_path, "audio", encoder="rms-buggy", batch_size=1, progress=False)
    message = str(caught.value)
    assert message.startswith("the audio encoder 'rms-buggy' raised TypeError on 3 utterances in a row (Ses01F_utt")
    assert "a bug in the encoder or a library it calls, not bad input, so the run stops" in message
    assert message.endswith("Last error: slice indices must be integers or None or have an __index__ method")
    cause = caught.value.__cause__
    assert isinstance(cause, TypeError)
    frames = [frame.name for frame in traceback.extract_tb(cause.__traceback__)]
    assert "encode" in frames and frames[-1] == "_rms"  # where the bug is
    long = {r.utt_id for r in read_manifest(small_corpus) if soundfile.info(r.audio).duration >= 1.2}
    assert len(long) == 7
    with open_store(store_path) as store:
        assert set(store["audio"].ids) == long and list(store["audio"].failures()) == []

    # Fixed, a rerun does the rest: nothing was recorded as failed.
    monkeypatch.setattr(rms_encoders.ShortInputBug, "encode", rms_encoders.Rms.encode)
    summary = run_extraction(small_corpus, store_path, "audio", encoder="rms-buggy", batch_size=1, progress=False)
    assert (summary.done, summary.skipped, summary.failed) == (5, 7, 0)


def test_an_unexpected_error_once_is_that_utterances_failure(registry, rms_encoders, small_corpus, tmp_path, caplog):
    registry.register(rms_encoders.OneOff)
    summary = run_extraction(small_corpus, str(tmp_path / "s.h5"), "audio", encoder="rms-one-off", batch_size=3, progress=False)
    assert (summary.done, summary.failed, summary.exit_code) == (11, 1, 3)
    assert summary.failures == [("Ses01F_utt004", "encode", "KeyError: 'tempo'")]
    # The traceback is kept in the log, for the one who reads it.
    (record,) = [r for r in caplog.records if r.levelname == "WARNING" and "Ses01F_utt004" in r.getMessage()]
    assert record.exc_info[0] is KeyError


def test_a_machine_problem_stops_the_run_at_once_with_its_message(registry, rms_encoders, small_corpus, tmp_path, monkeypatch):
    """An EmocacheError that is not about one utterance (here: no ffmpeg) is every utterance's problem:
    the run stops with its message at the first one, nothing is recorded as failed, a rerun does all."""
    from extract.media import FfmpegMissingError

    class NoFfmpeg(rms_encoders.Rms):
        kind = "rms-no-ffmpeg"

        def load(self, utt):
            raise FfmpegMissingError("no ffmpeg found: install Debian's ffmpeg or `pip install imageio-ffmpeg`")

    registry.register(NoFfmpeg)
    store_path = str(tmp_path / "s.h5")
    with pytest.raises(FfmpegMissingError, match="no ffmpeg found"):
        run_extraction(small_corpus, store_path, "audio", encoder="rms-no-ffmpeg", batch_size=1, progress=False)
    monkeypatch.setattr(NoFfmpeg, "load", rms_encoders.Rms.load)  # ffmpeg installed
    summary = run_extraction(small_corpus, store_path, "audio", encoder="rms-no-ffmpeg", batch_size=1, progress=False)
    assert (summary.done, summary.failed, summary.failed_before) == (len(read_manifest(small_corpus)), 0, 0)
