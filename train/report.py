"""Files a fold, a cross-validation and an ablation leave behind (JSON, CSV, Markdown, PNG, checkpoint).

Every file is written to a temporary name beside it and renamed into place, so a killed
run never leaves a file that looks complete.
"""
from __future__ import annotations

import csv
import io
import json
import os
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from train.metrics import SCALARS

CHECKPOINT = "model.pt"
CHECKPOINT_CONFIG = "config.json"


def atomic_write(path: Path, write: Callable[[Path], None]) -> Path:
    """Call ``write(tmp)`` on a temporary path in ``path``'s folder, then rename it to ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".partial")
    os.close(fd)
    try:
        write(Path(tmp))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_text(path: Path, text: str) -> Path:
    return atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def write_json(path: Path, data: Any) -> Path:
    return write_text(path, json.dumps(data, indent=2, sort_keys=False) + "\n")


def write_csv(path: Path, header: Sequence[str], rows: Sequence[Sequence[Any]]) -> Path:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return write_text(path, buf.getvalue())


def write_fold(out_dir: Path, cfg, data, result, state: dict[str, torch.Tensor]) -> None:
    """metrics.json, timing.json, predictions.csv, the checkpoint (model.pt + config.json), learning_curve.png."""
    from train.plots import learning_curve

    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write(out_dir / CHECKPOINT, lambda tmp: torch.save(state, tmp))
    write_json(out_dir / CHECKPOINT_CONFIG, {
        "train": cfg.to_json(),
        "classes": list(data.classes),
        "inputs": {m: {"dim": md.dim, "layers": md.layers} for m, md in data.modalities.items()},
        "sets": {m: md.describe() for m, md in data.modalities.items()},
        "test_group": result.group,
        "epoch": result.best_epoch,
    })
    write_csv(out_dir / "predictions.csv", ["utt_id", "label", "pred"],
              [[p["utt_id"], p["label"], p["pred"]] for p in result.predictions])
    learning_curve(result.history, out_dir / "learning_curve.png", title=f"fold {result.group}")
    write_json(out_dir / "timing.json", result.timing)
    write_json(out_dir / "metrics.json", result.to_json())


def pct(value: float) -> str:
    return f"{100 * value:.2f}"


def fold_table(folds: Sequence[dict[str, Any]], summary: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    header = ["fold", *SCALARS, "n_test", "best_epoch"]
    rows = [[f["group"], *(pct(f[k]) for k in SCALARS), str(f["n_test"]), str(f.get("best_epoch", ""))] for f in folds]
    rows.append(["mean", *(pct(summary["mean"][k]) for k in SCALARS), str(summary["n_test"]), ""])
    rows.append(["std", *(pct(summary["std"][k]) for k in SCALARS), "", ""])
    return header, rows


def markdown(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def write_cv(out_dir: Path, report: dict[str, Any]) -> None:
    """cv.json, folds.csv, folds.md, confusion.png (summed over folds) and folds.png (per-fold bars)."""
    from train.plots import confusion, fold_bars

    out_dir.mkdir(parents=True, exist_ok=True)
    write_csv(out_dir / "folds.csv", *fold_table(report["folds"], report))
    write_text(out_dir / "folds.md", cv_markdown(report))
    confusion(report["confusion"], report["classes"], out_dir / "confusion.png")
    fold_bars(report["folds"], out_dir / "folds.png")
    write_json(out_dir / "cv.json", report)


def cv_markdown(report: dict[str, Any]) -> str:
    """The per-fold table with mean and std, the improvised-only figures and the report's note."""
    text = markdown(*fold_table(report["folds"], report))
    if report.get("improvised"):
        imp = report["improvised"]
        text += ("\nImprovised utterances only (scripted dialogs repeat sentences across sessions, which "
                 "inflates text scores): " + ", ".join(f"{k} {pct(imp['mean'][k])} +- {pct(imp['std'][k])}" for k in SCALARS) + "\n")
    if report.get("note"):
        text = f"> {report['note']}\n\n" + text
    return text


def ablation_table(report: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    """One row per setting: our mean +- std ACC and WF1, improvised-only WF1, and the paper's figures."""
    header = ["setting", "ACC", "WF1", "WF1 improvised", "paper ACC", "paper WF1"]
    rows = []
    for r in report["rows"]:
        imp = r.get("improvised")
        paper = r.get("paper")
        rows.append([
            r["setting"],
            f"{pct(r['mean']['acc'])} +- {pct(r['std']['acc'])}",
            f"{pct(r['mean']['wf1'])} +- {pct(r['std']['wf1'])}",
            f"{pct(imp['mean']['wf1'])} +- {pct(imp['std']['wf1'])}" if imp else "",
            f"{paper[0]:.2f}" if paper else "", f"{paper[1]:.2f}" if paper else "",
        ])
    return header, rows


def ablation_markdown(report: dict[str, Any]) -> str:
    header, rows = ablation_table(report)
    text = "Paper figures: IEMOCAP, 6 classes, leave-one-session-out (the paper's Tables 1 and 2).\n\n" + markdown(header, rows)
    if report.get("note"):
        text = f"> {report['note']}\n\n" + text
    return text


def write_ablation(out_dir: Path, report: dict[str, Any]) -> None:
    """ablation.md, ablation.csv and ablation.json."""
    header, rows = ablation_table(report)
    write_csv(out_dir / "ablation.csv", header, rows)
    write_text(out_dir / "ablation.md", ablation_markdown(report))
    write_json(out_dir / "ablation.json", report)
