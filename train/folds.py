"""Leave-one-group-out folds and the validation split carved from the training groups.

The test group (the session, for IEMOCAP) is held out whole. With ``val="dialog"``
about ``val_fraction`` of the TRAINING units go to validation, where a unit is:

- the dialog (``Utterance.dialog``), so no dialog straddles train and validation; a dialog
  the corpus splits in parts (``Ses03M_impro05a`` / ``Ses03M_impro05b``: a letter after the
  dialog's number) is one unit;
- for rows without a dialog (CSV corpora): the group, when the training side holds at least
  three groups (a group-wise split, so no speaker of a speaker-grouped corpus straddles);
  else the speaker (``Utterance.speaker``), so no speaker straddles;
- otherwise no validation split can be carved without leaking speakers, and
  :func:`split_fold` says so (use ``val="none"``, or give the rows speakers).

Units are drawn with the seed; at least one unit goes to each side.

A manifest whose every row carries a ``split`` (MELD, MSP-Podcast) has one fold,
:data:`FIXED_FOLD`, as the corpus defines it: train on train, select the epoch on
dev, test on test (:func:`fixed_split`).
"""
from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from emocache.errors import EmocacheError
from manifests import Utterance
from manifests.schema import SPLITS, group_order

# The one fold of a manifest with a fixed split: the one that tests its test part.
FIXED_FOLD = "test"


class FoldError(EmocacheError, ValueError):
    """A fold that cannot be formed (unknown group, too few units to split)."""


@dataclass(frozen=True)
class Split:
    """Row indices of one fold; ``val_unit`` says what the validation split was drawn by."""

    test_group: str
    train: tuple[int, ...]
    val: tuple[int, ...]
    test: tuple[int, ...]
    val_unit: str | None


def groups(rows: Sequence[Utterance]) -> list[str]:
    """The fold keys present, numerically sorted when they are numbers ("1".."5").

    A manifest with a fixed split has one: :data:`FIXED_FOLD`."""
    if has_fixed_split(rows):
        return [FIXED_FOLD]
    keys = {r.group for r in rows}
    return sorted(keys, key=group_order)


# A dialog recorded in parts: the same dialog number followed by a part letter.
_DIALOG_PART = re.compile(r"^(.*\d)[a-z]$")
MIN_GROUPS_FOR_GROUP_SPLIT = 3


def dialog_unit(dialog: str) -> str:
    """``Ses03M_impro05a`` and ``Ses03M_impro05b`` -> ``Ses03M_impro05``; other dialogs unchanged."""
    match = _DIALOG_PART.match(dialog)
    return match.group(1) if match else dialog


def val_unit(row: Utterance, by: str) -> str:
    if by == "dialog":
        return dialog_unit(row.dialog)
    if by == "group":
        return row.group
    if by == "speaker":
        return row.speaker
    raise FoldError(f"validation unit {by!r} is not one of ['dialog', 'group', 'speaker']")


def unit_kind(rows: Sequence[Utterance], rest: Sequence[int], test_group: str) -> str:
    """What the validation split of a fold is drawn by: ``dialog``, ``group`` or ``speaker``."""
    if all(rows[i].dialog for i in rest):
        return "dialog"
    if len({rows[i].group for i in rest}) >= MIN_GROUPS_FOR_GROUP_SPLIT:
        return "group"
    if all(rows[i].speaker for i in rest):
        return "speaker"
    raise FoldError(
        f"fold {test_group!r}: the training groups ({len({rows[i].group for i in rest})}, fewer than "
        f"{MIN_GROUPS_FOR_GROUP_SPLIT}) have rows without a dialog or a speaker, so no validation split can be "
        "carved that keeps speakers apart; give the manifest's rows speakers (or more groups), or use --val none")


def split_fold(rows: Sequence[Utterance], test_group: str, val: str = "dialog",
               val_fraction: float = 0.1, seed: int = 0) -> Split:
    """Split ``rows`` for the fold that tests ``test_group``."""
    test_group = str(test_group)
    if has_fixed_split(rows):
        return fixed_split(rows, test_group, val)
    known = groups(rows)
    if test_group not in known:
        raise FoldError(f"group {test_group!r} is not in the manifest; groups there: {known}")
    if len(known) < 2:
        raise FoldError(f"the manifest has one group ({known[0]!r}): leave-one-group-out needs at least two")
    test = tuple(i for i, r in enumerate(rows) if r.group == test_group)
    rest = [i for i, r in enumerate(rows) if r.group != test_group]
    if val == "none":
        return Split(test_group, tuple(rest), (), test, None)
    if val != "dialog":
        raise FoldError(f"val {val!r} is not one of ['dialog', 'none']")
    by = unit_kind(rows, rest, test_group)
    units = sorted({val_unit(rows[i], by) for i in rest})
    if len(units) < 2:
        raise FoldError(f"the training groups of fold {test_group!r} hold one {by} only: no validation split can be carved; use --val none")
    n_val = min(len(units) - 1, max(1, round(val_fraction * len(units))))
    rng = np.random.default_rng([seed, 7919])
    chosen = {units[j] for j in rng.choice(len(units), size=n_val, replace=False)}
    train = tuple(i for i in rest if val_unit(rows[i], by) not in chosen)
    val_idx = tuple(i for i in rest if val_unit(rows[i], by) in chosen)
    return Split(test_group, train, val_idx, test, by)


def has_fixed_split(rows: Sequence[Utterance]) -> bool:
    """Whether every row carries a ``split``; raises FoldError when only some do."""
    missing = [r.utt_id for r in rows if r.split is None]
    if len(missing) == len(rows):
        return False
    if missing:
        raise FoldError(
            f"{len(rows) - len(missing)} of {len(rows)} manifest rows carry a split and {len(missing)} do not "
            f"(e.g. {missing[0]!r}): give every row its split (train, dev, test) for the corpus's fixed split, "
            "or none for leave-one-group-out")
    return True


def fixed_split(rows: Sequence[Utterance], test_group: str = FIXED_FOLD, val: str = "dialog") -> Split:
    """The corpus's own split: train rows, dev rows for selecting the epoch, test rows.

    ``val="none"`` trains on train and tests the last epoch; dev is then left unused
    (not added to train), so the test figures stay those of the corpus's protocol."""
    if str(test_group) != FIXED_FOLD:
        raise FoldError(f"the manifest has a fixed split: its one fold is {FIXED_FOLD!r}, not {str(test_group)!r}")
    parts = {name: tuple(i for i, r in enumerate(rows) if r.split == name) for name in SPLITS}
    empty = [name for name in ("train", "test") if not parts[name]]
    if empty:
        raise FoldError(f"the manifest's fixed split has no {' and no '.join(empty)} rows; counts: "
                        + ", ".join(f"{name} {len(idx)}" for name, idx in parts.items()))
    if val == "none":
        return Split(FIXED_FOLD, parts["train"], (), parts["test"], None)
    if val != "dialog":
        raise FoldError(f"val {val!r} is not one of ['dialog', 'none']")
    if not parts["dev"]:
        raise FoldError("the manifest's fixed split has no dev rows to select the epoch on; use --val none")
    return Split(FIXED_FOLD, parts["train"], parts["dev"], parts["test"], "split")
