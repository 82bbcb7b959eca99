"""report.html: one self-contained page per `train cv`, `ablate`, `tune`, `layers` and `baseline` run.

Everything the page shows is inside the file: the figures as PNG data URIs (the ones the run
wrote beside it), the CSS in a ``<style>`` element, no script, no font, no link to load. Its
Content-Security-Policy forbids every other source, so the page opens from the local disk
with no server and no network, and a stray reference would show as blocked rather than load.
Text from the run (settings, paths, notes) is escaped with :func:`html.escape`.
"""
from __future__ import annotations

import base64
import html
import json
import os
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from emocache.atomic import write_text
from train.invocation import python_call
from train.report import (BASELINE_TEXT, CHECKPOINT_CONFIG, LAYER_WEIGHTS_TEXT, ablation_table, baseline_table,
                          comparison_table, fold_choices_text, fold_table, interval, layer_weight_tables,
                          layers_fold_table, layers_table, pct, probe_sets, tune_table)

REPORT = "report.html"
TITLES = {"cv": "cross-validation", "ablate": "ablation", "tune": "settings search", "layers": "layer analysis",
          "baseline": "linear probe"}
CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"
CSS = """
body { font: 14px/1.45 system-ui, sans-serif; margin: 0; color: #1d1d1f; background: #fafafa; }
main { max-width: 1100px; margin: 0 auto; padding: 1.5em 2em 4em; background: #fff; }
h1 { font-size: 1.6em; margin-bottom: 0.2em; } h2 { border-bottom: 1px solid #ddd; padding-bottom: 0.2em; margin-top: 2em; }
.meta { color: #666; } .note { background: #fff4d6; border-left: 4px solid #e0a800; padding: 0.5em 1em; }
nav a { margin-right: 1em; }
table { border-collapse: collapse; margin: 0.8em 0; font-variant-numeric: tabular-nums; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: right; white-space: nowrap; }
th:first-child, td:first-child { text-align: left; }
thead th { background: #f0f2f5; } tbody tr:nth-child(even) { background: #fafbfc; }
figure { display: inline-block; margin: 0.5em 1em 0.5em 0; vertical-align: top; }
figure img { max-width: 100%; border: 1px solid #eee; } figcaption { color: #555; font-size: 0.9em; }
pre { background: #f6f8fa; padding: 0.8em; overflow-x: auto; font-size: 12px; }
code { font-size: 0.95em; } .scroll { overflow-x: auto; max-width: 100%; }
"""


def esc(value: Any) -> str:
    return html.escape(str(value), quote=True)


def table(header: Sequence[Any], rows: Sequence[Sequence[Any]], table_id: str) -> str:
    """An HTML table; ``table_id`` names it (the browser test counts its ``tbody`` rows)."""
    head = "".join(f"<th>{esc(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{esc(c)}</td>" for c in row) + "</tr>" for row in rows)
    # Wide tables (provenance, many folds) scroll inside the page instead of widening it.
    return f'<div class="scroll"><table id="{esc(table_id)}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>\n'


def figure(path: Path, caption: str) -> str:
    """The PNG at ``path`` inlined as a data URI; nothing when the run did not write it."""
    if not path.is_file():
        return ""
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return (f'<figure><img src="data:image/png;base64,{data}" alt="{esc(caption)}">'
            f"<figcaption>{esc(caption)}</figcaption></figure>\n")


def pre(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, indent=2, sort_keys=True)
    return f"<pre>{esc(text)}</pre>\n"


def para(text: str) -> str:
    return f"<p>{esc(text)}</p>\n"


def section(anchor: str, title: str, body: str) -> str:
    return f'<section id="{esc(anchor)}"><h2>{esc(title)}</h2>\n{body}</section>\n'


def page(kind: str, out_dir: Path, report: dict[str, Any], sections: Sequence[tuple[str, str, str]]) -> str:
    """The whole document: header, note, contents, then ``(anchor, title, body)`` sections with a body."""
    shown = [s for s in sections if s[2]]
    nav = "".join(f'<a href="#{esc(a)}">{esc(t)}</a>' for a, t, _ in shown)
    note = f'<p class="note">{esc(report["note"])}</p>\n' if report.get("note") else ""
    written = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">\n'
            f'<meta http-equiv="Content-Security-Policy" content="{CSP}">\n'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">\n'
            f"<title>emocache train {esc(kind)}: {esc(out_dir.name)}</title>\n<style>{CSS}</style></head>\n"
            f"<body><main>\n<h1>emocache: train {esc(kind)} ({esc(TITLES[kind])})</h1>\n"
            f'<p class="meta">{esc(os.path.abspath(out_dir))}, written {esc(written)}</p>\n{note}'
            f"<nav>{nav}</nav>\n" + "".join(section(*s) for s in shown) + "</main></body></html>\n")


