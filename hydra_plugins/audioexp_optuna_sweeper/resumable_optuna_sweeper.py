"""Hydra's Optuna sweeper, resumable: re-running an interrupted search continues its study.

``hydra-optuna-sweeper`` loads an existing study (``load_if_exists``) but then runs
``n_trials`` more trials, leaves the trial that was running when the process died in state
RUNNING forever, numbers the new jobs from 0 (into the job dirs of the first run) and, with
the sampler's fixed seed, proposes the first run's parameters again. Here, before the
search starts:

- trials left RUNNING by a dead sweep are marked FAIL (one sweep process per study: this
  sweeper launches its own trials and never shares a study with another live process);
- ``n_trials`` is the study's total: only the trials still missing to reach ``n_trials``
  COMPLETE ones are run;
- job numbers continue after the study's last trial (job dir ``N`` is trial ``N``);
- a seeded sampler is re-seeded with ``seed + number of trials so far``, so a resumed
  search draws new parameters, the same ones on every machine.

Everything else (search space syntax, ``storage``, ``study_name``, results file) is the
upstream sweeper's. Used by ``conf/hparams_search/*.yaml``.
"""

from __future__ import annotations

from hydra_plugins.hydra_optuna_sweeper.optuna_sweeper import OptunaSweeper


class ResumableOptunaSweeper(OptunaSweeper):
    """:class:`OptunaSweeper` with :class:`._impl.ResumableOptunaSweeperImpl` behind it."""

    def __init__(self, sampler, direction, storage, study_name, n_trials, n_jobs, max_failure_rate, search_space,
                 custom_search_space, params) -> None:
        from ._impl import ResumableOptunaSweeperImpl

        self.sweeper = ResumableOptunaSweeperImpl(sampler, direction, storage, study_name, n_trials, n_jobs,
                                                  max_failure_rate, search_space, custom_search_space, params)
