"""The recipe registry: every registered recipe is a `manifests` command, and a new one needs nothing else."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from democorpus.speech import write_wav
from emocache.errors import EmocacheError
from manifests import CsvCorpusError, ManifestError, Utterance
from manifests.cli import cli, recipe_command
from manifests.recipes import RECIPES, ChoiceOption, Recipe, RecipeResult, StandardCountError, register


def test_every_recipe_is_a_command():
    assert sorted(RECIPES) == ["cremad", "emodb", "meld", "msp-podcast", "ravdess"]
    for name, recipe in RECIPES.items():
        assert cli.commands[name].help == recipe.help
    msp = cli.commands["msp-podcast"]
    assert {p.name: p.default for p in msp.params if p.name in ("classes", "test_set")} == {"classes": "eight", "test_set": "Test1"}


def _toy(root: Path, *, loudness: str = "calm") -> RecipeResult:
    rows = [Utterance(utt_id=p.stem, label=loudness, group="1", audio=str(p), corpus="toy") for p in sorted(root.glob("*.wav"))]
    missing = [] if rows else ["no wav"]
    return RecipeResult("Toy", root, rows, "at least one wav", differences=missing)


def test_a_new_recipe_is_its_parse_function_and_registration(tmp_path):
    command = recipe_command(Recipe("toy", _toy, "Manifest of a toy corpus.\n\nROOT holds wavs.", (
        ChoiceOption("loudness", ("calm", "loud"), "How it sounds."),)))
    write_wav(tmp_path / "a.wav", np.zeros(160))
    out = tmp_path / "toy.jsonl"
    result = CliRunner().invoke(command, [str(tmp_path), "--out", str(out), "--expect-standard", "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["classes"] == {"calm": 1} and summary["corpus"] == "Toy" and summary["manifest"] == str(out)
    result = CliRunner().invoke(command, [str(tmp_path), "--out", str(out), "--loudness", "loud"])
    assert result.exit_code == 0 and result.stdout.endswith(f"wrote 1 Toy utterances to {out}\n")
    help_text = CliRunner().invoke(command, ["--help"]).output
    assert "Manifest of a toy corpus." in help_text and "--loudness [calm|loud]" in help_text and "[default: calm]" in help_text
    empty = tmp_path / "empty"
    empty.mkdir()
    result = CliRunner().invoke(command, [str(empty), "--out", str(tmp_path / "e.jsonl")])
    assert result.exit_code == 1 and result.stderr == f"Error: {empty}: no Toy recording found; nothing written\n"


def test_registration_mistakes_are_refused():
    with pytest.raises(ValueError, match="two recipes are registered as 'emodb'"):
        register("emodb", "again")(_toy)
    with pytest.raises(ValueError, match="no keyword argument 'speed' with a default"):
        register("toy", "toy", (ChoiceOption("speed", ("slow",), "?"),))(_toy)
    assert "toy" not in RECIPES


@pytest.mark.parametrize("error", [ManifestError, CsvCorpusError, StandardCountError])
def test_manifest_errors_are_domain_errors(error):
    assert issubclass(error, EmocacheError) and issubclass(error, ValueError)
