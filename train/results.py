"""What a cross-validation, a linear probe and an ablation give: frozen dataclasses, JSON on disk.

Each report's ``to_json()`` is the document the run writes (cv.json, ablation.json) and ``--json``
prints; the tables, plots and report.html are rendered from that document (:mod:`train.report`,
:mod:`train.html`), which they can also read back from disk.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from train import metrics
from train.metrics import PairedDifference
from train.config import TrainConfig, normalise_modalities
from train.invocation import Invocation

if TYPE_CHECKING:
    from train.loop import FoldResult

# The order settings and folder names spell modalities in ("A+V+T"), not the canonical a, t, v.
_LETTERS = "AVT"


@dataclass(frozen=True)
class Summary:
    """Per scalar (:data:`train.metrics.SCALARS`) the mean and population std over folds, the test count,
    and the confusion matrix summed over folds (None where it is not kept: improvised-only figures)."""

    mean: Mapping[str, float]
    std: Mapping[str, float]
    n_test: int
    confusion: list[list[int]] | None = None

    @classmethod
    def of(cls, folds: Sequence[Mapping[str, Any]], *, confusion: bool = True) -> Summary:
        s = metrics.summarise(folds)
        return cls(s["mean"], s["std"], s["n_test"], s["confusion"] if confusion else None)

    @classmethod
    def improvised(cls, folds: Sequence[Mapping[str, Any] | None]) -> Summary | None:
        """Over the folds' improvised-only figures, when every fold has some."""
        if not folds or not all(folds):
            return None
        return cls.of(folds, confusion=False)

    def short_json(self) -> dict[str, Any]:
        return {"mean": dict(self.mean), "std": dict(self.std), "n_test": self.n_test}


@dataclass(frozen=True)
class ProbeFold:
    """One fold of the linear probe: its scores (the keys of :func:`train.metrics.compute`)."""

    group: str
    scores: Mapping[str, Any]
    classes: tuple[str, ...]
    improvised: Mapping[str, Any] | None
    n_train: int
    val_unit: str | None

    def to_json(self) -> dict[str, Any]:
        # The head's fold JSON keys where they apply; the probe has no validation rows.
        return {"group": self.group, **self.scores, "classes": list(self.classes), "improvised": self.improvised,
                "n_train": self.n_train, "n_val": 0, "val_unit": self.val_unit}


@dataclass(frozen=True)
class ProbeReport:
    """The linear probe over ``sets`` on every fold; ``diff``: head minus probe, paired over folds
    (:func:`train.metrics.paired_difference`), when it stands beside a head."""

    sets: Mapping[str, str]
    method: str
    summary: Summary
    folds: tuple[ProbeFold, ...]
    improvised: Summary | None = None
    diff: PairedDifference | None = None

    def fold_json(self) -> list[dict[str, Any]]:
        return [f.to_json() for f in self.folds]

    def to_json(self) -> dict[str, Any]:
        s = self.summary
        out = {"sets": dict(self.sets), "method": self.method, "mean": dict(s.mean), "std": dict(s.std),
               "n_test": s.n_test, "confusion": s.confusion, "folds": self.fold_json()}
        if self.improvised is not None:
            out["improvised"] = self.improvised.short_json()
        if self.diff is not None:
            out["diff"] = self.diff.to_json()
        return out


@dataclass(frozen=True)
class Setting:
    """One row of an ablation: a modality set, and lambda where the margin loss applies (three
    modalities); ``lam`` None keeps the config's. The one place its label and folder name are made."""

    modalities: tuple[str, ...]
    lam: float | None = None

    @classmethod
    def from_label(cls, label: str) -> Setting:
        """The setting a :attr:`label` names (read back from ablation.json)."""
        name, _, lam = label.partition(", lambda=")
        return cls(normalise_modalities(name), float(lam) if lam else None)

    @property
    def name(self) -> str:
        """``"A+V+T"``, ``"A+T"``, ``"V"``: the modalities without lambda."""
        return "+".join(c for c in _LETTERS if c.lower() in self.modalities)

    @property
    def label(self) -> str:
        """``"A+V+T, lambda=1"``: the row's name in the tables, and the key of the paper's figures."""
        return self.name if self.lam is None else f"{self.name}, lambda={self.lam:g}"

    @property
    def folder(self) -> str:
        """``"AVT_lambda1"``: the setting's folder inside the ablation's output folder."""
        return self.name.replace("+", "") + ("" if self.lam is None else f"_lambda{self.lam:g}")

    def config(self, base: TrainConfig) -> TrainConfig:
        return base.replace(modalities=self.modalities, **({} if self.lam is None else {"lam": self.lam}))


