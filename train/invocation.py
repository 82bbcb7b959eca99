"""How a run was started, recorded in its JSON (``"run"``), and how to start it again.

Under the `train` CLI the command line is rebuilt from click's parsed parameters: every
option the user gave (not the defaults), in the command's order, shell-quoted. From Python
there is no command line; the report then shows the Python call, which it always shows.
"""
from __future__ import annotations

import json
import os
import shlex
from dataclasses import dataclass
from typing import Any

import click
from click.core import ParameterSource

from train.data import store_locations

_GIVEN = (ParameterSource.COMMANDLINE, ParameterSource.ENVIRONMENT, ParameterSource.PROMPT)


def command_line(ctx: click.Context | None = None) -> str | None:
    """The `train ...` command now running (from the current click context), or None outside the CLI."""
    ctx = ctx if ctx is not None else click.get_current_context(silent=True)
    if ctx is None or ctx.command is None:
        return None
    from train.cli import cli as train_cli

    root = ctx.find_root()
    # Under click's test runner the root is named after the function; the installed program is `train`.
    words = ["train" if root.command is train_cli else (root.info_name or ""), *ctx.command_path.split()[1:]]
    for param in ctx.command.params:
        if not isinstance(param, click.Option) or ctx.get_parameter_source(param.name) not in _GIVEN:
            continue
        value, opt = ctx.params[param.name], param.opts[0]
        if param.is_flag and param.secondary_opts:
            words.append(opt if value else param.secondary_opts[0])
        elif param.is_flag:
            words += [opt] if value else []
        elif param.multiple:
            for item in value:
                words += [opt, str(item)]
        elif value is not None:
            words += [opt, str(value)]
    return shlex.join(words)


def _location(item: Any) -> str:
    return os.fspath(item) if isinstance(item, (str, os.PathLike)) else str(getattr(item, "location", item))


@dataclass(frozen=True)
class Invocation:
    """How a run was started: the command line (None from Python), the working folder, the manifest's
    path (or how many rows were given from Python), the stores' locations, and whether its folds
    trained one after another (``--sequential``: the figures can differ from batched ones by rounding)."""

    command: str | None
    cwd: str
    manifest: str
    stores: tuple[str, ...]
    sequential: bool = False

    def to_json(self) -> dict[str, Any]:
        out = {"command": self.command, "cwd": self.cwd, "manifest": self.manifest, "stores": list(self.stores)}
        return out | {"sequential": True} if self.sequential else out


def invocation(manifest, store, sequential: bool = False) -> Invocation:
    """The run now starting, on ``manifest`` and ``store``."""
    where = (os.fspath(manifest) if isinstance(manifest, (str, os.PathLike))
             else f"<{len(manifest)} manifest rows given from Python>")
    return Invocation(command_line(), os.getcwd(), where, tuple(_location(s) for s in store_locations(store)), sequential)


def _spec(probe: dict[str, Any] | None) -> str:
    return f"BaselineSpec({probe['sets']!r})" if probe else "None"


def _config_from(path: str) -> str:
    """The line that reads the run's TrainConfig back from the ``config`` of its JSON at ``path``."""
    return f"cfg = TrainConfig.from_json(json.load(open({json.dumps(path)}))['config'])"


def python_call(kind: str, report: dict[str, Any], out_dir: str) -> str:
    """The Python that runs ``kind`` ("cv", "ablate", "tune", "layers", "baseline") again into ``out_dir``, with
    the configuration read back from the run's own JSON."""
    run = report.get("run") or {}
    sequential = ", sequential=True" if run.get("sequential") else ""
    manifest = json.dumps(run.get("manifest", "MANIFEST.jsonl"))
    stores = json.dumps(run.get("stores", ["STORE"]))
    out = json.dumps(out_dir)
    head = ["import json", "from train.config import TrainConfig"]
    if kind == "cv":
        cv_json = json.dumps(os.path.join(out_dir, "cv.json"))
        head += ["from train.baseline import BaselineSpec", "from train.cv import run_cv",
                 _config_from(os.path.join(out_dir, "cv.json"))]
        # train tune's nested test: each fold ran its own choice, which cv.json records.
        chosen = (f", fold_configs={{g: TrainConfig.from_json(c) for g, c in json.load(open({cv_json}))['fold_configs'].items()}}"
                  if report.get("fold_configs") else "")
        head += [f"run_cv(cfg, {manifest}, {stores}, {out}, classical={_spec(report.get('classical'))}{chosen}{sequential})"]
    elif kind == "ablate":
        from train.results import Setting

        settings = list(dict.fromkeys(Setting.from_label(r["setting"]).name for r in report["rows"]))
        lambdas = [r["lam"] for r in report["rows"] if len(r["modalities"]) == 3]
        ref = os.path.join(out_dir, Setting.from_label(report["reference"]).folder, "cv.json")
        head += ["from train.ablate import run_ablation", "from train.baseline import BaselineSpec",
                 _config_from(ref),
                 f"run_ablation(cfg, {manifest}, {stores}, {out}, settings={settings!r}, lambdas={lambdas or [1.0]!r}, "
                 f"classical={_spec(report.get('classical'))}{sequential})"]
    elif kind == "tune":
        tune_json = json.dumps(os.path.join(out_dir, "tune.json"))
        classical = (report.get("test") or {}).get("classical")
        head += ["from train.baseline import BaselineSpec", "from train.tune import run_tune", f"tune = json.load(open({tune_json}))",
                 f"run_tune(TrainConfig.from_json(tune['base']), {manifest}, {stores}, {out}, space=tune['space'], "
                 f"n_trials=tune['n_trials'], test={'test' in report}, classical={_spec(classical)}{sequential})"]
    elif kind == "layers":
        head += ["from train.layerscan import run_layers", _config_from(os.path.join(out_dir, "layers.json")),
                 f"run_layers(cfg, {manifest}, {stores}, {out}, modality={report['modality']!r})"]
    elif kind == "baseline":
        head += ["from train.baseline import BaselineSpec, run_baseline", _config_from(os.path.join(out_dir, "baseline.json")),
                 f"run_baseline(cfg, {manifest}, {stores}, {out}, classical={_spec(report.get('classical'))})"]
    else:
        raise ValueError(f"no Python call for a run of kind {kind!r}; kinds: cv, ablate, tune, layers, baseline")
    return "\n".join(head) + "\n"
