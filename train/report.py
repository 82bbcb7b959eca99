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


BASELINE_TEXT = ("a linear probe on the same cached inputs, folds and training utterances: per set the mean "
                 "and std over time (multi-layer sets: of the layer average), standardised, logistic regression.")
BASELINES = (("baseline", "baseline"), ("classical", "classical"))


def _probes(report: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """(column prefix, probe summary) for the baselines the report carries."""
    return [(prefix, report[key]) for key, prefix in BASELINES if report.get(key)]


def fold_table(folds: Sequence[dict[str, Any]], summary: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    """The head's per-fold figures, each baseline's ACC and WF1 beside them, then mean and std rows."""
    probes = _probes(summary)
    header = ["fold", *SCALARS, "n_test", "best_epoch", *(f"{p}_{k}" for p, _ in probes for k in ("acc", "wf1"))]
    by_group = [{f["group"]: f for f in probe["folds"]} for _, probe in probes]
    rows = [[f["group"], *(pct(f[k]) for k in SCALARS), str(f["n_test"]), str(f.get("best_epoch", "")),
             *(pct(g[f["group"]][k]) for g in by_group for k in ("acc", "wf1"))] for f in folds]
    for stat in ("mean", "std"):
        rows.append([stat, *(pct(summary[stat][k]) for k in SCALARS), str(summary["n_test"]) if stat == "mean" else "", "",
                     *(pct(probe[stat][k]) for _, probe in probes for k in ("acc", "wf1"))])
    return header, rows


def interval(diff: dict[str, Any]) -> str:
    """``+3.20 [-1.05, +7.45]`` in points, from a :func:`train.metrics.paired_difference` entry."""
    text = f"{100 * diff['mean']:+.2f}"
    if diff.get("low") is None:
        return text + " [n/a: one fold]"
    return text + f" [{100 * diff['low']:+.2f}, {100 * diff['high']:+.2f}]"


def comparison_table(report: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    """One row per baseline: head minus baseline, mean over folds and its 95% interval, per scalar."""
    header = ["head minus", *SCALARS]
    rows = [[f"{prefix} ({', '.join(f'{m}={s}' for m, s in probe['sets'].items())})",
             *(interval(probe["diff"][k]) for k in SCALARS)] for prefix, probe in _probes(report) if probe.get("diff")]
    return header, rows


def comparison_csv(report: dict[str, Any]) -> list[list[str]]:
    """The comparison as CSV rows under the fold table: ``head-baseline mean/low/high`` in the scalar columns."""
    width = len(fold_table(report["folds"], report)[0])
    rows = []
    for prefix, probe in _probes(report):
        for part in ("mean", "low", "high"):
            values = [probe["diff"][k][part] for k in SCALARS]
            row = [f"head-{prefix} {part}", *("" if v is None else pct(v) for v in values)]
            rows.append(row + [""] * (width - len(row)))
    return rows


def markdown(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def write_cv(out_dir: Path, report: dict[str, Any]) -> None:
    """cv.json, folds.csv, folds.md, confusion.png (summed over folds) and folds.png (per-fold bars)."""
    from train.plots import confusion, fold_bars

    out_dir.mkdir(parents=True, exist_ok=True)
    header, rows = fold_table(report["folds"], report)
    write_csv(out_dir / "folds.csv", header, rows + comparison_csv(report))
    write_text(out_dir / "folds.md", cv_markdown(report))
    confusion(report["confusion"], report["classes"], out_dir / "confusion.png")
    fold_bars(report["folds"], out_dir / "folds.png")
    write_json(out_dir / "cv.json", report)


def cv_markdown(report: dict[str, Any]) -> str:
    """The per-fold table with mean and std, the improvised-only figures and the report's note."""
    text = markdown(*fold_table(report["folds"], report))
    header, rows = comparison_table(report)
    if rows:
        text += ("\nbaseline: " + BASELINE_TEXT + "\n\nHead minus baseline, in points: mean over folds and a 95% paired t interval over the folds "
                 "(the same folds and training utterances on both sides).\n\n" + markdown(header, rows))
    if report.get("improvised"):
        imp = report["improvised"]
        text += ("\nImprovised utterances only (scripted dialogs repeat sentences across sessions, which "
                 "inflates text scores): " + ", ".join(f"{k} {pct(imp['mean'][k])} +- {pct(imp['std'][k])}" for k in SCALARS) + "\n")
    if report.get("classes"):
        text += f"\nClasses ({len(report['classes'])}): {', '.join(report['classes'])}.\n"
    if report.get("note"):
        text = f"> {report['note']}\n\n" + text
    return text


def ablation_table(report: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    """One row per setting: our mean +- std ACC and WF1, improvised-only WF1, the probe's WF1 on the same
    inputs and folds, WF1 differences with 95% paired intervals (vs the probe, the classical baseline,
    the reference setting), and the paper's figures."""
    ref = report.get("reference")
    extra = ["WF1 - classical"] if report.get("classical") else []
    header = ["setting", "ACC", "WF1", "WF1 improvised", "baseline WF1", "WF1 - baseline", *extra,
              f"WF1 - {ref}" if ref else "WF1 - reference", "paper ACC", "paper WF1"]
    rows = []
    for r in report["rows"]:
        imp = r.get("improvised")
        paper = r.get("paper")
        base = r.get("baseline")
        rows.append([
            r["setting"],
            f"{pct(r['mean']['acc'])} +- {pct(r['std']['acc'])}",
            f"{pct(r['mean']['wf1'])} +- {pct(r['std']['wf1'])}",
            f"{pct(imp['mean']['wf1'])} +- {pct(imp['std']['wf1'])}" if imp else "",
            f"{pct(base['mean']['wf1'])} +- {pct(base['std']['wf1'])}" if base else "",
            interval(r["vs_baseline"]["wf1"]) if r.get("vs_baseline") else "",
            *([interval(r["vs_classical"]["wf1"])] if extra else []),
            ("reference" if r["setting"] == ref else interval(r["vs_reference"]["wf1"])) if r.get("vs_reference") else "",
            f"{paper[0]:.2f}" if paper else "", f"{paper[1]:.2f}" if paper else "",
        ])
    return header, rows


def ablation_markdown(report: dict[str, Any]) -> str:
    header, rows = ablation_table(report)
    text = "Paper figures: IEMOCAP, 6 classes, leave-one-session-out (the paper's Tables 1 and 2).\n\n" + markdown(header, rows)
    text += ("\nbaseline: " + BASELINE_TEXT + " Differences are in points, head minus the other, "
             "mean over folds with a 95% paired t interval over the folds in brackets.\n")
    if report.get("classical"):
        c = report["classical"]
        text += (f"classical: the same probe over {', '.join(f'{m}={s}' for m, s in c['sets'].items())}: "
                 f"ACC {pct(c['mean']['acc'])} +- {pct(c['std']['acc'])}, WF1 {pct(c['mean']['wf1'])} +- {pct(c['std']['wf1'])}.\n")
    if report.get("classes"):
        text += f"Classes ({len(report['classes'])}): {', '.join(report['classes'])}.\n"
    if report.get("note"):
        text = f"> {report['note']}\n\n" + text
    return text


def write_ablation(out_dir: Path, report: dict[str, Any]) -> None:
    """ablation.md, ablation.csv and ablation.json."""
    header, rows = ablation_table(report)
    write_csv(out_dir / "ablation.csv", header, rows)
    write_text(out_dir / "ablation.md", ablation_markdown(report))
    write_json(out_dir / "ablation.json", report)


def baseline_table(report: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    """`train baseline`: per fold the probe's figures, then mean and std, for each probe."""
    header = ["probe", "fold", *SCALARS, "n_test", "n_train"]
    rows = []
    for prefix, probe in _probes(report):
        rows += [[prefix, f["group"], *(pct(f[k]) for k in SCALARS), str(f["n_test"]), str(f["n_train"])] for f in probe["folds"]]
        rows += [[prefix, stat, *(pct(probe[stat][k]) for k in SCALARS), str(probe["n_test"]) if stat == "mean" else "", ""]
                 for stat in ("mean", "std")]
    return header, rows


def baseline_markdown(report: dict[str, Any]) -> str:
    text = markdown(*baseline_table(report))
    text += "\nbaseline: " + BASELINE_TEXT + "\n"
    for prefix, probe in _probes(report):
        text += f"{prefix}: sets {', '.join(f'{m}={s}' for m, s in probe['sets'].items())}\n"
    return text + f"Classes ({len(report['classes'])}): {', '.join(report['classes'])}.\n"


def write_baseline(out_dir: Path, report: dict[str, Any]) -> None:
    """baseline.md, baseline.csv and baseline.json."""
    write_csv(out_dir / "baseline.csv", *baseline_table(report))
    write_text(out_dir / "baseline.md", baseline_markdown(report))
    write_json(out_dir / "baseline.json", report)


def tune_markdown(report: dict[str, Any]) -> str:
    """Every trial with its validation score, the choice, and (when run) the one test of the choice."""
    names = sorted({k for t in report["trials"] for k in t["params"]})
    header = ["trial", *names, "val WF1", "median best epoch", "chosen"]
    chosen = report["chosen"]["number"]
    rows = [[str(t["number"]), *(f"{t['params'][k]:g}" if isinstance(t["params"][k], float) else str(t["params"][k]) for k in names),
             pct(t["score"]), f"{t['median_best_epoch']:g}", "yes" if t["number"] == chosen else ""] for t in report["trials"]]
    text = f"Selection: {report['selection']}. Test folds are not read by any trial.\n\n" + markdown(header, rows)
    text += f"\nChosen: trial {chosen}, written as the preset file {report['preset']}.\n"
    if report.get("test"):
        t = report["test"]
        b = t["baseline"]
        text += (f"\nThe choice, tested once ({t['dir']}): ACC {pct(t['mean']['acc'])} +- {pct(t['std']['acc'])}, "
                 f"WF1 {pct(t['mean']['wf1'])} +- {pct(t['std']['wf1'])}; baseline ACC {pct(b['mean']['acc'])}, "
                 f"WF1 {pct(b['mean']['wf1'])}; head minus baseline WF1 {interval(b['diff']['wf1'])}.\n")
        if t.get("classical"):
            c = t["classical"]
            text += (f"Classical baseline ACC {pct(c['mean']['acc'])}, WF1 {pct(c['mean']['wf1'])}; "
                     f"head minus classical WF1 {interval(c['diff']['wf1'])}.\n")
    return text


def write_tune(out_dir: Path, report: dict[str, Any]) -> None:
    """tune.md and tune.json."""
    write_text(out_dir / "tune.md", tune_markdown(report))
    write_json(out_dir / "tune.json", report)
