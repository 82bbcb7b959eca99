"""Files a fold, a cross-validation and an ablation leave behind (JSON, CSV, Markdown, PNG, checkpoint).

Every file is written to a temporary name beside it and renamed into place, so a killed
run never leaves a file that looks complete.
"""
from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from emocache.atomic import atomic_write, write_json, write_text
from train.metrics import SCALARS

CHECKPOINT = "model.pt"
CHECKPOINT_CONFIG = "config.json"


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
    """The head's per-fold figures (with a validation split, the last epoch's ACC and WF1 beside the
    chosen epoch's), each baseline's ACC and WF1 beside them, then mean and std rows."""
    probes = _probes(summary)
    last = [k for k in ("acc", "wf1") if all(f.get("last") for f in folds)]
    header = ["fold", *SCALARS, "n_test", "best_epoch", *(f"last_{k}" for k in last),
              *(f"{p}_{k}" for p, _ in probes for k in ("acc", "wf1"))]
    by_group = [{f["group"]: f for f in probe["folds"]} for _, probe in probes]
    rows = [[f["group"], *(pct(f[k]) for k in SCALARS), str(f["n_test"]), str(f.get("best_epoch", "")),
             *(pct(f["last"][k]) for k in last), *(pct(g[f["group"]][k]) for g in by_group for k in ("acc", "wf1"))]
            for f in folds]
    for stat, over in (("mean", np.mean), ("std", np.std)):  # np.std: ddof=0, as train.metrics.summarise
        rows.append([stat, *(pct(summary[stat][k]) for k in SCALARS), str(summary["n_test"]) if stat == "mean" else "", "",
                     *(pct(float(over([f["last"][k] for f in folds]))) for k in last),
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


def fold_layer_weights(out_dir: Path, folds: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The head's learned layer weights, from each fold's checkpoint in ``out_dir``: per multi-layer
    input, ``{"set", "layers": hidden-state labels, "folds": [{"group", "weights"}], "mean", "std"}``
    with ``weights`` the softmax of that fold's LayerSum logits. ``{}`` when no input has several
    layers, or the folds were run without writing checkpoints."""
    import numpy as np

    from train.checkpoint import Checkpoint
    from train.cv import fold_dir
    from train.data import DataError
    from train.layerscan import layer_labels

    dirs = [fold_dir(out_dir, f["group"]) for f in folds]
    if not dirs or not all(Checkpoint.present(d) for d in dirs):
        return {}
    out: dict[str, Any] = {}
    for f, d in zip(folds, dirs):
        ckpt = Checkpoint.load(d)
        layered = {m: s for m, s in ckpt.sets.items() if s.get("layers")}
        if not layered:
            return {}
        state = ckpt.state
        for m, s in layered.items():
            key = f"inputs.{m}.layer_sum.logits"
            if key not in state:
                raise DataError(f"{d / CHECKPOINT}: no {key!r} for the {s['layers']}-layer set {s['set']!r}; "
                                 f"layer keys there: {sorted(k for k in state if 'layer_sum' in k)}")
            weights = torch.softmax(state[key].double(), dim=0).tolist()
            entry = out.setdefault(m, {"set": s["set"], "layers": layer_labels(s["provenance"].get("layers"), s["layers"]),
                                       "folds": []})
            entry["folds"].append({"group": f["group"], "weights": weights})
    for entry in out.values():
        w = np.array([f["weights"] for f in entry["folds"]])
        entry["mean"], entry["std"] = w.mean(axis=0).tolist(), w.std(axis=0).tolist()
    return out


def layer_weight_tables(weights: dict[str, Any]) -> list[tuple[str, list[str], list[list[str]]]]:
    """(modality, header, rows) per multi-layer input: each fold's weight per layer, then mean and std."""
    tables = []
    for m, entry in weights.items():
        header = ["fold", *(f"layer {label}" for label in entry["layers"])]
        rows = [[str(f["group"]), *(f"{w:.3f}" for w in f["weights"])] for f in entry["folds"]]
        rows += [[stat, *(f"{w:.3f}" for w in entry[stat])] for stat in ("mean", "std")]
        tables.append((m, header, rows))
    return tables


LAYER_WEIGHTS_TEXT = ("Learned layer weights: the softmax of each fold's LayerSum logits (equal weights, "
                      "1/L, at the start), read from the fold's checkpoint.")


def write_cv(out_dir: Path, report: dict[str, Any]) -> None:
    """cv.json, folds.csv, folds.md, confusion.png (summed over folds), folds.png (per-fold bars) and
    report.html. For multi-layer inputs also layer_weights.png, and the files carry the folds' learned
    layer weights (``"layer_weights"``, :func:`fold_layer_weights`, read from the checkpoints written
    here, so ``report`` itself is left as it is: the same run without an output folder gives it too)."""
    from train.html import write_html
    from train.plots import confusion, fold_bars, layer_weights

    out_dir.mkdir(parents=True, exist_ok=True)
    weights = fold_layer_weights(out_dir, report["folds"])
    if weights:
        report = {**report, "layer_weights": weights}
        layer_weights(weights, out_dir / "layer_weights.png")
    header, rows = fold_table(report["folds"], report)
    write_csv(out_dir / "folds.csv", header, rows + comparison_csv(report))
    write_text(out_dir / "folds.md", cv_markdown(report))
    confusion(report["confusion"], report["classes"], out_dir / "confusion.png")
    fold_bars(report["folds"], out_dir / "folds.png")
    write_json(out_dir / "cv.json", report)
    write_html(out_dir, "cv", report)


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
    for m, header, rows in layer_weight_tables(report.get("layer_weights", {})):
        text += f"\n{LAYER_WEIGHTS_TEXT} Modality {m}, set {report['layer_weights'][m]['set']!r}:\n\n" + markdown(header, rows)
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
    """ablation.md, ablation.csv, ablation.json, ablation.png (WF1 per setting) and report.html."""
    from train.html import write_html
    from train.plots import setting_bars

    header, rows = ablation_table(report)
    write_csv(out_dir / "ablation.csv", header, rows)
    write_text(out_dir / "ablation.md", ablation_markdown(report))
    setting_bars(report["rows"], out_dir / "ablation.png")
    write_json(out_dir / "ablation.json", report)
    write_html(out_dir, "ablate", report)


def baseline_table(report: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    """`train baseline`: per fold the probe's figures, then mean and std, for each probe."""
    header = ["probe", "fold", *SCALARS, "n_test", "n_train"]
    rows = []
    for prefix, probe in _probes(report):
        rows += [[prefix, f["group"], *(pct(f[k]) for k in SCALARS), str(f["n_test"]), str(f["n_train"])] for f in probe["folds"]]
        rows += [[prefix, stat, *(pct(probe[stat][k]) for k in SCALARS), str(probe["n_test"]) if stat == "mean" else "", ""]
                 for stat in ("mean", "std")]
    return header, rows


def probe_sets(report: dict[str, Any]) -> list[str]:
    """One line per probe the report carries: the sets it read."""
    return [f"{prefix}: sets {', '.join(f'{m}={s}' for m, s in probe['sets'].items())}" for prefix, probe in _probes(report)]


def baseline_markdown(report: dict[str, Any]) -> str:
    text = markdown(*baseline_table(report))
    text += "\nbaseline: " + BASELINE_TEXT + "\n"
    text += "".join(line + "\n" for line in probe_sets(report))
    return text + f"Classes ({len(report['classes'])}): {', '.join(report['classes'])}.\n"


def write_baseline(out_dir: Path, report: dict[str, Any]) -> None:
    """baseline.md, baseline.csv, baseline.json and report.html."""
    from train.html import write_html

    write_csv(out_dir / "baseline.csv", *baseline_table(report))
    write_text(out_dir / "baseline.md", baseline_markdown(report))
    write_json(out_dir / "baseline.json", report)
    write_html(out_dir, "baseline", report)


def tune_table(report: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    """One row per trial: its settings, validation score, median best epoch, and whether it was chosen."""
    names = sorted({k for t in report["trials"] for k in t["params"]})
    header = ["trial", *names, "val WF1", "median best epoch", "chosen"]
    chosen = report["chosen"]["number"]
    rows = [[str(t["number"]), *(f"{t['params'][k]:g}" if isinstance(t["params"][k], float) else str(t["params"][k]) for k in names),
             pct(t["score"]), f"{t['median_best_epoch']:g}", "yes" if t["number"] == chosen else ""] for t in report["trials"]]
    return header, rows


def fold_choices_text(report: dict[str, Any]) -> str:
    """Which trial each test fold ran in the nested test, and why that is the test (tune.json's words)."""
    picks = ", ".join(f"fold {g}: trial {c['trial']}" for g, c in report["fold_choices"].items())
    return f"Test: {report['test_selection']} ({picks})."


def tune_markdown(report: dict[str, Any]) -> str:
    """Every trial with its validation score, the choice, each fold's own choice, and (when run) their
    one nested test."""
    chosen = report["chosen"]["number"]
    text = f"Selection: {report['selection']}. Test folds are not read by any trial.\n\n" + markdown(*tune_table(report))
    text += f"\nChosen: trial {chosen}, written as the preset file {report['preset']}.\n"
    text += f"\n{fold_choices_text(report)}\n"
    if report.get("test"):
        t = report["test"]
        b = t["baseline"]
        text += (f"\nEach fold's choice, tested once ({t['dir']}): ACC {pct(t['mean']['acc'])} +- {pct(t['std']['acc'])}, "
                 f"WF1 {pct(t['mean']['wf1'])} +- {pct(t['std']['wf1'])}; baseline ACC {pct(b['mean']['acc'])}, "
                 f"WF1 {pct(b['mean']['wf1'])}; head minus baseline WF1 {interval(b['diff']['wf1'])}.\n")
        if t.get("classical"):
            c = t["classical"]
            text += (f"Classical baseline ACC {pct(c['mean']['acc'])}, WF1 {pct(c['mean']['wf1'])}; "
                     f"head minus classical WF1 {interval(c['diff']['wf1'])}.\n")
    return text


def write_tune(out_dir: Path, report: dict[str, Any]) -> None:
    """tune.md, tune.json, trials.png (validation score per trial) and report.html."""
    from train.html import write_html
    from train.plots import trial_scores

    write_text(out_dir / "tune.md", tune_markdown(report))
    trial_scores(report["trials"], report["chosen"]["number"], out_dir / "trials.png")
    write_json(out_dir / "tune.json", report)
    write_html(out_dir, "tune", report)


def layers_table(report: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    """`train layers`: per layer the probe's mean and std over folds, then the layer-average probe."""
    header = ["layer", "ACC", "WF1", "UA", "macro-F1"]
    cell = (lambda r, k: f"{pct(r['mean'][k])} +- {pct(r['std'][k])}")
    rows = [[r["layer"], *(cell(r, k) for k in SCALARS)] for r in report["layers"]]
    rows.append(["average of layers (the baseline)", *(cell(report["average"], k) for k in SCALARS)])
    return header, rows


def layers_fold_table(report: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    """Per layer, each fold's ACC and WF1."""
    groups = [f["group"] for f in report["layers"][0]["folds"]]
    header = ["layer", *(f"{k} fold {g}" for g in groups for k in ("ACC", "WF1"))]
    rows = [[r["layer"], *(pct(f[k]) for f in r["folds"] for k in ("acc", "wf1"))] for r in report["layers"]]
    return header, rows


def layers_markdown(report: dict[str, Any]) -> str:
    text = (f"Linear probe per layer of set {report['set']!r} (modality {report['modality']}), on the folds of `train cv`: "
            f"{report['method']}. Mean +- std over folds, test folds; an analysis, not a choice of layer.\n\n")
    text += markdown(*layers_table(report)) + "\nPer fold:\n\n" + markdown(*layers_fold_table(report))
    text += f"\nClasses ({len(report['classes'])}): {', '.join(report['classes'])}.\n"
    if report.get("note"):
        text = f"> {report['note']}\n\n" + text
    return text


def write_layers(out_dir: Path, report: dict[str, Any]) -> None:
    """layers.md, layers.csv (per layer and fold), layers.json, layers.png and report.html."""
    from train.html import write_html
    from train.plots import layer_scores

    out_dir.mkdir(parents=True, exist_ok=True)
    write_text(out_dir / "layers.md", layers_markdown(report))
    write_csv(out_dir / "layers.csv", ["layer", "fold", *SCALARS, "n_test", "n_train"],
              [[r["layer"], f["group"], *(pct(f[k]) for k in SCALARS), f["n_test"], f["n_train"]]
               for r in report["layers"] for f in r["folds"]])
    layer_scores(report, out_dir / "layers.png")
    write_json(out_dir / "layers.json", report)
    write_html(out_dir, "layers", report)
