"""The typed results of `train`: ablation settings name their rows and folders in one place, and the
domain errors are EmocacheErrors that the CLI prints as one line."""
from __future__ import annotations

import re

import pytest
from click.testing import CliRunner

from emocache.errors import EmocacheError
from train.ablate import PAPER, plan
from train.cli import cli
from train.config import ConfigError
from train.folds import FoldError
from train.media import MediaError
from train.paths import OutputPathError
from train.results import Setting
from train.tune import TuneError


def test_settings_of_the_paper_grid_have_its_labels_and_folders():
    runs = plan(["a", "A + T", "V", "t+v+a"], [0, 0.01, 1])
    assert [s.label for s in runs] == ["A", "A+T", "V", "A+V+T, lambda=0", "A+V+T, lambda=0.01", "A+V+T, lambda=1"]
    assert [s.folder for s in runs] == ["A", "AT", "V", "AVT_lambda0", "AVT_lambda0.01", "AVT_lambda1"]
    assert runs[1] == Setting(("a", "t")) and runs[-1] == Setting(("a", "t", "v"), 1.0)
    assert all(s.label in PAPER for s in runs)
    for s in runs:  # the label read back from ablation.json names the same setting
        assert Setting.from_label(s.label) == s


def test_a_setting_changes_only_modalities_and_lambda(tiny_cfg):
    cfg = Setting(("a", "v"), None).config(tiny_cfg)
    assert cfg.model.modalities == ("a", "v") and cfg.lam == tiny_cfg.lam and cfg.lr == tiny_cfg.lr
    assert Setting(("a", "t", "v"), 0.1).config(tiny_cfg).lam == 0.1


def test_bad_settings_are_refused_naming_the_grid():
    with pytest.raises(ConfigError, match=r"^setting 'A\+X': use modality letters joined by \+, e.g. A, T, V, A\+T"):
        plan(["A+X"])
    with pytest.raises(ConfigError, match=r"^setting '\+': "):
        plan(["+"])


@pytest.mark.parametrize("error", [ConfigError, FoldError, TuneError, OutputPathError, MediaError])
def test_train_domain_errors_are_emocache_errors_and_value_errors(error):
    assert issubclass(error, EmocacheError) and issubclass(error, ValueError)


def test_a_model_field_out_of_range_is_a_config_error(small_corpus, tmp_path):
    from train.presets import preset

    with pytest.raises(ConfigError, match=r"^d=7 must be divisible by heads=4$"):
        preset("fast", d=7)
    manifest, store, _ = small_corpus
    result = CliRunner().invoke(cli, ["cv", "--manifest", str(manifest), "--store", str(store), "--out", str(tmp_path / "o"),
                                      "--d", "7"])
    assert result.exit_code == 1 and result.output == "Error: d=7 must be divisible by heads=4\n"
    result = CliRunner().invoke(cli, ["cv", "--manifest", str(manifest), "--store", str(store), "--out", str(tmp_path / "o"),
                                      "--scheduler", "local:0"])
    assert result.output == "Error: --scheduler local:0: local:N needs N >= 1 workers\n"
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("text", ["{", '{"train": {}}', "[1, 2]", "\udcff"])
def test_a_damaged_checkpoint_config_is_a_message_naming_the_file(tmp_path, text):
    from train.checkpoint import Checkpoint
    from train.data import DataError

    (tmp_path / "config.json").write_text(text, encoding="utf-8", errors="surrogateescape")
    (tmp_path / "model.pt").write_bytes(b"")
    with pytest.raises(DataError, match="^" + re.escape(f"{tmp_path / 'config.json'}: not a checkpoint config written by `train`")):
        Checkpoint.load(tmp_path)


def test_a_sequential_run_is_reproduced_sequentially():
    """Its figures can differ from a batched run's by float rounding, so the Python call keeps the mode."""
    from train.invocation import Invocation, python_call

    run = Invocation("train cv --sequential", "/w", "m.jsonl", ("s.h5",), sequential=True)
    assert run.to_json()["sequential"] is True
    assert "sequential" not in Invocation(None, "/w", "m.jsonl", ("s.h5",)).to_json()
    report = {"run": run.to_json(), "rows": [], "reference": "A+V+T, lambda=1"}
    for kind in ("cv", "tune"):
        assert python_call(kind, report, "/out").rstrip().endswith(", sequential=True)")
    assert "sequential" not in python_call("cv", {"run": Invocation(None, "/w", "m.jsonl", ("s.h5",)).to_json()}, "/out")
