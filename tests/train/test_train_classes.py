"""Paper runs record and print their class set, and warn when it is not the paper's six."""
from __future__ import annotations

from manifests import SIX_CLASSES
from train.cv import class_note, paper_run
from train.presets import preset


def test_paper_runs_are_recognised_whatever_the_modalities_device_or_seed():
    assert paper_run(preset("paper"))
    assert paper_run(preset("paper", modalities="a", device="cuda", seed=3, val="none"))
    assert not paper_run(preset("paper", lr=1e-3)) and not paper_run(preset("paper", d=64))
    assert not paper_run(preset("fast"))


def test_the_class_set_is_printed_and_a_paper_run_on_other_classes_warned(capsys):
    assert class_note(preset("paper"), SIX_CLASSES) is None
    assert capsys.readouterr().err == "classes (6): hap, neu, ang, exc, sad, fru\n"
    warning = class_note(preset("paper"), ("hap", "neu", "ang", "sad"))
    assert warning == ("WARNING: a paper run on 4 classes (hap, neu, ang, sad), not the paper's six "
                       "(hap, neu, ang, exc, sad, fru): its figures do not compare with the paper's.")
    assert capsys.readouterr().err == f"classes (4): hap, neu, ang, sad\n{warning}\n"
    assert class_note(preset("fast"), ("hap", "neu", "ang", "sad")) is None  # not a paper run: no warning
    assert capsys.readouterr().err == "classes (4): hap, neu, ang, sad\n"
    assert class_note(preset("paper"), ("ang", "neu"), progress=False) is not None
    assert capsys.readouterr().err == ""
