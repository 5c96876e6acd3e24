"""The resumable Optuna sweeper: a search killed during a trial continues where it stopped.

A small Hydra app (no training: the objective is a parabola) uses the sweeper exactly as
``conf/hparams_search/demo_optuna.yaml`` does. Its second trial kills its own process
(SIGKILL, as an out-of-memory killer or a pre-empted node would); the same command run
again must end with ``n_trials`` complete trials, the killed one marked failed, no
parameters proposed twice and job dirs that do not overwrite the first run's.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import optuna
import pytest
from omegaconf import OmegaConf

from tests.conftest import CONF_DIR

APP = textwrap.dedent('''
    import os, signal
    from pathlib import Path

    import hydra
    from hydra.core.hydra_config import HydraConfig


    @hydra.main(version_base="1.3", config_path=".", config_name="sweep")
    def main(cfg):
        marker = Path(cfg.marker)
        if HydraConfig.get().job.num == cfg.kill_at_job and not marker.exists():
            marker.write_text("killed once")
            os.kill(os.getpid(), signal.SIGKILL)
        Path(HydraConfig.get().runtime.output_dir, "x.txt").write_text(str(cfg.x))
        return -(cfg.x - 0.3) ** 2 - (0.1 if cfg.flag == "b" else 0.0)


    if __name__ == "__main__":
        main()
''')


def _sweep_config(tmp_path) -> dict:
    """The preset's sweeper block, with a parabola's parameters instead of the demo's."""
    preset = OmegaConf.load(CONF_DIR / "hparams_search" / "demo_optuna.yaml")
    sweeper = OmegaConf.to_container(preset.hydra.sweeper)
    sweeper.update(study_name="parabola", n_trials=3, params={"x": "interval(0, 1)", "flag": "choice(a, b)"})
    return {
        "defaults": [{"override hydra/sweeper": "optuna"}, "_self_"],
        "x": 0.0, "flag": "a", "kill_at_job": 1, "marker": str(tmp_path / "killed"),
        "hydra": {"mode": "MULTIRUN", "sweep": {"dir": str(tmp_path / "sweep"), "subdir": "${hydra.job.num}"},
                  "sweeper": sweeper},
    }


@pytest.mark.slow
def test_killed_search_resumes_to_n_trials_without_repeats(tmp_path):
    (tmp_path / "app.py").write_text(APP)
    OmegaConf.save(OmegaConf.create(_sweep_config(tmp_path)), tmp_path / "sweep.yaml")
    env = {k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR"}

    first = subprocess.run([sys.executable, "app.py"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert first.returncode == -9, first.stderr[-3000:]  # killed in its second trial
    storage = f"sqlite:///{tmp_path / 'sweep' / 'optuna.db'}"
    trials = optuna.load_study(study_name="parabola", storage=storage).trials
    assert [t.state.name for t in trials] == ["COMPLETE", "RUNNING"]

    second = subprocess.run([sys.executable, "app.py"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert second.returncode == 0, second.stderr[-3000:]
    assert "marked failed" in second.stdout + second.stderr
    trials = optuna.load_study(study_name="parabola", storage=storage).trials
    states = [t.state.name for t in trials]
    assert states == ["COMPLETE", "FAIL", "COMPLETE", "COMPLETE"], states
    params = [tuple(sorted(t.params.items())) for t in trials]
    assert len(set(params)) == len(params), params
    # job N is trial N: the resumed jobs did not write into the first run's job dirs
    for t in trials:
        if t.state.name == "COMPLETE":
            assert float((tmp_path / "sweep" / str(t.number) / "x.txt").read_text()) == pytest.approx(t.params["x"])

    third = subprocess.run([sys.executable, "app.py"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert third.returncode == 0, third.stderr[-3000:]
    assert len(optuna.load_study(study_name="parabola", storage=storage).trials) == 4  # complete: nothing to add
