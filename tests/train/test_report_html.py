"""report.html of every kind of run (cv, ablate, tune, layers, baseline): self-contained, reproducible, and
rendered in a real headless Chromium (the Debian package, driven by Playwright) without errors,
network requests or broken images, with its tables there."""
from __future__ import annotations

import json
import os
import re
import shutil
from html.parser import HTMLParser
from pathlib import Path

import pytest
from click.testing import CliRunner

from train.cli import cli

TINY = ["--d", "8", "--epochs", "1", "--batch-size", "8", "--frame-pool", "2", "--num-threads", "1", "--seed", "0"]
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
# report.html of each run, relative to the runs' folder -> {table id: tbody rows}.
TABLES = {
    "cv": {"folds": 5, "comparison": 1, "layer-weights-a": 5, "provenance": 3, "checkpoints": 3},
    "ablate": {"ablation": 2, "provenance": 2, "checkpoints": 3},
    "ablate/AT": {"folds": 5, "comparison": 1, "layer-weights-a": 5, "provenance": 2, "checkpoints": 3},
    "tune": {"trials": 2, "test": 2, "provenance": 2, "checkpoints": 3},
    "tune/test": {"folds": 5, "comparison": 1, "layer-weights-a": 5, "provenance": 2, "checkpoints": 3},
    "layers": {"layers": 3, "layer-folds": 2, "provenance": 1},
    "baseline": {"baseline": 5, "provenance": 3},
}
# How many figures each page inlines: confusion, per-fold bars, layer weights, one learning curve per fold...
IMAGES = {"cv": 6, "ablate": 2, "ablate/AT": 6, "tune": 7, "tune/test": 6, "layers": 1, "baseline": 0}


def _invoke(*args: str) -> None:
    result = CliRunner().invoke(cli, list(args))
    assert result.exit_code == 0, result.output


@pytest.fixture(scope="module")
def runs(small_corpus, tmp_path_factory):
    """One run of each kind on the small store (its audio set has 2 layers), from the CLI."""
    manifest, store, _ = small_corpus
    root = tmp_path_factory.mktemp("runs")
    data = ["--manifest", str(manifest), "--store", str(store)]
    _invoke("cv", *data, "--out", str(root / "cv"), *TINY)
    _invoke("ablate", *data, "--out", str(root / "ablate"), "--settings", "A,A+T", *TINY)
    space = root / "space.json"
    space.write_text(json.dumps({"lr": [3e-3, 3e-4]}))
    _invoke("tune", *data, "--out", str(root / "tune"), "--space", str(space), "--modalities", "a,t", *TINY)
    _invoke("layers", *data, "--out", str(root / "layers"))
    _invoke("baseline", *data, "--out", str(root / "baseline"), "--seed", "0")
    return root, manifest, store


class _Refs(HTMLParser):
    """Every tag name, and every attribute value that could make a browser load something."""

    def __init__(self):
        super().__init__()
        self.tags: list[str] = []
        self.refs: list[tuple[str, str, str]] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        self.refs += [(tag, k, v or "") for k, v in attrs if k in ("src", "href", "srcset", "action", "data", "poster")]


def test_every_run_writes_a_self_contained_report(runs):
    root, manifest, store = runs
    for page in TABLES:
        text = (root / page / "report.html").read_text(encoding="utf-8")
        parser = _Refs()
        parser.feed(text)
        assert not {"script", "link", "iframe", "object", "embed", "base"} & set(parser.tags), page
        for tag, attr, value in parser.refs:
            if tag == "img":
                assert value.startswith("data:image/png;base64,"), (page, value[:40])
            else:
                assert (tag, attr) == ("a", "href") and (value.startswith("#") or re.fullmatch(r"[A-Za-z0-9_]+/report\.html", value)), (page, value)
        assert not re.search(r"(https?|ftp)://|//[a-z0-9.-]+\.[a-z]{2,}/|@import|url\(", text), page
        assert "default-src 'none'; img-src data:; style-src 'unsafe-inline'" in text
        for table_id, n in TABLES[page].items():
            body = re.search(rf'<table id="{table_id}">.*?<tbody>(.*?)</tbody>', text, flags=re.S)
            assert body and body.group(1).count("<tr>") == n, (page, table_id)
        assert text.count("<img ") == IMAGES[page], page


def test_reports_hold_the_baseline_interval_provenance_and_command(runs):
    root, manifest, store = runs
    cv = (root / "cv" / "report.html").read_text(encoding="utf-8")
    report = json.loads((root / "cv" / "cv.json").read_text())
    assert f"<td>mean</td><td>{100 * report['mean']['acc']:.2f}</td>" in cv
    assert f"<td>{100 * report['baseline']['mean']['wf1']:.2f}</td>" in cv
    low, high = (100 * report["baseline"]["diff"]["wf1"][k] for k in ("low", "high"))
    assert f"[{low:+.2f}, {high:+.2f}]" in cv
    audio = json.loads((root / "cv" / "fold-1" / "config.json").read_text())["sets"]["a"]
    assert f"<td>audio</td><td>{audio['identity']}</td>" in cv and audio["provenance"]["manifest_hash"] in cv
    command = (f"train cv --manifest {manifest} --store {store} --out {root / 'cv'} --epochs 1 --batch-size 8 --d 8 "
               "--frame-pool 2 --seed 0 --num-threads 1")
    assert report["run"] == {"command": command, "cwd": os.getcwd(), "manifest": str(manifest), "stores": [str(store)]}
    assert f"<pre>{command}</pre>" in cv
    assert "Learned layer weights" in cv and "<th>layer 0</th><th>layer 1</th>" in cv
    tune = (root / "tune" / "report.html").read_text(encoding="utf-8")
    # The options in the command's own order, each as given.
    assert (f"<pre>train tune --manifest {manifest} --store {store} --out {root / 'tune'} --modalities a,t --epochs 1 "
            f"--batch-size 8 --d 8 --frame-pool 2 --seed 0 --num-threads 1 --space {root / 'space.json'}</pre>") in tune
    assert "The chosen preset:" in tune
    ablate = (root / "ablate" / "report.html").read_text(encoding="utf-8")
    assert '<a href="AT/report.html">A+T</a>' in ablate and "train ablate --manifest" in ablate
    setting = (root / "ablate" / "AT" / "report.html").read_text(encoding="utf-8")
    assert "This run was part of a larger one" in setting


