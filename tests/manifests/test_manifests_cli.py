"""The ``manifests`` CLI through click's CliRunner: exact messages, exit codes and JSON."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from manifests.cli import cli
from manifests.io import read_manifest


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


def test_every_command_has_help(runner: CliRunner) -> None:
    recipes = (["emodb"], ["ravdess"], ["cremad"], ["meld"], ["msp-podcast"])
    for command in ([], ["iemocap"], ["csv"], ["demo"], ["summary"], *recipes):
        result = runner.invoke(cli, [*command, "--help"])
        assert result.exit_code == 0, result.output
        assert "Usage: " in result.output
    top = runner.invoke(cli, ["--help"]).output
    for name in ("iemocap", "csv", "demo", "summary", *(r[0] for r in recipes)):
        assert f"  {name} " in top
    assert "..." not in top.split("Commands:")[1]  # every first help line fits the listing


def _small_tree(iemocap_tree) -> Path:
    iemocap_tree("Ses01F_impro01", [("Ses01F_impro01_F000", "neu", 1.0, 2.0, "Hi."), ("Ses01F_impro01_M000", "exc", 2.5, 3.0, "Wow!")])
    root = iemocap_tree("Ses02M_script01_1", [("Ses02M_script01_1_F000", "fru", 1.0, 2.0, "Ugh."), ("Ses02M_script01_1_M000", "xxx", 2.5, 3.0, "Eh.")])
    (root / "Session2" / "sentences" / "wav" / "Ses02M_script01_1" / "Ses02M_script01_1_F000.wav").unlink()
    return root


def test_iemocap_table_and_warnings(runner: CliRunner, iemocap_tree, tmp_path: Path) -> None:
    root = _small_tree(iemocap_tree)
    out = tmp_path / "six.jsonl"

    result = runner.invoke(cli, ["iemocap", str(root), "--out", str(out)])

    assert result.exit_code == 0, result.output
    wav = root / "Session2" / "sentences" / "wav" / "Ses02M_script01_1" / "Ses02M_script01_1_F000.wav"
    assert result.stderr == f"warning: Ses02M_script01_1_F000: no wav at {wav}; left out of the manifest\n"
    assert result.stdout == (
        "session  neu  exc  total\n"
        "1          1    1      2\n"
        "total      1    1      2\n"
        f"wrote 2 utterances to {out}; 1 left out for a missing wav; labels outside the setting: xxx 1\n"
    )
    assert [r.utt_id for r in read_manifest(out)] == ["Ses01F_impro01_F000", "Ses01F_impro01_M000"]


def test_iemocap_four_classes_json(runner: CliRunner, iemocap_tree, tmp_path: Path) -> None:
    root = _small_tree(iemocap_tree)
    out = tmp_path / "four.jsonl"

    result = runner.invoke(cli, ["iemocap", str(root), "--out", str(out), "--classes", "four", "--json"])

    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert payload["total"] == 2
    assert payload["groups"] == {"1": {"hap": 1, "neu": 1}}
    assert payload["missing_audio"] == []  # the fru utterance is dropped before its wav is looked for
    assert payload["dropped_labels"] == {"fru": 1, "xxx": 1}
    assert payload["synthetic"] is False
    assert {r.label for r in read_manifest(out)} == {"hap", "neu"}


def test_iemocap_expect_standard_on_the_demo(runner: CliRunner, demo_corpus: Path, tmp_path: Path) -> None:
    out = tmp_path / "demo.jsonl"

    result = runner.invoke(cli, ["iemocap", str(demo_corpus), "--out", str(out), "--expect-standard"])

    assert result.exit_code == 1
    counts = {s: sum(1 for r in read_manifest(out) if r.session == s) for s in range(1, 6)}
    expected = {1: 1365, 2: 1348, 3: 1533, 4: 1512, 5: 1622}
    lines = [f"  Session{s}: expected {expected[s]:,}, found {counts[s]:,} ({counts[s] - expected[s]:+,})" for s in range(1, 6)]
    total = sum(counts.values())
    assert result.stderr == (
        "Error: the six-class counts differ from the standard IEMOCAP figures "
        "(7,380 in all: 1,365 / 1,348 / 1,533 / 1,512 / 1,622 for sessions 1-5):\n"
        + "\n".join(lines)
        + f"\n  total: expected 7,380, found {total:,} ({total - 7380:+,})\n"
        f"(the manifest was written to {out} all the same; check that the tree is complete and untouched)\n"
    )
    assert result.stdout.startswith("SYNTHETIC demo corpus: not real data, a demo and test bed, never a benchmark\n")


def test_iemocap_expect_standard_needs_six_or_four(runner: CliRunner, iemocap_tree, tmp_path: Path) -> None:
    root = _small_tree(iemocap_tree)
    result = runner.invoke(cli, ["iemocap", str(root), "--out", str(tmp_path / "x.jsonl"), "--classes", "all", "--expect-standard"])
    assert result.exit_code == 2
    assert "--expect-standard needs --classes six or four: there is no standard count for 'all'" in result.stderr
    assert not (tmp_path / "x.jsonl").exists()


def test_iemocap_on_a_folder_without_sessions(runner: CliRunner, tmp_path: Path) -> None:
    result = runner.invoke(cli, ["iemocap", str(tmp_path), "--out", str(tmp_path / "x.jsonl")])
    assert result.exit_code == 1
    assert result.stderr == (
        f"Error: {tmp_path}: no Session1..Session5 folders here; give the IEMOCAP_full_release folder (the one holding Session1..Session5)\n"
    )


def test_summary_of_a_manifest(runner: CliRunner, demo_manifest: Path) -> None:
    rows = read_manifest(demo_manifest)

    table = runner.invoke(cli, ["summary", str(demo_manifest)])
    as_json = runner.invoke(cli, ["summary", str(demo_manifest), "--json"])

    assert table.exit_code == 0 and as_json.exit_code == 0
    lines = table.stdout.splitlines()
    assert lines[0] == "SYNTHETIC demo corpus: not real data, a demo and test bed, never a benchmark"
    assert lines[1].split() == ["session", "hap", "neu", "ang", "exc", "sad", "fru", "total"]
    assert lines[-1].split()[-1] == str(len(rows))
    payload = json.loads(as_json.stdout)
    assert payload["synthetic"] is True
    assert payload["total"] == len(rows)
    assert payload["group_totals"] == {g: sum(1 for r in rows if r.group == g) for g in "12345"}


def test_summary_of_a_missing_manifest(runner: CliRunner, tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"utt_id": "a"}\n', encoding="utf-8")
    result = runner.invoke(cli, ["summary", str(bad)])
    assert result.exit_code == 1
    assert result.stderr.startswith(f"Error: {bad}:1: manifest row 'a' lacks required field(s) ['label', 'group', 'audio']")


def test_demo_command_is_deterministic(runner: CliRunner, demo_corpus: Path, tmp_path: Path) -> None:
    """The same seed and size as the shared fixture give byte-identical files (two writer processes here, one there)."""
    manifest = tmp_path / "demo.jsonl"

    result = runner.invoke(cli, ["demo", str(tmp_path / "again"), "--utterances", "40", "--seed", "1", "--workers", "2", "--manifest", str(manifest)])

    assert result.exit_code == 0, result.output
    root = tmp_path / "again" / "IEMOCAP_full_release"
    assert result.stdout.startswith(
        "SYNTHETIC demo corpus: not real data, a demo and test bed, never a benchmark\n"
        f"corpus: {root}\n"
        "session  hap  neu  ang  exc  sad  fru  total\n"
    )
    assert result.stdout.endswith(f"wrote the six-class manifest to {manifest}\n")
    files = sorted(p.relative_to(root) for p in root.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(demo_corpus) for p in demo_corpus.rglob("*") if p.is_file())
    assert any(f.suffix == ".avi" for f in files) and any(f.suffix == ".wav" for f in files)
    for name in files:
        assert (root / name).read_bytes() == (demo_corpus / name).read_bytes(), name
    assert len(read_manifest(manifest)) == 40

    # Again into the same folder: the corpus is there already, so it is kept as it is.
    again = runner.invoke(cli, ["demo", str(tmp_path / "again"), "--utterances", "40", "--seed", "1", "--json"])
    assert again.exit_code == 0, again.output
    assert json.loads(again.stdout) == {"root": str(root), "synthetic": True, "utterances": 40, "seed": 1, "reused": True}
    plain = runner.invoke(cli, ["demo", str(tmp_path / "again"), "--utterances", "40", "--seed", "1"])
    assert plain.stdout == (
        "SYNTHETIC demo corpus: not real data, a demo and test bed, never a benchmark\n"
        f"corpus: {root} (already there with this size and seed: reused)\n"
        f"next: manifests iemocap {root} --out demo.jsonl\n"
    )
    other = runner.invoke(cli, ["demo", str(tmp_path / "again"), "--utterances", "40", "--seed", "2"])
    assert other.exit_code == 1
    assert other.stderr == (
        f"Error: {root} already exists (a demo corpus with utterances=40, seed=1); "
        "remove it or choose another folder for utterances=40, seed=2\n"
    )


def _write_clips(folder: Path, names: list[str]) -> None:
    from democorpus.speech import write_wav

    import numpy as np

    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        write_wav(folder / name, np.zeros(1600))


def test_csv_corpus(runner: CliRunner, tmp_path: Path) -> None:
    _write_clips(tmp_path / "wav", ["03a01Fa.wav", "03a01Nc.wav", "08b02Tc.wav"])
    table = tmp_path / "emodb.csv"
    table.write_text(
        "file,emotion,speaker,sentence\n"
        "wav/03a01Fa.wav,hap,03,Der Lappen liegt auf dem Eisschrank.\n"
        f"{tmp_path / 'wav' / '03a01Nc.wav'},neu,03,\n"
        "wav/08b02Tc.wav,sad,08,Die wird auf dem Platz sein.\n",
        encoding="utf-8",
    )
    out = tmp_path / "emodb.jsonl"

    result = runner.invoke(
        cli,
        ["csv", str(table), "--out", str(out), "--id-col", "file", "--audio-col", "file", "--label-col", "emotion",
         "--group-col", "speaker", "--text-col", "sentence", "--corpus", "emodb"],
    )

    assert result.exit_code == 0, result.output
    assert result.stdout == (
        "group  hap  neu  sad  total\n"
        "03       1    1    0      2\n"
        "08       0    0    1      1\n"
        "total    1    1    1      3\n"
        f"wrote 3 utterances to {out}\n"
    )
    rows = read_manifest(out)
    assert [(r.utt_id, r.group, r.label, r.corpus) for r in rows] == [
        ("wav/03a01Fa.wav", "03", "hap", "emodb"),
        (str(tmp_path / "wav" / "03a01Nc.wav"), "03", "neu", "emodb"),
        ("wav/08b02Tc.wav", "08", "sad", "emodb"),
    ]
    assert rows[0].audio == str((tmp_path / "wav" / "03a01Fa.wav").resolve())
    assert [r.text for r in rows] == ["Der Lappen liegt auf dem Eisschrank.", None, "Die wird auf dem Platz sein."]


def test_csv_speakers_let_a_corpus_of_two_groups_carve_validation_speakers(runner: CliRunner, tmp_path: Path) -> None:
    """Two sessions, three speakers each: the training side of a fold has one group, so only speakers can split it."""
    from train.folds import split_fold

    names = [f"s{s}_p{p}_u{u}.wav" for s in (1, 2) for p in range(3) for u in range(2)]
    _write_clips(tmp_path / "wav", names)
    table = tmp_path / "t.csv"
    table.write_text("file,emotion,session,person\n" + "".join(
        f"wav/{n},{'hap' if n.endswith('0.wav') else 'sad'},{n[1]},{n[:5]}\n" for n in names), encoding="utf-8")
    base = ["csv", str(table), "--id-col", "file", "--audio-col", "file", "--label-col", "emotion", "--group-col", "session"]
    assert runner.invoke(cli, [*base, "--out", str(tmp_path / "m.jsonl"), "--speaker-col", "person"]).exit_code == 0
    rows = read_manifest(tmp_path / "m.jsonl")
    assert rows[0].speaker == "s1_p0"
    split = split_fold(rows, "2")
    assert split.val and {rows[i].speaker for i in split.train}.isdisjoint({rows[i].speaker for i in split.val})
    result = runner.invoke(cli, [*base, "--out", str(tmp_path / "x.jsonl"), "--speaker-col", "who"])
    assert result.exit_code == 1 and "no such column(s): --speaker-col 'who'" in result.output


def test_csv_tsv_with_video(runner: CliRunner, tmp_path: Path) -> None:
    _write_clips(tmp_path / "clips", ["a.wav", "b.wav"])
    (tmp_path / "clips" / "a.mp4").write_bytes(b"video")
    table = tmp_path / "meld.tsv"
    table.write_text("id\tpath\tlabel\tdialog\tvideo\nu1\tclips/a.wav\tjoy\td1\tclips/a.mp4\nu2\tclips/b.wav\tanger\td2\t\n", encoding="utf-8")

    result = runner.invoke(
        cli, ["csv", str(table), "--out", str(tmp_path / "m.jsonl"), "--id-col", "id", "--audio-col", "path",
              "--label-col", "label", "--group-col", "dialog", "--video-col", "video", "--json"],
    )

    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["groups"] == {"d1": {"anger": 0, "joy": 1}, "d2": {"anger": 1, "joy": 0}}
    rows = read_manifest(tmp_path / "m.jsonl")
    assert [r.video for r in rows] == [str((tmp_path / "clips" / "a.mp4").resolve()), None]


def test_csv_tsv_quotes_are_text(runner: CliRunner, tmp_path: Path) -> None:
    """A tab-separated table has no quoting: a transcript that opens a quote swallows no lines."""
    _write_clips(tmp_path / "clips", ["a.wav", "b.wav", "c.wav"])
    table = tmp_path / "t.tsv"
    table.write_text('id\tpath\tlabel\tdialog\ttext\n'
                     'u1\tclips/a.wav\tjoy\td1\t"Get out, she said\n'
                     'u2\tclips/b.wav\tanger\td2\t"Hi" he said\n'
                     'u3\tclips/c.wav\tjoy\td3\tplain\n', encoding="utf-8")
    result = runner.invoke(cli, ["csv", str(table), "--out", str(tmp_path / "m.jsonl"), "--id-col", "id", "--audio-col", "path",
                                 "--label-col", "label", "--group-col", "dialog", "--text-col", "text"])
    assert result.exit_code == 0, result.output
    assert [r.text for r in read_manifest(tmp_path / "m.jsonl")] == ['"Get out, she said', '"Hi" he said', "plain"]


def test_csv_unknown_columns_are_named(runner: CliRunner, tmp_path: Path) -> None:
    table = tmp_path / "t.csv"
    table.write_text("path,emotion,actor\nx.wav,hap,1\n", encoding="utf-8")
    result = runner.invoke(
        cli, ["csv", str(table), "--out", str(tmp_path / "m.jsonl"), "--id-col", "id", "--audio-col", "path",
              "--label-col", "label", "--group-col", "actor"],
    )
    assert result.exit_code == 1
    assert result.stderr == (
        f"Error: {table}: no such column(s): --id-col 'id', --label-col 'label'; the columns are: 'path', 'emotion', 'actor'\n"
    )


def test_csv_reports_every_missing_file(runner: CliRunner, tmp_path: Path) -> None:
    _write_clips(tmp_path, ["here.wav"])
    table = tmp_path / "t.csv"
    table.write_text("id,path,emotion,actor\na,here.wav,hap,1\nb,gone.wav,sad,1\nc,sub/lost.wav,ang,2\nc,here.wav,neu,2\nd,,neu,2\n", encoding="utf-8")
    out = tmp_path / "m.jsonl"
    result = runner.invoke(
        cli, ["csv", str(table), "--out", str(out), "--id-col", "id", "--audio-col", "path",
              "--label-col", "emotion", "--group-col", "actor"],
    )
    assert result.exit_code == 1
    base = tmp_path.resolve()
    assert result.stderr == (
        f"Error: {table}: 4 problem(s); fix the table or the files (relative paths are read from {tmp_path}):\n"
        f"  row 3 (b): audio file {base / 'gone.wav'} does not exist\n"
        f"  row 4 (c): audio file {base / 'sub' / 'lost.wav'} does not exist\n"
        "  row 5 (c): id 'c' already used on row 4\n"
        "  row 6 (d): empty 'path'\n"
    )
    assert not out.exists()
