"""The `extract` command line: exact messages, JSON output, help."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from extract.cli import cli


def _run(*args):
    return CliRunner().invoke(cli, list(args))


def test_encoders_lists_each_modality_with_its_default():
    result = _run("encoders")
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0] == "audio: hf, opensmile (default: opensmile:ComParE_2016-functionals)"
    assert lines[1] == "text: hf, minilm (default: minilm)"
    assert lines[2].startswith("video: ") and "hog" in lines[2] and lines[2].endswith("(default: hog)")


def test_encoders_json():
    table = json.loads(_run("encoders", "--json").output)
    assert table["audio"] == {"default": "opensmile:ComParE_2016-functionals", "encoders": ["hf", "opensmile"]}
    assert table["text"] == {"default": "minilm", "encoders": ["hf", "minilm"]}
    assert "hog" in table["video"]["encoders"]


@pytest.mark.parametrize("command", [[], ["run"], ["encoders"]])
def test_help(command):
    result = _run(*command, "--help")
    assert result.exit_code == 0 and "Usage:" in result.output


def test_modality_is_a_choice(small_corpus, tmp_path):
    result = _run("run", "--modality", "speech", "--manifest", str(small_corpus), "--store", str(tmp_path / "s.h5"))
    assert result.exit_code == 2
    assert "Invalid value for '--modality': 'speech' is not one of 'audio', 'text', 'video'." in result.output


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--encoder", "wav2vec:x"], "Error: unknown audio encoder 'wav2vec' in 'wav2vec:x'; registered: ['hf', 'opensmile']"),
        (["--max-tokens", "5"], "Error: --max-tokens does not apply to the audio encoder 'opensmile:ComParE_2016-functionals' (options it takes: none)"),
        (["--batch-size", "4", "--batch-seconds", "10"], "Error: give either a batch cost (--batch-seconds) or a batch size (--batch-size), not both"),
        (["--scheduler", "slurm"], "Error: --scheduler 'slurm': use local:N (N worker processes here) or tcp://HOST:PORT (a running scheduler)"),
        (["--limit", "0"], "Error: --limit 0: must be at least 1"),
        (["--encoder", "hf:/no/such/model"], "Error: no model folder at /no/such/model: pass a folder written by save_pretrained (hf:/path/to/model)"),
    ],
)
def test_bad_arguments_give_one_clear_line(small_corpus, tmp_path, extra, message):
    result = _run("run", "--modality", "audio", "--manifest", str(small_corpus), "--store", str(tmp_path / "s.h5"), *extra)
    assert result.exit_code == 1
    assert result.output.strip() == message


def test_an_encoder_note_is_printed_once_under_the_summary(small_corpus, tmp_path):
    """The installed command, in a process of its own: under pytest a logged warning would not show."""
    command = [str(Path(sys.executable).parent / "extract"), "run", "--modality", "text", "--manifest", str(small_corpus),
               "--store", str(tmp_path / "s.h5"), "--max-tokens", "3"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    both = result.stdout + result.stderr
    assert both.count("were truncated to their first 3 (--max-tokens)") == 1
    lines = result.stdout.splitlines()
    assert lines[0].startswith("extracted ") and lines[1].startswith("warning: ") and "truncated" in lines[1]


def test_missing_manifest(tmp_path):
    missing = tmp_path / "none.jsonl"
    result = _run("run", "--modality", "text", "--manifest", str(missing), "--store", str(tmp_path / "s.h5"))
    assert result.exit_code == 1
    assert result.output.strip() == (
        f"Error: {missing}: no such manifest file; write one with `manifests iemocap`, `manifests csv` or `manifests demo`"
    )


def test_run_twice_says_it_skips(small_corpus, tmp_path):
    store = str(tmp_path / "s.zarr")
    limited = _run("run", "--modality", "audio", "--manifest", str(small_corpus), "--store", store, "--set", "egemaps", "--limit", "5")
    assert limited.exit_code == 0, limited.output
    assert limited.stdout.splitlines()[1] == "7 utterance(s) of the manifest still to extract (--limit); run again to go on"
    first = _run("run", "--modality", "audio", "--manifest", str(small_corpus), "--store", store, "--set", "egemaps")
    assert first.exit_code == 0, first.output
    assert first.stdout.startswith(f"extracted 7 utterances into set 'egemaps' of {store} in ")
    assert first.stdout.rstrip().endswith(" s (5 already present, 0 failed)")
    second = _run("run", "--modality", "audio", "--manifest", str(small_corpus), "--store", store, "--set", "egemaps")
    assert second.exit_code == 0
    assert second.stdout == f"set 'egemaps' in {store} is already complete for this manifest: 12 utterances present, nothing to do\n"
    third = json.loads(_run("run", "--modality", "audio", "--manifest", str(small_corpus), "--store", store, "--set", "egemaps", "--json").stdout)
    assert third["already_complete"] is True and third["skipped"] == 12 and third["exit_code"] == 0 and third["left"] == 0


def test_cuda_without_a_gpu_is_refused_up_front(small_corpus, tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a CUDA device")
    result = _run("run", "--modality", "audio", "--manifest", str(small_corpus), "--store", str(tmp_path / "s.h5"), "--device", "cuda")
    assert result.exit_code == 1
    assert result.output.strip() == "Error: --device cuda: torch sees no CUDA device on this machine; use --device cpu"


@pytest.mark.parametrize("device", ["gpu", "cuda:x"])
def test_a_device_name_torch_would_not_know_is_refused_before_anything_is_written(small_corpus, tmp_path, device):
    """Even for encoders that never read the device (openSMILE), which would have recorded it in the set."""
    result = _run("run", "--modality", "audio", "--manifest", str(small_corpus), "--store", str(tmp_path / "s.h5"), "--device", device)
    assert result.exit_code == 1
    assert result.output.strip() == f"Error: device {device!r} is not one of cpu, cuda, cuda:N"
    assert list(tmp_path.iterdir()) == []
