"""The implementation behind :class:`ResumableOptunaSweeper` (imports optuna; loaded only
when a sweep starts, so that Hydra's plugin scan at every start stays fast)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import optuna
from hydra.utils import instantiate
from hydra_plugins.hydra_optuna_sweeper._impl import OptunaSweeperImpl
from optuna.trial import TrialState

log = logging.getLogger(__name__)


def _sqlite_path(storage: Any) -> Path | None:
    if isinstance(storage, str) and storage.startswith("sqlite:///"):
        return Path(storage[len("sqlite:///"):])
    return None


class ResumableOptunaSweeperImpl(OptunaSweeperImpl):
    def sweep(self, arguments: list[str]) -> None:
        if self.storage is not None:
            self._resume_study()
        super().sweep(arguments)

    def _resume_study(self) -> None:
        path = _sqlite_path(self.storage)
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)  # the sweep dir exists only once a job starts
        study = optuna.create_study(
            study_name=self.study_name, storage=self.storage, directions=self._get_directions(), load_if_exists=True
        )
        trials = study.get_trials(deepcopy=False)
        for trial in trials:
            if trial.state == TrialState.RUNNING:
                study.tell(trial.number, state=TrialState.FAIL)
                log.warning("trial %d was still running when the last sweep stopped: marked failed", trial.number)
        complete = sum(t.state == TrialState.COMPLETE for t in trials)
        requested = self.n_trials
        self.n_trials = max(0, requested - complete)
        self.job_idx = len(trials)
        if trials:
            log.info("study %s in %s: %d trial(s) so far, %d complete; running %d more to reach n_trials=%d",
                     study.study_name, self.storage, len(trials), complete, self.n_trials, requested)
            sampler_cfg = self.config.hydra.sweeper.get("sampler") if self.config is not None else None
            if sampler_cfg is not None and sampler_cfg.get("seed") is not None and not callable(getattr(
                    self.sampler, "func", None)):  # a grid sampler (a partial) reads the study, needs no seed
                self.sampler = instantiate(sampler_cfg, seed=int(sampler_cfg.seed) + len(trials))
