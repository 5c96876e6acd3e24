"""The predictor of any finished run, and its rows as a table (what ``python -m audioexp.predict``,
``task=predict`` and ``audioexp.load`` share)."""

from __future__ import annotations

import csv
import io
import json

__all__ = ["format_rows", "load_predictor", "predict_rows_of", "rows_format"]


def load_predictor(run_dir, checkpoint: str = "best", device: str = "cpu", batch_size: int = 8, system: str | None = None,
                   classifier: str | None = None):
    """The predictor of a finished run, by the task that made it (its saved config's ``task``):

    - ``train`` (speech/music, VoxCeleb, IEMOCAP): :class:`audioexp.inference.Predictor`;
    - ``fit_gmm`` (replay detection): :class:`audioexp.systems.replay_predictor.ReplayPredictor`
      (``system`` chooses among the run's systems);
    - ``probe`` (embedding probe): :class:`audioexp.systems.probe_predictor.ProbePredictor`
      (``classifier`` chooses among its classifiers).
    """
    from audioexp.utils.runs import load_run_config

    task = load_run_config(run_dir).get("task", "train")
    if task == "fit_gmm":
        from audioexp.systems.replay_predictor import ReplayPredictor

        return ReplayPredictor.from_run(run_dir, system)
    if task == "probe":
        from audioexp.systems.probe_predictor import ProbePredictor

        return ProbePredictor.from_run(run_dir, classifier=classifier, device=device, batch_size=batch_size)
    if task != "train":
        raise ValueError(f"{run_dir} is a task={task} run: predict needs a train, fit_gmm or probe run")
    from audioexp.inference import Predictor

    return Predictor.from_run(run_dir, checkpoint, device, batch_size)


def format_rows(rows: list[dict], kind: str) -> str:
    """``rows`` as CSV (``kind="csv"``; columns: the union of the rows' keys, in first-seen
    order) or JSON lines (``kind="jsonl"``).

    >>> print(format_rows([{"path": "a.wav", "top_class": "music"}, {"path": "b.wav", "error": "x"}], "csv"), end="")
    path,top_class,error
    a.wav,music,
    b.wav,,x
    """
    if kind == "jsonl":
        return "".join(json.dumps(r) + "\n" for r in rows)
    columns: list[str] = []
    for r in rows:
        columns += [k for k in r if k not in columns]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue()


def predict_rows_of(predictor, paths=(), trials=None, audio_root=None) -> list[dict]:
    """A predictor's rows: a verification run's scores of the trial list ``trials`` (paths
    relative to ``audio_root``) when given, else one row per file of ``paths``."""
    if trials:
        return predictor.score_trials(trials, audio_root)
    return predictor.predict_files([str(p) for p in paths])


def rows_format(path) -> str:
    """``jsonl`` for a ``.jsonl`` / ``.json`` output file, else ``csv``.

    >>> rows_format("out.jsonl"), rows_format("out.csv"), rows_format(None)
    ('jsonl', 'csv', 'csv')
    """
    from pathlib import Path

    return "jsonl" if path and Path(path).suffix in (".jsonl", ".json") else "csv"
