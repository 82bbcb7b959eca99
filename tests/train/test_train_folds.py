"""Leave-one-group-out never leaks the test group; validation is carved by dialog (or speaker, utterance)."""
from __future__ import annotations

import dataclasses

import pytest

from train.folds import FoldError, groups, split_fold


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_no_leak_and_val_by_dialog(make_rows, seed):
    rows = make_rows(groups=5, dialogs=6, per_dialog=4)
    assert groups(rows) == ["1", "2", "3", "4", "5"]
    seen_test = []
    for g in groups(rows):
        split = split_fold(rows, g, "dialog", 0.1, seed)
        assert split.val_unit == "dialog"
        assert {rows[i].group for i in split.test} == {g}
        assert g not in {rows[i].group for i in split.train + split.val}
        assert sorted(split.train + split.val + split.test) == list(range(len(rows)))
        train_dialogs = {rows[i].dialog for i in split.train}
        val_dialogs = {rows[i].dialog for i in split.val}
        assert val_dialogs and not train_dialogs & val_dialogs
        assert len(val_dialogs) == round(0.1 * 24)  # ~10% of the 24 training dialogs
        seen_test += split.test
    assert sorted(seen_test) == list(range(len(rows)))  # every utterance tested exactly once


def test_val_split_follows_the_seed(make_rows):
    rows = make_rows(groups=3, dialogs=10, per_dialog=2)
    a, b = split_fold(rows, "1", seed=0), split_fold(rows, "1", seed=0)
    assert a == b
    assert any(split_fold(rows, "1", seed=s).val != a.val for s in range(1, 6))


def test_fallbacks_without_dialogs(make_rows):
    rows = [dataclasses.replace(r, dialog=None) for r in make_rows()]
    split = split_fold(rows, "2", "dialog", 0.3, 0)
    assert split.val_unit == "speaker"
    assert not {rows[i].speaker for i in split.train} & {rows[i].speaker for i in split.val}
    rows = [dataclasses.replace(r, speaker=None) for r in rows]
    split = split_fold(rows, "2", "dialog", 0.3, 0)
    assert split.val_unit == "utterance" and len(split.val) == round(0.3 * len(split.train + split.val))


def test_val_none_and_errors(make_rows):
    rows = make_rows()
    split = split_fold(rows, "3", "none")
    assert split.val == () and len(split.train) == 48 and split.val_unit is None
    with pytest.raises(FoldError, match=r"group '7' is not in the manifest; groups there: \['1', '2', '3'\]"):
        split_fold(rows, "7")
    one_dialog = [dataclasses.replace(r, dialog="same") for r in rows]
    with pytest.raises(FoldError, match="hold one dialog only"):
        split_fold(one_dialog, "1")
