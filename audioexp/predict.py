"""Predict with a finished run, from the command line::

    python -m audioexp.predict RUN_DIR PATH... [--out FILE] [--batch-size N] [--device cpu|cuda]

PATH: audio files, folders (recursed) or list files (one path per line). One row per file
(:func:`load_predictor` picks the predictor of the run's task): a classifier's top class,
its probability and every class's; a verification run's embedding; a replay
countermeasure's LLR and decision at its dev EER threshold; a probe's emotion; ``error``
names a file that could not be read (it does not stop the others). ``--out`` ending in ``.jsonl`` or ``.json``
writes JSON lines, anything else CSV; without it, CSV goes to stdout. From Python:
``audioexp.load(RUN_DIR).predict("a.wav")``.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import sys
from pathlib import Path

__all__ = ["main", "format_rows", "load_predictor"]


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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m audioexp.predict", description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dir", help="output dir of a finished train run (its .hydra/ and checkpoints/)")
    parser.add_argument("paths", nargs="+", help="audio files, folders or list files")
    parser.add_argument("--out", help="CSV, or JSON lines when it ends in .jsonl/.json (default: CSV on stdout)")
    parser.add_argument("--batch-size", type=int, default=8, help="windows through the network at once")
    parser.add_argument("--device", default="cpu", help="cpu | cuda | cuda:N")
    parser.add_argument("--checkpoint", default="best", help="best | last | a file name in checkpoints/")
    parser.add_argument("--system", help="replay runs (fit_gmm): which system (default: lowest dev EER)")
    parser.add_argument("--classifier", help="probe runs: which classifier (default: best test UAR)")
    args = parser.parse_args(argv)

    from audioexp.utils.files import atomic_write_text

    predictor = load_predictor(args.run_dir, args.checkpoint, args.device, args.batch_size, args.system,
                               args.classifier)
    rows = predictor.predict_files(args.paths)
    kind = "jsonl" if args.out and Path(args.out).suffix in (".jsonl", ".json") else "csv"
    text = format_rows(rows, kind)
    if args.out:
        atomic_write_text(Path(args.out), text)
        bad = sum(1 for r in rows if r.get("error"))
        print(f"{len(rows)} files -> {args.out}" + (f" ({bad} could not be read: see the error column)" if bad else ""),
              file=sys.stderr)
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