@dataclass(frozen=True)
class CVReport:
    """A cross-validation: every fold (:class:`train.loop.FoldResult`), mean and std over folds, the
    improvised-only figures, the linear probe beside it (``baseline``, and ``classical`` over other
    sets), the config, the report's note. In an ablation each setting's report names its ``setting``;
    ``run`` says how a run started from the CLI or Python was started. ``fold_configs``: the folds
    that trained another config than ``config`` (``train tune``'s nested test), by group."""

    classes: tuple[str, ...]
    summary: Summary
    folds: tuple[FoldResult, ...]
    config: TrainConfig
    improvised: Summary | None = None
    note: str | None = None
    setting: Setting | None = None
    baseline: ProbeReport | None = None
    classical: ProbeReport | None = None
    run: Invocation | None = None
    fold_configs: Mapping[str, TrainConfig] | None = None

    @property
    def mean(self) -> Mapping[str, float]:
        return self.summary.mean

    @property
    def std(self) -> Mapping[str, float]:
        return self.summary.std

    def fold_json(self) -> list[dict[str, Any]]:
        return [f.to_json() for f in self.folds]

    def to_json(self) -> dict[str, Any]:
        s = self.summary
        out: dict[str, Any] = {"classes": list(self.classes), "mean": dict(s.mean), "std": dict(s.std),
                               "confusion": s.confusion, "n_test": s.n_test, "folds": self.fold_json()}
        if self.improvised is not None:
            out["improvised"] = self.improvised.short_json()
        out["config"] = self.config.to_json()
        if self.fold_configs:
            out["fold_configs"] = {g: c.to_json() for g, c in self.fold_configs.items()}
        if self.note:
            out["note"] = self.note
        if self.setting is not None:
            out["setting"] = self.setting.label
        for key, probe in (("baseline", self.baseline), ("classical", self.classical)):
            if probe is not None:
                out[key] = probe.to_json()
        if self.run is not None:
            out["run"] = self.run.to_json()
        return out

    def __getitem__(self, key: str) -> Any:
        """``report["mean"]["wf1"]``: the report read as its cv.json, for scripts written against the
        dicts :func:`train.cv.run_cv` used to return."""
        return self.to_json()[key]


@dataclass(frozen=True)
class AblationRow:
    """One setting of an ablation: its cross-validation, the paper's (ACC, WF1) for it, and paired
    differences over folds against the reference setting and the classical probe."""

    cv: CVReport
    paper: tuple[float, float] | None
    vs_reference: PairedDifference
    vs_classical: PairedDifference | None = None

    def to_json(self) -> dict[str, Any]:
        cv = self.cv
        out = {"setting": cv.setting.label, "modalities": list(cv.config.model.modalities), "lam": cv.config.lam,
               "mean": dict(cv.mean), "std": dict(cv.std),
               "improvised": None if cv.improvised is None else cv.improvised.short_json(),
               "paper": self.paper, "folds": cv.fold_json(), "baseline": cv.baseline.to_json(),
               "vs_baseline": cv.baseline.diff.to_json(), "vs_reference": self.vs_reference.to_json()}
        if self.vs_classical is not None:
            out["vs_classical"] = self.vs_classical.to_json()
        return out


@dataclass(frozen=True)
class AblationReport:
    """Every setting's row, the reference setting they are compared with, the classical probe."""

    note: str | None
    classes: tuple[str, ...]
    reference: Setting
    rows: tuple[AblationRow, ...]
    classical: ProbeReport | None = None
    run: Invocation | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"note": self.note, "classes": list(self.classes), "reference": self.reference.label,
                               "rows": [r.to_json() for r in self.rows]}
        if self.classical is not None:
            out["classical"] = self.classical.to_json()
        if self.run is not None:
            out["run"] = self.run.to_json()
        return out
