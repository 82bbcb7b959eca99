"""summarize(): counts per class and group, the table and the JSON."""
from __future__ import annotations

from pathlib import Path

from manifests.schema import Utterance
from manifests.summary import SYNTHETIC_BANNER, rows_are_synthetic, summarize


def _rows(spec: list[tuple[str, str]], corpus: str = "custom") -> list[Utterance]:
    return [Utterance(utt_id=f"u{i}", label=label, group=group, audio=f"/nowhere/u{i}.wav", corpus=corpus) for i, (group, label) in enumerate(spec)]


def test_groups_sort_numbers_by_value_then_names_in_summaries_and_folds() -> None:
    from train.folds import groups

    rows = _rows([("10", "joy"), ("2", "sad"), ("-1", "sad"), ("²", "ang"), ("b", "joy"), ("a", "sad")])
    assert summarize(rows, synthetic=False).groups == ("-1", "2", "10", "a", "b", "²") == tuple(groups(rows))


def test_table_orders_known_classes_first_and_groups_numerically() -> None:
    rows = _rows([("10", "joy"), ("2", "sad"), ("2", "ang"), ("10", "sad"), ("2", "sad")])
    summary = summarize(rows, synthetic=False)
    assert summary.classes == ("ang", "sad", "joy")
    assert summary.groups == ("2", "10")
    assert summary.table() == (
        "group  ang  sad  joy  total\n"
        "2        1    2    0      3\n"
        "10       0    1    1      2\n"
        "total    1    3    1      5"
    )
    assert summary.to_json() == {
        "total": 5,
        "synthetic": False,
        "group_name": "group",
        "classes": {"ang": 1, "sad": 3, "joy": 1},
        "groups": {"2": {"ang": 1, "sad": 2, "joy": 0}, "10": {"ang": 0, "sad": 1, "joy": 1}},
        "group_totals": {"2": 3, "10": 2},
    }


def test_synthetic_banner_and_detection(demo_manifest: Path) -> None:
    from manifests.io import read_manifest

    rows = read_manifest(demo_manifest)
    assert rows_are_synthetic(rows)
    summary = summarize(rows)
    assert summary.synthetic and summary.group_name == "session"
    assert summary.table().splitlines()[0] == SYNTHETIC_BANNER
    assert SYNTHETIC_BANNER not in summary.table(banner=False)
    assert not rows_are_synthetic(_rows([("1", "hap")]))
