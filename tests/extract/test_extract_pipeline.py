"""The extraction pipeline into real HDF5 and Zarr stores."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner

import features
from extract.base import create_encoder
from extract.cli import cli
from extract.pipeline import run_extraction
from features import open_store
from manifests import manifest_hash, read_manifest


def _direct(encoder, rows):
    with torch.inference_mode():
        return {r.utt_id: encoder.encode([encoder.load(r)])[0] for r in rows}


@pytest.mark.parametrize("suffix", [".h5", ".zarr"])
def test_opensmile_into_store_then_rerun_skips(small_corpus, tmp_path, suffix):
    store_path = str(tmp_path / f"feats{suffix}")
    summary = run_extraction(small_corpus, store_path, "audio", encoder="opensmile:eGeMAPSv02", progress=False, batch_size=4)
    assert (summary.done, summary.skipped, summary.failed, summary.exit_code) == (12, 0, 0, 0)
    assert summary.set_name == "audio" and summary.encoder == "opensmile:eGeMAPSv02"
    assert summary.encode_seconds > 0 and summary.media_seconds > 0
    rows = read_manifest(small_corpus)
    expected = _direct(create_encoder("audio", "opensmile:eGeMAPSv02"), rows)
    with open_store(store_path) as store:
        fs = store["audio"]
        info = fs.info
        assert (info.dim, info.dtype, info.frame_rate, info.layers, info.count) == (25, "float16", 100.0, None, 12)
        prov = info.provenance
        assert prov.manifest_hash == manifest_hash(rows) and prov.encoder == "opensmile:eGeMAPSv02"
        assert prov.preprocessing["sample_rate"] == 16000 and prov.weights_sha256 is None
        assert info.identity == summary.identity == prov.identity()
        for utt_id, want in expected.items():
            got = fs.read(utt_id)
            assert got.dtype == np.float16 and got.shape == want.shape
            np.testing.assert_array_equal(got, want.astype(np.float16))
    assert features.verify(store_path).ok

    again = run_extraction(small_corpus, store_path, "audio", encoder="opensmile:eGeMAPSv02", progress=False)
    assert again.already_complete and (again.done, again.skipped, again.failed) == (0, 12, 0)
    assert again.identity == summary.identity


def test_limit_then_resume(small_corpus, tmp_path):
    store_path = str(tmp_path / "t.h5")
    first = run_extraction(small_corpus, store_path, "audio", limit=5, progress=False)
    assert (first.done, first.skipped, first.already_complete) == (5, 0, False)
    rest = run_extraction(small_corpus, store_path, "audio", progress=False)
    assert (rest.done, rest.skipped) == (7, 5)
    with open_store(store_path) as store:
        assert sorted(store["audio"].ids) == sorted(r.utt_id for r in read_manifest(small_corpus))


def test_hf_audio_all_layers_through_the_cli(tiny_w2v, small_corpus, tmp_path):
    store_path = str(tmp_path / "w2v.zarr")
    result = CliRunner().invoke(
        cli,
        ["run", "--modality", "audio", "--manifest", str(small_corpus), "--store", store_path, "--set", "w2v",
         "--encoder", f"hf:{tiny_w2v}", "--layers", "all", "--batch-seconds", "4", "--json"],
    )
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output)
    assert (summary["done"], summary["failed"], summary["set_name"], summary["encoder"]) == (12, 0, "w2v", "hf:tiny-w2v")
    encoder = create_encoder("audio", f"hf:{tiny_w2v}", options={"layers": "all"})
    rows = read_manifest(small_corpus)
    with open_store(store_path) as store:
        fs = store["w2v"]
        assert (fs.info.dim, fs.info.layers, fs.info.frame_rate) == (32, 3, 800.0)
        prov = fs.info.provenance
        assert (prov.layers, prov.weights_sha256) == ("all", encoder.weights_sha256())
        for utt in rows[:4]:
            stored = fs.read(utt.utt_id)
            assert stored.shape == (3, encoder.length(utt), 32)
        ragged = fs.read_all()
        assert ragged.data.shape[0] == 3 and len(ragged) == 12


def test_text_minilm_float32(small_corpus, tmp_path):
    store_path = str(tmp_path / "text.h5")
    summary = run_extraction(small_corpus, store_path, "text", store_dtype="float32", batch_size=5, progress=False)
    assert (summary.done, summary.failed, summary.encoder) == (12, 0, "minilm")
    rows = read_manifest(small_corpus)
    encoder = create_encoder("text")
    expected = _direct(encoder, rows[:4])
    with open_store(store_path) as store:
        fs = store["text"]
        assert (fs.info.dim, fs.info.dtype, fs.info.frame_rate) == (384, "float32", None)
        assert fs.info.provenance.preprocessing["special_tokens"] == "kept"
        for utt_id, want in expected.items():
            np.testing.assert_allclose(fs.read(utt_id), want, atol=1e-4)


def test_hf_text_tiny_roberta(tiny_roberta, small_corpus, tmp_path):
    store_path = str(tmp_path / "rob.h5")
    summary = run_extraction(
        small_corpus, store_path, "text", encoder=f"hf:{tiny_roberta}", set_name="roberta", progress=False
    )
    # model_max_length is 16: the longest sentence is cut, and the summary says so.
    assert summary.done == 12 and summary.notes and "truncated to their first 16" in summary.notes[0]
    with open_store(store_path) as store:
        fs = store["roberta"]
        assert fs.info.dim == 24 and max(fs.read(u).shape[0] for u in fs.ids) == 16
        # The store's per-utterance record agrees with the run's note.
        truncated = int(summary.notes[0].split()[0])
        assert fs.info.counts["utterances_truncated"] == truncated > 0 and fs.info.counts["tokens_dropped"] >= truncated


def test_demo_corpus_both_default_modalities_verify(demo_manifest, tmp_path):
    store_path = str(tmp_path / "demo.zarr")
    audio = run_extraction(demo_manifest, store_path, "audio", progress=False)
    text = run_extraction(demo_manifest, store_path, "text", progress=False)
    n = len(read_manifest(demo_manifest))
    assert (audio.done, text.done, audio.failed, text.failed) == (n, n, 0, 0)
    report = features.verify(store_path)
    assert report.ok, report.problems
    with open_store(store_path) as store:
        assert store.set_names() == ["audio", "text"]


def test_the_default_audio_set_is_compare_functionals_stored_in_float32(small_corpus, tmp_path):
    # ComParE's values exceed float16's range: the encoder's default store dtype is float32.
    summary = run_extraction(small_corpus, str(tmp_path / "s.h5"), "audio", limit=3, progress=False)
    assert (summary.encoder, summary.done, summary.failed) == ("opensmile:ComParE_2016-functionals", 3, 0)
    with open_store(str(tmp_path / "s.h5")) as store:
        info = store["audio"].info
        assert (info.dim, info.dtype, info.frame_rate) == (6373, "float32", None)
        assert all(store["audio"].read(u).shape == (1, 6373) for u in store["audio"].ids)


def test_another_encoder_into_the_same_set_is_refused(small_corpus, tmp_path):
    store_path = str(tmp_path / "s.h5")
    run_extraction(small_corpus, store_path, "audio", limit=2, progress=False)
    result = CliRunner().invoke(
        cli,
        ["run", "--modality", "audio", "--manifest", str(small_corpus), "--store", store_path, "--encoder", "opensmile:ComParE_2016"],
    )
    assert result.exit_code == 1
    assert result.output.startswith("Error: ") and "'audio'" in result.output


def test_compute_dtype_is_part_of_a_model_sets_identity(tiny_roberta, small_corpus, tmp_path):
    store_path = str(tmp_path / "s.h5")
    run_extraction(small_corpus, store_path, "text", encoder=f"hf:{tiny_roberta}", dtype="float32", limit=3, progress=False)
    with open_store(store_path) as store:
        assert store["text"].info.provenance.preprocessing["compute_dtype"] == "float32"
    # Resuming in another dtype (a GPU's float16 after a CPU's float32) would mix values in one set.
    result = CliRunner().invoke(
        cli,
        ["run", "--modality", "text", "--manifest", str(small_corpus), "--store", store_path,
         "--encoder", f"hf:{tiny_roberta}", "--dtype", "bfloat16"],
    )
    assert result.exit_code == 1
    assert "differences (set -> this run): preprocessing.compute_dtype: 'float32' -> 'bfloat16'." in result.output


def test_compute_dtype_is_not_part_of_an_opensmile_sets_identity(small_corpus, tmp_path):
    store_path = str(tmp_path / "s.h5")
    run_extraction(small_corpus, store_path, "audio", dtype="float32", limit=3, progress=False)
    summary = run_extraction(small_corpus, store_path, "audio", dtype="bfloat16", progress=False)
    assert (summary.skipped, summary.done) == (3, 9)
    with open_store(store_path) as store:
        assert "compute_dtype" not in store["audio"].info.provenance.preprocessing


@pytest.mark.skipif(not __import__("sys").platform.startswith("linux"), reason="per-thread nice values are Linux's")
def test_load_threads_run_below_the_encoders_priority():
    import os
    import threading
    from concurrent.futures import ThreadPoolExecutor

    from extract.loop import LOAD_NICENESS, _lower_priority

    def nice() -> int:
        return os.getpriority(os.PRIO_PROCESS, threading.get_native_id())

    before = nice()
    with ThreadPoolExecutor(1, initializer=_lower_priority) as pool:
        loader = pool.submit(nice).result()
    assert nice() == before  # the encoder's thread keeps its priority
    assert loader == min(19, before + LOAD_NICENESS)
