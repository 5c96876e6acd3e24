"""A fitted replay countermeasure (a ``task=fit_gmm`` run) as a function of audio::

    import audioexp
    cm = audioexp.load("logs/fit_gmm/runs/asvspoof17_sdfb_gmm/2026-12-03_10-00-00")
    cm.predict("recording.wav")   # {"llr": 1.7, "decision": "genuine", "threshold": 0.4, ...}

The run dir's ``countermeasure/`` (written by
:meth:`audioexp.systems.replay_countermeasure.GMMReplayCountermeasure.save`) holds each
system's GMMs and its dev EER threshold; the front-ends are rebuilt from the run's saved
config (targets checked, :func:`audioexp.utils.runs.load_run_config`). A file is read as
the corpus reads it (mono, the corpus's rate, silent ends cut when the run trimmed them),
its frames computed by the system's front-end(s), and scored by the frame-averaged
log-likelihood ratio of the genuine and spoof GMMs; the decision is ``genuine`` when the LLR
is at least the threshold.

Rates: the ASVspoof runs refuse other rates in training (a replay cue lives in the channel).
At prediction a file at a higher rate is resampled to the run's rate and its row says so
(``note``); a lower rate is refused (upsampling leaves the upper band empty, itself a cue).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from pathlib import Path

import numpy as np

from audioexp.backends.gmm import GMMBackend
from audioexp.inference import expand_paths, predict_rows, read_waveform, run_checks
from audioexp.systems.replay_countermeasure import COUNTERMEASURE_DIR

log = logging.getLogger(__name__)

__all__ = ["ReplayPredictor", "choose_system"]


def choose_system(systems: dict[str, dict], name: str | None = None) -> str:
    """The system to predict with: ``name`` if given (it must exist), the only one, or the one
    with the lowest dev EER (ties: the first listed; systems without a dev EER come last).

    Examples
    --------
    >>> choose_system({"cf": {"dev_eer": 0.2}, "cm": {"dev_eer": 0.1}, "score(cf+cm)": {"dev_eer": None}})
    'cm'
    """
    if name is not None:
        if name not in systems:
            raise ValueError(f"no system {name!r} in this run; it has {sorted(systems)}")
        return name
    if not systems:
        raise ValueError("the run saved no fitted system")
    ranked = sorted(systems, key=lambda s: (systems[s].get("dev_eer") is None, systems[s].get("dev_eer") or 0.0))
    return ranked[0]


class ReplayPredictor:
    """Score audio with a fitted GMM replay countermeasure (``audioexp.load`` on a fit_gmm run).

    Parameters
    ----------
    run_dir : path
        Output dir of a ``task=fit_gmm`` run (``resolved_config.yaml``, ``countermeasure/``).
    system : str, optional
        Which system (``sdfb``, ``cf+cm``, ``score(cf+cm)``...); default :func:`choose_system`.
    """

    kind = "countermeasure"

    def __init__(self, run_dir: str | os.PathLike, system: str | None = None) -> None:
        import hydra

        from audioexp.utils.runs import load_run_config

        self.run_dir = Path(run_dir)
        folder = self.run_dir / COUNTERMEASURE_DIR
        if not (folder / "systems.json").is_file():
            raise FileNotFoundError(
                f"{self.run_dir} has no {COUNTERMEASURE_DIR}/systems.json: it is not a task=fit_gmm run, or it was "
                "fitted before runs saved their systems; run the experiment again to predict with it")
        self.cfg = load_run_config(self.run_dir)
        meta = json.loads((folder / "systems.json").read_text())
        self.systems = meta["systems"]
        self.system = choose_system(self.systems, system)
        if system is None and len(self.systems) > 1:
            log.info("predicting with %s, the system of lowest dev EER (systems: %s; choose with system=...)",
                     self.system, sorted(self.systems))
        info = self.systems[self.system]
        self.threshold = info.get("threshold")
        gmm_systems = info["components"] if info["kind"] == "score_fusion" else [self.system]
        self.backends = {}
        for name in gmm_systems:
            with np.load(folder / self.systems[name]["parameters"], allow_pickle=False) as params:
                self.backends[name] = GMMBackend.from_parameters(dict(params))
        needed = sorted({fe for name in gmm_systems for fe in self.systems[name]["frontends"]})
        missing = [fe for fe in needed if fe not in self.cfg.get("frontends", {})]
        if missing:
            raise ValueError(f"{self.run_dir}: the saved config has no front-end {missing} (frontends: "
                             f"{list(self.cfg.get('frontends', {}))})")
        self.frontends = {fe: hydra.utils.instantiate(self.cfg.frontends[fe]) for fe in needed}
        data = self.cfg.data
        self.sample_rate = int(data.get("sample_rate", 16000))
        self.min_seconds = float(data.get("min_seconds", 0.0) or 0.0)
        self.trim_silence_db = data.get("trim_silence_db")
        # long files are scored whole (the GMM scores in blocks of bounded memory); higher rates
        # are resampled (said in the row), lower ones refused
        self.checks = dataclasses.replace(run_checks(data), max_seconds=None, resample="down")
        self.class_names = ["spoof", "genuine"]

    @classmethod
    def from_run(cls, run_dir, system: str | None = None, **_ignored) -> ReplayPredictor:
        return cls(run_dir, system)

    def waveform(self, audio, sample_rate: int | None = None) -> np.ndarray:
        """The audio as the corpus reads it: float64 mono at the run's rate, silent ends cut when
        the run trimmed them (``data.trim_silence_db``)."""
        from audioexp.data.asvspoof2017 import trim_silence

        y = read_waveform(audio, sample_rate, self.sample_rate, self.checks).numpy().astype(np.float64)
        if len(y) < self.min_seconds * self.sample_rate:
            raise ValueError(f"{audio if isinstance(audio, (str, os.PathLike)) else 'the waveform'} is "
                             f"{len(y) / self.sample_rate:.2f} s long, shorter than the run's {self.min_seconds} s")
        if self.trim_silence_db is None:
            return y
        return trim_silence(y, self.sample_rate, float(self.trim_silence_db), min_seconds=self.min_seconds)

    def frames(self, waveform: np.ndarray) -> dict[str, np.ndarray]:
        """Frames ``(frames, dim)`` of every GMM system the chosen one needs (a feature fusion's
        front-ends side by side, as in training)."""
        per_frontend = {fe: np.asarray(f(waveform), dtype=np.float32) for fe, f in self.frontends.items()}
        return {name: np.concatenate([per_frontend[fe] for fe in self.systems[name]["frontends"]], axis=1)
                for name in self.backends}

    def llr(self, frames: dict[str, np.ndarray]) -> float:
        """The chosen system's score of one utterance's frames (a score fusion: its weights on
        its systems' LLRs)."""
        scores = {name: float(backend.score([frames[name]])[0]) for name, backend in self.backends.items()}
        info = self.systems[self.system]
        if info["kind"] != "score_fusion":
            return scores[self.system]
        return float(np.dot(info["weights"], [scores[c] for c in info["components"]]) + info["bias"])

    def predict(self, audio, sample_rate: int | None = None) -> dict:
        """One file (path) or waveform (with ``sample_rate``): ``{"llr", "threshold", "decision"
        ("genuine" | "spoof" | None without a threshold), "system", "seconds", "frames"}``."""
        y = self.waveform(audio, sample_rate)
        frames = self.frames(y)
        llr = self.llr(frames)
        decision = None if self.threshold is None else ("genuine" if llr >= self.threshold else "spoof")
        return {"llr": llr, "threshold": self.threshold, "decision": decision, "system": self.system,
                "seconds": len(y) / self.sample_rate, "frames": int(len(next(iter(frames.values()))))}

    def predict_files(self, paths, progress: bool = True) -> list[dict]:
        """One row per file of ``paths`` (files, folders, list files): ``system``, ``llr``,
        ``threshold``, ``decision``, ``seconds``, ``frames``, ``note`` (a resampled file) and
        ``error`` (empty, or why the file could not be read: reported in its row, not fatal)."""
        from audioexp.data.validate import probe_audio

        def to_row(result: dict) -> dict:
            return {"system": result["system"], "llr": round(result["llr"], 6), "threshold": result["threshold"],
                    "decision": result["decision"] or "", "seconds": round(result["seconds"], 3),
                    "frames": result["frames"]}

        def predict(path) -> dict:
            result = self.predict(path)
            rate = probe_audio(path).rate
            result["note"] = (f"resampled from {rate} Hz to {self.sample_rate} Hz (the run's corpus is at "
                              f"{self.sample_rate} Hz)") if rate != self.sample_rate else ""
            return result

        return predict_rows(predict, expand_paths(paths), lambda r: {**to_row(r), "note": r["note"]}, progress)
