"""Predict with a finished run, from the command line::

    python -m audioexp.predict RUN_DIR PATH... [--out FILE] [--batch-size N] [--device cpu|cuda]

PATH: audio files, folders (recursed) or list files (one path per line). One row per file
(:meth:`audioexp.inference.Predictor.predict_files`): a classifier's top class, its
probability and every class's; a verification run's embedding; ``error`` names a file that
could not be read (it does not stop the others). ``--out`` ending in ``.jsonl`` or ``.json``
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

__all__ = ["main", "format_rows"]


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
    args = parser.parse_args(argv)

    from audioexp.inference import Predictor
    from audioexp.utils.files import atomic_write_text

    predictor = Predictor.from_run(args.run_dir, args.checkpoint, args.device, args.batch_size)
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