# -- parts shared by the kinds ---------------------------------------------------------------------

def fold_dirs(out_dir: Path, folds: Sequence[dict[str, Any]]) -> list[Path]:
    """The folders of ``folds`` (fold JSONs) that the run wrote, in fold order."""
    from train.cv import fold_dir

    return [d for d in (fold_dir(out_dir, f["group"]) for f in folds) if d.is_dir()]


def fold_configs(dirs: Sequence[Path]) -> list[dict[str, Any]]:
    """The config.json beside each fold checkpoint."""
    return [json.loads((d / CHECKPOINT_CONFIG).read_text(encoding="utf-8")) for d in dirs if (d / CHECKPOINT_CONFIG).is_file()]


PROVENANCE_FIELDS = ("encoder", "weights_sha256", "layers", "dtype", "manifest_hash", "package_version", "git_commit",
                     "host", "created")


def provenance(sets: dict[str, dict[str, Any]], configs: Sequence[dict[str, Any]] = ()) -> str:
    """The sets' identities and provenance (as the checkpoints record them), and per fold checkpoint
    its test group, reported epoch and whether its sets are the same ones."""
    if not sets:
        return ""
    header = ["modality", "set", "identity", "dim", "stored layers", *PROVENANCE_FIELDS]
    rows = [[m, s["set"], s["identity"], s["dim"], s.get("layers") or "",
             *("" if s["provenance"].get(k) is None else s["provenance"].get(k) for k in PROVENANCE_FIELDS)]
            for m, s in sets.items()]
    body = table(header, rows, "provenance")
    body += "".join(f"<p>Preprocessing of {esc(m)} ({esc(s['set'])}):</p>" + pre(s["provenance"]["preprocessing"])
                    for m, s in sets.items() if s["provenance"].get("preprocessing"))
    if configs:
        identities = {m: s["identity"] for m, s in sets.items()}
        body += para("What each fold's checkpoint (config.json beside model.pt) records:")
        body += table(["test group", "reported epoch", "classes", "same set identities"],
                      [[c["test_group"], c["epoch"], ", ".join(c["classes"]),
                        "yes" if {m: s["identity"] for m, s in c["sets"].items()} == identities else "NO"]
                       for c in configs], "checkpoints")
    return body


def reproduce(kind: str, report: dict[str, Any], out_dir: Path) -> str:
    run = report.get("run") or {}
    body = ""
    if report.get("setting"):
        # An ablation's setting: its command is the ablation's, on the page of the folder above.
        body += para("This run was part of a larger one (see the report.html of the folder above); "
                     "the Python below runs it alone (its folds then share batched calls with fewer others, "
                     "so figures can differ by float rounding).")
    elif run.get("command"):
        body += para(f"The command that ran (from {run.get('cwd', '')}):") + pre(run["command"])
    elif run:
        body += para(f"Started from Python (working folder {run.get('cwd', '')}), not from the command line.")
    body += para("The same run from Python, with the configuration read back from this folder:")
    return body + pre(python_call(kind, report, os.fspath(out_dir)))


def curves(dirs: Sequence[Path]) -> str:
    return "".join(figure(d / "learning_curve.png", f"learning curve, {d.name}") for d in dirs)


def cv_results(report: dict[str, Any], prefix: str = "") -> str:
    """The per-fold table beside the baselines, head minus baseline with its interval, improvised figures."""
    body = table(*fold_table(report["folds"], report), f"{prefix}folds")
    header, rows = comparison_table(report)
    if rows:
        body += para("baseline: " + BASELINE_TEXT)
        body += para("Head minus baseline, in points: mean over folds and a 95% paired t interval over the folds.")
        body += table(header, rows, f"{prefix}comparison")
    if report.get("improvised"):
        imp = report["improvised"]
        body += para("Improvised utterances only: " + ", ".join(
            f"{k} {pct(imp['mean'][k])} +- {pct(imp['std'][k])}" for k in imp["mean"]))
    if report.get("classes"):
        body += para(f"Classes ({len(report['classes'])}): {', '.join(report['classes'])}.")
    return body


