"""The README cannot drift from the code.

- Its first two commands are the demo and the test suite, and CI runs the second.
- Every command it shows names a real command and real options of it.
- Its demo-steps block (which ``scripts/demo.sh`` runs word for word) runs here end
  to end at a small size, on HDF5 and on Zarr: manifest, extraction, cross-validation,
  ablation, prediction; then a rerun skips the complete stores, and deleting one
  store re-extracts only that modality.
"""
from __future__ import annotations

import csv
import importlib
import json
import re
import shlex
import shutil
import tomllib
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")
SCRIPTS = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
PROGRAMS = tuple(SCRIPTS)


def _group(program: str) -> click.Group:
    module, attr = SCRIPTS[program].split(":")
    return getattr(importlib.import_module(module), attr)


def _bash_blocks(text: str) -> list[list[str]]:
    blocks = re.findall(r"```bash\n(.*?)```", text, flags=re.S)
    return [[ln.split(" #")[0].strip() for ln in b.splitlines() if ln.strip() and not ln.startswith("#")] for b in blocks]


def _our_commands(text: str) -> list[str]:
    return [ln for block in _bash_blocks(text) for ln in block if ln.split()[0] in PROGRAMS]


def _demo_steps() -> list[str]:
    block = re.search(r"<!-- demo-steps -->(.*?)<!-- /demo-steps -->", README, flags=re.S)
    assert block, "README.md lost its demo-steps block"
    return _our_commands(block.group(1))


def _resolve(words: list[str]) -> tuple[click.Command, list[str]]:
    command: click.Command = _group(words[0])
    rest = words[1:]
    while isinstance(command, click.Group):
        assert rest and rest[0] in command.commands, f"{words[0]}: no command {rest[:1]}; commands: {sorted(command.commands)}"
        command, rest = command.commands[rest[0]], rest[1:]
    return command, rest


def test_the_first_two_commands_are_the_demo_and_the_tests():
    first_block = _bash_blocks(README)[0]
    assert first_block[:2] == ["bash scripts/demo.sh", "bash scripts/test.sh"]
    assert "bash scripts/test.sh" in (ROOT / ".ci" / "run").read_text()


@pytest.mark.parametrize("line", _our_commands(README))
def test_every_readme_command_exists_with_its_options(line):
    command, args = _resolve(shlex.split(line))
    options = {opt: p for p in command.params if isinstance(p, click.Option) for opt in p.opts + p.secondary_opts}
    for i, word in enumerate(args):
        if not word.startswith("--"):
            continue
        assert word in options, f"`{line}`: {word} is not an option; options: {sorted(options)}"
        param = options[word]
        if isinstance(param.type, click.Choice) and not param.is_flag:
            assert args[i + 1] in param.type.choices, f"`{line}`: {args[i + 1]!r} not in {param.type.choices}"


# Appended to the README's demo steps to make them small; click keeps the last value of an option.
SMALL = {
    ("manifests", "demo"): ["--utterances", "36", "--seed", "3"],
    ("extract", "run", "video"): ["--frames", "4"],
    ("train", "ablate"): ["--epochs", "2", "--d", "16", "--settings", "A,A+V+T"],
}


def _small(words: list[str]) -> list[str]:
    key = tuple(words[:2])
    if key == ("manifests", "demo") and not words[2].endswith("/corpus"):
        return []  # the second corpus (new recordings for predict) is already small, and its seed must differ
    if key == ("extract", "run"):
        key += (words[words.index("--modality") + 1],)
    return SMALL.get(key, [])


def _run(line: str, where: Path, suffix: str) -> click.testing.Result:
    words = shlex.split(line.replace("demo/", f"{where}/").replace(".h5", suffix))
    words += _small(words)
    result = CliRunner().invoke(_group(words[0]), words[1:], catch_exceptions=False)
    assert result.exit_code == 0, f"`{' '.join(words)}` exited {result.exit_code}:\n{result.output}"
    return result


@pytest.mark.slow
@pytest.mark.parametrize("suffix", [".h5", ".zarr"])
def test_the_demo_steps_run_end_to_end(tmp_path, suffix):
    steps = _demo_steps()
    assert [s.split()[:2] for s in steps][:3] == [["manifests", "demo"], ["manifests", "iemocap"], ["extract", "run"]]
    outputs = {}
    for line in steps:
        outputs.setdefault(tuple(line.split()[:2]), []).append(_run(line, tmp_path, suffix).output)

    manifest = tmp_path / "manifest.jsonl"
    n = sum(1 for _ in manifest.open())
    assert n == 36
    cv = tmp_path / "runs" / "ablate" / "AVT_lambda1"  # the A+V+T setting: a cv with all three modalities
    results = json.loads((cv / "cv.json").read_text())
    assert set(results["mean"]) >= {"acc", "wf1", "ua", "macro_f1"}
    assert len(results["folds"]) == 5
    assert (tmp_path / "runs" / "ablate" / "A" / "cv.json").is_file()
    assert (tmp_path / "runs" / "ablate" / "ablation.md").is_file()
    for png in ("confusion.png", "folds.png"):
        assert (cv / png).stat().st_size > 1000
    assert (cv / "fold-1" / "learning_curve.png").is_file()
    ablation = outputs[("train", "ablate")][0]
    assert "A+V+T" in ablation and "70.26" in ablation, "the ablation table shows the paper's figures beside ours"
    assert "synthetic" in ablation.lower()
    with (tmp_path / "runs" / "predictions.csv").open() as f:
        predictions = list(csv.DictReader(f))
    assert len(predictions) == n
    on_store, on_recording = outputs[("train", "predict")]
    assert f"labelled {n} utterances: " in on_store

    # One recording of another corpus, never extracted, labelled by the audio-only checkpoint: one line
    # with its label and every class's probability (sorted, most likely first), summing to 1.
    classes = json.loads((tmp_path / "runs" / "ablate" / "A" / "fold-1" / "config.json").read_text())["classes"]
    labelled = [ln.split("\t") for ln in on_recording.splitlines() if "\t" in ln]
    assert len(labelled) == 1, on_recording
    utt_id, label, probs = labelled[0]
    assert "Ses01F_impro01_F000" in utt_id, on_recording
    assert label in classes
    pairs = [p.split() for p in probs.split("  ")]
    assert [c for c, _ in pairs][0] == label and sorted(c for c, _ in pairs) == sorted(classes)
    assert abs(sum(float(v) for _, v in pairs) - 1) < 0.01
    assert "1 utterance labelled\n" in on_recording and "features: audio 1 extracted, 0 from the cache" in on_recording, on_recording

    # A second run skips every complete store and says so; deleting one re-extracts only it.
    extract_steps = [s for s in steps if s.startswith("extract run")]
    for line in extract_steps:
        assert "already complete" in _run(line, tmp_path, suffix).output
    video = tmp_path / "features" / f"video{suffix}"
    assert [p.name for p in video.parent.iterdir() if "video" in p.name] == [video.name], "a finished store is the one path it was given"
    shutil.rmtree(video) if video.is_dir() else video.unlink()
    reruns = {line.split("--modality ")[1].split()[0]: _run(line, tmp_path, suffix).output for line in extract_steps}
    assert "already complete" in reruns["audio"] and "already complete" in reruns["text"]
    assert "already complete" not in reruns["video"] and f"extracted {n} utterances" in reruns["video"]
