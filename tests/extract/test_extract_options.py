"""ExtractOptions: resolved and checked when built, the same after a trip through JSON; importing extract loads no torch."""
from __future__ import annotations

import dataclasses
import json
import subprocess
import sys

import pytest

from emocache.scheduler import SchedulerError
from extract.base import EncoderConfigError
from extract.options import Batching, EncoderOptions, ExtractOptions


def test_defaults_are_resolved_when_built():
    cpu = ExtractOptions("text")
    assert (cpu.encoder, cpu.set_name, cpu.dtype, cpu.store_dtype, cpu.gpu) == ("minilm", "text", "float32", None, False)
    gpu = ExtractOptions("audio", device="cuda:1", set_name="egemaps")
    assert (gpu.encoder, gpu.set_name, gpu.dtype, gpu.gpu) == ("opensmile:ComParE_2016-functionals", "egemaps", "float16", True)


def test_the_same_after_json():
    options = ExtractOptions(
        "video", encoder="timm:tf_efficientnet_b0", device="cuda", dtype="bfloat16", store_dtype="float32",
        batching=Batching(size=8, threads=2, commit_every=1), limit=5, retry_failed=True,
        encoder_options=EncoderOptions(weights="enet.pt", trust_pickle=True, frames=8), scheduler="tcp://node1:8786",
    )
    wire = json.loads(json.dumps(options.to_json()))
    assert ExtractOptions.from_json(wire) == options
    assert wire["encoder_options"] == {"layers": None, "weights": "enet.pt", "trust_pickle": True, "frames": 8, "max_tokens": None}
    assert options.encoder_options.given() == {"weights": "enet.pt", "trust_pickle": True, "frames": 8}
    with pytest.raises(dataclasses.FrozenInstanceError):
        options.limit = 6  # type: ignore[misc]


@pytest.mark.parametrize("build, message", [
    (lambda: ExtractOptions("speech"), "unknown modality 'speech'; choose one of ['audio', 'text', 'video']"),
    (lambda: ExtractOptions("audio", dtype="float64"), "--dtype 'float64': choose one of ['float16', 'bfloat16', 'float32']"),
    (lambda: ExtractOptions("audio", store_dtype="bfloat16"), "--store-dtype 'bfloat16': choose one of ['float16', 'float32']"),
    (lambda: ExtractOptions("audio", limit=0), "--limit 0: must be at least 1"),
    (lambda: Batching(cost=10, size=4), "give either a batch cost (--batch-seconds) or a batch size (--batch-size), not both"),
    (lambda: Batching(size=0), "--batch-size 0: must be at least 1"),
    (lambda: Batching(cost=-1.0), "--batch-seconds -1.0: must be positive"),
    (lambda: Batching(commit_every=0), "commit_every 0: must be at least 1"),
    (lambda: EncoderOptions.from_dict({"layer": "all"}),
     "unknown encoder option(s) ['layer']; the options are ['layers', 'weights', 'trust_pickle', 'frames', 'max_tokens']"),
])
def test_bad_options_are_refused_naming_the_flag(build, message):
    with pytest.raises(EncoderConfigError) as err:
        build()
    assert str(err.value) == message


def test_a_bad_scheduler_is_refused_when_built():
    with pytest.raises(SchedulerError, match=r"^--scheduler 'slurm': use local:N"):
        ExtractOptions("audio", scheduler="slurm")
    assert ExtractOptions("audio", scheduler="local:2").scheduler == "local:2"


def test_importing_extract_and_its_encoders_loads_no_torch():
    # `extract encoders` and `extract --help` import these; torch and the model libraries load with a model only.
    code = (
        "import sys, extract, extract.base, extract.cli, extract.options, extract.pipeline, extract.cluster\n"
        "from extract.base import registered\n"
        "assert {m for m, _ in registered()} == {'audio', 'text', 'video'}\n"
        "print(sorted(m for m in ('torch', 'transformers', 'timm') if m in sys.modules))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