def cv_figures(out_dir: Path) -> str:
    return (figure(out_dir / "confusion.png", "confusion matrix, summed over folds")
            + figure(out_dir / "folds.png", "ACC and WF1 per fold")
            + figure(out_dir / "layer_weights.png", "learned layer weights per fold"))


def layer_weight_section(report: dict[str, Any]) -> str:
    tables = layer_weight_tables(report.get("layer_weights", {}))
    if not tables:
        return ""
    return para(LAYER_WEIGHTS_TEXT) + "".join(
        para(f"Modality {m}, set {report['layer_weights'][m]['set']!r}:") + table(h, r, f"layer-weights-{m}")
        for m, h, r in tables)


# -- one page per kind -----------------------------------------------------------------------------

def cv_page(out_dir: Path, report: dict[str, Any]) -> str:
    dirs = fold_dirs(out_dir, report["folds"])
    configs = fold_configs(dirs)
    return page("cv", out_dir, report, [
        ("results", "Results", cv_results(report)),
        ("figures", "Figures", cv_figures(out_dir)),
        ("layer-weights", "Learned layer weights", layer_weight_section(report)),
        ("curves", "Learning curves", curves(dirs)),
        ("config", "Configuration", pre(report["config"])),
        ("provenance", "Set identities and provenance", provenance(configs[0]["sets"] if configs else {}, configs)),
        ("reproduce", "Reproduce", reproduce("cv", report, out_dir)),
    ])


def ablation_page(out_dir: Path, report: dict[str, Any]) -> str:
    from train.results import Setting

    def folder(label: str) -> str:
        return Setting.from_label(label).folder

    results = table(*ablation_table(report), "ablation")
    results += para("baseline: " + BASELINE_TEXT + " Differences are in points, head minus the other, mean over "
                    "folds with a 95% paired t interval over the folds in brackets.")
    if report.get("classical"):
        c = report["classical"]
        results += para(f"classical: the same probe over {', '.join(f'{m}={s}' for m, s in c['sets'].items())}: "
                        f"ACC {pct(c['mean']['acc'])} +- {pct(c['std']['acc'])}, "
                        f"WF1 {pct(c['mean']['wf1'])} +- {pct(c['std']['wf1'])}.")
    results += para("Paper figures: IEMOCAP, 6 classes, leave-one-session-out (the paper's Tables 1 and 2).")
    ref_dir = out_dir / folder(report["reference"])
    ref_row = next(r for r in report["rows"] if r["setting"] == report["reference"])
    configs = fold_configs(fold_dirs(ref_dir, ref_row["folds"]))
    links = "<ul>" + "".join(f'<li><a href="{esc(folder(r["setting"]))}/report.html">{esc(r["setting"])}</a>: '
                             f"folds, confusion matrix, learning curves</li>" for r in report["rows"]) + "</ul>\n"
    ref_cv = ref_dir / "cv.json"
    config = json.loads(ref_cv.read_text(encoding="utf-8"))["config"] if ref_cv.is_file() else None
    return page("ablate", out_dir, report, [
        ("results", "Results", results),
        ("figures", "Figures", figure(out_dir / "ablation.png", "WF1 per setting beside the linear probe")
         + figure(ref_dir / "confusion.png", f"confusion matrix of {report['reference']}, summed over folds")),
        ("settings", "Each setting's report", para("Each setting's folder holds its own report.html:") + links),
        ("config", "Configuration", (para(f"The reference setting ({report['reference']}); the others change "
                                          "only the modalities and lambda.") + pre(config)) if config else ""),
        ("provenance", "Set identities and provenance",
         provenance(configs[0]["sets"] if configs else {}, configs)),
        ("reproduce", "Reproduce", reproduce("ablate", report, out_dir)),
    ])


