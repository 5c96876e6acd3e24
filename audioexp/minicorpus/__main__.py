"""``python -m audioexp.minicorpus KIND DIR [--seed N] [--clips-per-class N]`` (also
``audioexp-minicorpus``): write a miniature corpus."""

from __future__ import annotations

import argparse
import inspect
import sys
from pathlib import Path
from typing import Any, Sequence

from audioexp.minicorpus import WRITERS, write_minicorpus
from audioexp.minicorpus.common import count_audio


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point (``audioexp-minicorpus``).

    Parameters
    ----------
    argv : sequence of str, optional
        Arguments without the program name; ``sys.argv[1:]`` if ``None``.

    Returns
    -------
    int
        Exit status (0 on success).
    """
    parser = argparse.ArgumentParser(
        prog="audioexp-minicorpus",
        description="Write a miniature synthetic corpus in the on-disk layout of a real one.",
    )
    parser.add_argument("kind", help=f"corpus kind; one of: {', '.join(sorted(WRITERS))}")
    parser.add_argument("out_dir", type=Path, help="output directory")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    parser.add_argument(
        "--clips-per-class",
        type=int,
        default=None,
        help="clips per class (default: the writer's default); ignored, with a warning, "
        "by kinds that have no such parameter (voxceleb1: all its sizes are the writer's defaults)",
    )
    args = parser.parse_args(argv)
    kwargs: dict[str, Any] = {}
    if args.clips_per_class is not None:
        writer = WRITERS.get(args.kind)
        if writer is None or "clips_per_class" in inspect.signature(writer).parameters:
            kwargs["clips_per_class"] = args.clips_per_class
        else:
            print(f"warning: --clips-per-class is ignored for kind {args.kind!r}", file=sys.stderr)
    try:
        root = write_minicorpus(args.kind, args.out_dir, seed=args.seed, **kwargs)
    except ValueError as exc:
        parser.error(str(exc))
    print(f"wrote {args.kind} minicorpus to {root} ({count_audio(root)} audio files, seed {args.seed})")
    return 0



if __name__ == "__main__":
    sys.exit(main())
