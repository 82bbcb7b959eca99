"""TrainConfig: presets, overrides, JSON round trip, errors that name the choices."""
from __future__ import annotations

import json

import pytest

from train.config import ConfigError, TrainConfig, normalise_modalities, parse_sets
from train.presets import PRESETS, preset


def test_paper_preset_holds_the_papers_values():
    cfg = PRESETS["paper"]
    assert (cfg.optimizer, cfg.lr, cfg.batch_size, cfg.epochs, cfg.lam) == ("adam", 1e-5, 2, 50, 1.0)
    assert (cfg.model.n_blocks, cfg.model.d, cfg.model.frame_pool, cfg.model.modalities) == (3, 256, 1, ("a", "t", "v"))
    # Nothing of ours: mean pooling, no audio branch; one torch thread (folds run side by side).
    assert (cfg.model.pooling, cfg.model.audio_branch, cfg.num_threads) == ("mean", "none", 1)


def test_overrides_and_json_round_trip():
    cfg = preset("fast", d=32, modalities="V+A", lam=0.1, epochs=None, sets=parse_sets("v=faces"))
    assert cfg.model.d == 32 and cfg.model.modalities == ("a", "v") and cfg.lam == 0.1
    assert cfg.epochs == PRESETS["fast"].epochs  # None leaves the preset's value
    assert cfg.sets == {"a": "audio", "t": "text", "v": "faces"}
    assert TrainConfig.from_json(json.loads(json.dumps(cfg.to_json()))) == cfg


def test_errors_name_the_choices():
    with pytest.raises(ConfigError, match=r"unknown preset 'slow'; presets: \['fast', 'paper'\]"):
        preset("slow")
    with pytest.raises(ConfigError, match=r"optimizer 'rmsprop' is not one of \['adam', 'adamw', 'sgd'\]"):
        preset("fast", optimizer="rmsprop")
    with pytest.raises(ConfigError, match=r"val 'session' is not one of \['dialog', 'none'\]"):
        preset("fast", val="session")
    with pytest.raises(ConfigError, match=r"unknown config field\(s\) \['learning_rate'\]"):
        preset("fast", learning_rate=1)
    with pytest.raises(ConfigError, match=r"unknown TrainConfig field\(s\) \['lr_decay'\]"):
        TrainConfig.from_json({"lr_decay": 1})
    assert normalise_modalities("t,a") == ("a", "t")


def test_one_thread_by_default_and_gpu_options_only_on_cuda():
    from train.config import TrainConfig

    assert TrainConfig().num_threads == 1 and all(p.num_threads == 1 for p in PRESETS.values())
    assert all(p.precision == "fp32" and not p.compile for p in PRESETS.values())
    with pytest.raises(ConfigError, match=r"precision 'fp16' is not one of \['fp32', 'tf32', 'bf16'\]"):
        preset("paper", precision="fp16", device="cuda")
    with pytest.raises(ConfigError, match=r"^precision='bf16' is for CUDA devices; device 'cpu' trains in fp32 without compile$"):
        preset("paper", precision="bf16")
    with pytest.raises(ConfigError, match=r"^compile=True is for CUDA devices"):
        preset("fast", compile=True)
    with pytest.raises(ConfigError, match=r"^precision='tf32' and compile=True are for CUDA devices"):
        preset("fast", compile=True, precision="tf32")
    with pytest.raises(ConfigError, match=r"^device 'cuda1' is not one of cpu, cuda, cuda:N$"):
        preset("fast", device="cuda1")
    assert preset("paper", device="cuda:1", precision="bf16", compile=True).precision == "bf16"
