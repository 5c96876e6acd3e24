"""Predict with a finished run, from the command line::

    python -m audioexp.predict RUN_DIR PATH... [--out FILE] [--batch-size N] [--device cpu|cuda]
    python -m audioexp.predict RUN_DIR --trials veri_test.txt [--audio-root DIR] [--out FILE]

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
import sys
from pathlib import Path

from audioexp.systems.predictors import format_rows, load_predictor, predict_rows_of, rows_format

__all__ = ["main", "format_rows", "load_predictor"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m audioexp.predict", description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dir", help="output dir of a finished train run (its .hydra/ and checkpoints/)")
    parser.add_argument("paths", nargs="*", help="audio files, folders or list files")
    parser.add_argument("--out", help="CSV, or JSON lines when it ends in .jsonl/.json (default: CSV on stdout)")
    parser.add_argument("--batch-size", type=int, default=8, help="windows through the network at once")
    parser.add_argument("--device", default="cpu", help="cpu | cuda | cuda:N")
    parser.add_argument("--checkpoint", default="best", help="best | last | a file name in checkpoints/")
    parser.add_argument("--system", help="replay runs (fit_gmm): which system (default: lowest dev EER)")
    parser.add_argument("--classifier", help="probe runs: which classifier (default: best test UAR)")
    parser.add_argument("--trials", help="verification runs: a trial list ('1|0 path_a path_b' lines) to score")
    parser.add_argument("--audio-root", help="folder the trial list's paths are relative to (default: its wav/ or its folder)")
    args = parser.parse_args(argv)
    if not args.paths and not args.trials:
        parser.error("give audio files, folders or list files (or --trials FILE for a verification run)")

    from audioexp.utils.files import atomic_write_text

    predictor = load_predictor(args.run_dir, args.checkpoint, args.device, args.batch_size, args.system,
                               args.classifier)
    rows = predict_rows_of(predictor, args.paths, args.trials, args.audio_root)
    text = format_rows(rows, rows_format(args.out))
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