def test_text_from_the_run_is_escaped(runs, tmp_path):
    from train.html import write_html

    root, _, _ = runs
    shutil.copytree(root / "cv", tmp_path / "cv")
    report = json.loads((tmp_path / "cv" / "cv.json").read_text())
    report["note"] = 'a <script>alert("x")</script> & <img src="http://example.org/x.png">'
    text = write_html(tmp_path / "cv", "cv", report).read_text(encoding="utf-8")
    assert "<script" not in text and "example.org/x.png\">" not in text
    assert ('<p class="note">a &lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; '
            '&lt;img src=&quot;http://example.org/x.png&quot;&gt;</p>') in text


def _python_call(page: Path) -> str:
    """The Python the report's Reproduce section shows (the last <pre> of the page), unescaped."""
    import html

    return html.unescape(re.findall(r"<pre>(.*?)</pre>", page.read_text(encoding="utf-8"), flags=re.S)[-1])


def test_the_python_call_of_a_report_runs_the_same_again(runs, tmp_path):
    root, manifest, store = runs
    # A setting's own page inside an ablation names the run's manifest and store, not placeholders.
    setting = _python_call(root / "ablate" / "AT" / "report.html")
    assert json.dumps(str(manifest)) in setting and json.dumps([str(store)]) in setting
    # tune/test: the nested test, each fold with its own choice (cv.json's fold_configs), not the base config.
    for kind, name in (("cv", "cv.json"), ("layers", "layers.json"), ("baseline", "baseline.json"), ("tune/test", "cv.json")):
        before = json.loads((root / kind / name).read_text())
        copy = tmp_path / kind
        shutil.copytree(root / kind, copy)
        code = _python_call(copy / "report.html").replace(str(root / kind), str(copy))
        exec(compile(code, f"report.html of {kind}", "exec"), {})
        after = json.loads((copy / name).read_text())
        key = {"cv": "mean", "layers": "layers", "baseline": "baseline", "tune/test": "mean"}[kind]
        assert after[key] == before[key], kind
        assert after.get("fold_configs") == before.get("fold_configs"), kind
    tested = json.loads((root / "tune" / "test" / "cv.json").read_text())
    assert sorted(tested["fold_configs"]) == ["1", "2", "3"]


def _browser():
    """A Playwright-driven headless Chromium from the Debian package; skipped only outside CI."""
    missing = None
    if not Path(CHROMIUM).is_file():
        missing = f"{CHROMIUM} is not installed (apt-get install chromium; .ci/run installs it)"
    else:
        try:
            import playwright.sync_api  # noqa: F401
        except ImportError:
            missing = "the playwright package is not installed (pip install -e '.[test]')"
    if missing and os.environ.get("CI", "").lower() not in ("", "0", "false"):
        pytest.fail(f"CI must run the headless-browser test: {missing}")
    if missing:
        pytest.skip(missing)


@pytest.fixture(scope="module")
def chromium(tmp_path_factory):
    _browser()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        # A fresh profile: nothing from an earlier run (cache, service workers) can serve the page.
        context = pw.chromium.launch_persistent_context(str(tmp_path_factory.mktemp("chromium-profile")),
                                                        executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield context
        context.close()


@pytest.mark.slow
@pytest.mark.parametrize("page_name", list(TABLES))
def test_report_renders_in_headless_chromium(runs, chromium, page_name):
    root, _, _ = runs
    url = (root / page_name / "report.html").resolve().as_uri()
    page = chromium.new_page()
    requests, problems = [], []
    page.on("request", lambda r: requests.append(r.url))
    page.on("console", lambda m: problems.append(f"console {m.type}: {m.text}") if m.type in ("error", "warning") else None)
    page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
    page.on("requestfailed", lambda r: problems.append(f"request failed: {r.url}"))
    try:
        page.goto(url, wait_until="load")
        page.wait_for_load_state("networkidle")
        assert problems == [], problems
        assert [u for u in requests if not u.startswith("data:")] == [url]
        images = page.evaluate("Array.from(document.images).map(i => [i.complete, i.naturalWidth, i.naturalHeight])")
        assert len(images) == IMAGES[page_name] and all(done and w > 0 and h > 0 for done, w, h in images), images
        rows = page.evaluate("Object.fromEntries(Array.from(document.querySelectorAll('table[id]')).map("
                             "t => [t.id, t.tBodies[0].rows.length]))")
        assert rows == TABLES[page_name]
        kind = "cv" if "/" in page_name else page_name
        assert page.title() == f"emocache train {kind}: {Path(page_name).name}"
        assert page.locator("h1").inner_text().startswith(f"emocache: train {kind} (")
    finally:
        page.close()