def tune_page(out_dir: Path, report: dict[str, Any]) -> str:
    chosen = report["chosen"]
    results = para(f"Selection: {report['selection']}. Test folds are not read by any trial.")
    results += table(*tune_table(report), "trials")
    results += para(f"Chosen: trial {chosen['number']}, written as the preset file {report['preset']} "
                    f"(`--preset {report['preset']}`).")
    results += para(fold_choices_text(report))
    test, test_dir = report.get("test"), out_dir / "test"
    test_cv = test_dir / "cv.json"
    dirs = fold_dirs(test_dir, json.loads(test_cv.read_text(encoding="utf-8"))["folds"]) if test and test_cv.is_file() else []
    tested = ""
    if test:
        b = test["baseline"]
        rows = [["head", f"{pct(test['mean']['acc'])} +- {pct(test['std']['acc'])}",
                 f"{pct(test['mean']['wf1'])} +- {pct(test['std']['wf1'])}", ""],
                ["baseline", f"{pct(b['mean']['acc'])} +- {pct(b['std']['acc'])}",
                 f"{pct(b['mean']['wf1'])} +- {pct(b['std']['wf1'])}", interval(b["diff"]["wf1"])]]
        if test.get("classical"):
            c = test["classical"]
            rows.append(["classical", f"{pct(c['mean']['acc'])} +- {pct(c['std']['acc'])}",
                         f"{pct(c['mean']['wf1'])} +- {pct(c['std']['wf1'])}", interval(c["diff"]["wf1"])])
        tested = para(f"Each fold's own choice, tested once ({test['dir']}; its own report.html is there):")
        tested += table(["", "ACC", "WF1", "head minus this, WF1 (95% paired interval)"], rows, "test")
        tested += cv_figures(test_dir) + curves(dirs)
    configs = fold_configs(dirs)
    preset_file = Path(report["preset"])
    chosen_config = json.loads(preset_file.read_text(encoding="utf-8")) if preset_file.is_file() else None
    return page("tune", out_dir, report, [
        ("results", "Trials", results + figure(out_dir / "trials.png", "validation score per trial")),
        ("test", "Nested test of the choices", tested),
        ("config", "Configuration", para("The space searched:") + pre(report["space"]) + para("The base configuration:")
         + pre(report["base"]) + (para("The chosen preset:") + pre(chosen_config) if chosen_config else "")),
        ("provenance", "Set identities and provenance", provenance(configs[0]["sets"] if configs else {}, configs)),
        ("reproduce", "Reproduce", reproduce("tune", report, out_dir)),
    ])


def layers_page(out_dir: Path, report: dict[str, Any]) -> str:
    results = para(f"Linear probe per layer of set {report['set']!r} (modality {report['modality']}), on the folds "
                   f"of `train cv`: {report['method']}. Mean +- std over the test folds: an analysis of every "
                   "layer side by side, not a choice of layer.")
    results += table(*layers_table(report), "layers") + para("Per fold:") + table(*layers_fold_table(report), "layer-folds")
    results += para(f"Classes ({len(report['classes'])}): {', '.join(report['classes'])}.")
    return page("layers", out_dir, report, [
        ("results", "Results", results),
        ("figures", "Figures", figure(out_dir / "layers.png", "probe score per layer, spread over folds")),
        ("config", "Configuration", pre(report["config"])),
        ("provenance", "Set identities and provenance", provenance(report["sets"])),
        ("reproduce", "Reproduce", reproduce("layers", report, out_dir)),
    ])


def baseline_page(out_dir: Path, report: dict[str, Any]) -> str:
    results = para("baseline: " + BASELINE_TEXT) + table(*baseline_table(report), "baseline")
    results += "".join(para(line + ".") for line in probe_sets(report))
    results += para(f"Classes ({len(report['classes'])}): {', '.join(report['classes'])}.")
    return page("baseline", out_dir, report, [
        ("results", "Results", results),
        ("config", "Configuration", para("The folds are those of `train cv` with this configuration:") + pre(report["config"])),
        ("provenance", "Set identities and provenance", provenance(report["sets"])),
        ("reproduce", "Reproduce", reproduce("baseline", report, out_dir)),
    ])


PAGES = {"cv": cv_page, "ablate": ablation_page, "tune": tune_page, "layers": layers_page, "baseline": baseline_page}


def write_html(out_dir: str | os.PathLike, kind: str, report: dict[str, Any]) -> Path:
    """Write ``out_dir/report.html`` for a run of ``kind`` (a key of :data:`PAGES`), after its other files."""
    if kind not in PAGES:
        raise ValueError(f"no report.html for a run of kind {kind!r}; kinds: {', '.join(PAGES)}")
    out_dir = Path(out_dir)
    return write_text(out_dir / REPORT, PAGES[kind](out_dir, report))
