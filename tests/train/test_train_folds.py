"""Leave-one-group-out never leaks the test group; validation is carved by dialog (or speaker, utterance)."""
from __future__ import annotations

import dataclasses

import pytest

from train.folds import FoldError, dialog_unit, groups, split_fold


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


def test_csv_corpora_validate_on_groups_or_speakers_never_utterances(make_rows):
    # A CSV corpus: no dialogs; the group column is the speaker. With >= 3 training groups the
    # validation split takes whole groups.
    rows = [dataclasses.replace(r, dialog=None, speaker=None) for r in make_rows(groups=5, dialogs=2, per_dialog=4)]
    for g in groups(rows):
        split = split_fold(rows, g, "dialog", 0.2, 0)
        assert split.val_unit == "group"
        train_groups, val_groups = {rows[i].group for i in split.train}, {rows[i].group for i in split.val}
        assert len(val_groups) == 1 and not train_groups & val_groups and g not in train_groups | val_groups
    # Two training groups: by speaker, so no speaker straddles.
    rows = [dataclasses.replace(r, dialog=None) for r in make_rows()]
    split = split_fold(rows, "2", "dialog", 0.3, 0)
    assert split.val_unit == "speaker"
    assert split.val and not {rows[i].speaker for i in split.train} & {rows[i].speaker for i in split.val}
    # Neither: a clear error, never an utterance-level split.
    rows = [dataclasses.replace(r, speaker=None) for r in rows]
    with pytest.raises(FoldError) as err:
        split_fold(rows, "2", "dialog", 0.3, 0)
    assert str(err.value) == (
        "fold '2': the training groups (2, fewer than 3) have rows without a dialog or a speaker, so no validation "
        "split can be carved that keeps speakers apart; give the manifest's rows speakers (or more groups), or use --val none")
    assert split_fold(rows, "2", "none").val == ()


@pytest.mark.parametrize("seed", range(6))
def test_a_dialog_in_parts_is_one_validation_unit(make_rows, seed):
    rows = make_rows(groups=2, dialogs=4, per_dialog=4)
    parted = {"Ses01F_impro00": "Ses01F_impro00a", "Ses01F_script01": "Ses01F_script01b"}
    # Half of each of two dialogs becomes the dialog's second part, as Ses03M_impro05a / _impro05b in IEMOCAP.
    rows = [dataclasses.replace(r, dialog=(parted[r.dialog][:-1] + ("a" if k % 4 < 2 else "b")) if r.dialog in parted else r.dialog)
            for k, r in enumerate(rows)]
    assert {"Ses01F_impro00a", "Ses01F_impro00b", "Ses01F_script01a", "Ses01F_script01b"} <= {r.dialog for r in rows}
    assert dialog_unit("Ses03M_impro05a") == dialog_unit("Ses03M_impro05b") == "Ses03M_impro05"
    assert dialog_unit("Ses01F_script01_1") == "Ses01F_script01_1" and dialog_unit("Ses01F_impro05") == "Ses01F_impro05"
    split = split_fold(rows, "2", "dialog", 0.25, seed)
    train_dialogs, val_dialogs = {rows[i].dialog for i in split.train}, {rows[i].dialog for i in split.val}
    for stem in ("Ses01F_impro00", "Ses01F_script01"):
        parts = {stem + "a", stem + "b"}
        assert parts <= train_dialogs or parts <= val_dialogs  # both parts on one side
    assert len({dialog_unit(d) for d in val_dialogs}) == 1  # 25% of 4 units


def test_val_none_and_errors(make_rows):
    rows = make_rows()
    split = split_fold(rows, "3", "none")
    assert split.val == () and len(split.train) == 48 and split.val_unit is None
    with pytest.raises(FoldError, match=r"group '7' is not in the manifest; groups there: \['1', '2', '3'\]"):
        split_fold(rows, "7")
    one_dialog = [dataclasses.replace(r, dialog="same") for r in rows]
    with pytest.raises(FoldError, match="hold one dialog only"):
        split_fold(one_dialog, "1")
