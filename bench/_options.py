"""Command-line options of the benchmarks that take plain typed options and a thread count."""

from __future__ import annotations

import argparse

import torch


def parse_options(doc: str, **defaults: int | float | str) -> argparse.Namespace:
    """Parse ``--name`` options (``min_seconds`` -> ``--min-seconds``), typed by their defaults.

    ``defaults`` must hold ``threads``: torch's intra-op thread count is set to the parsed value.
    """
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    for name, default in defaults.items():
        parser.add_argument("--" + name.replace("_", "-"), type=type(default), default=default)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    return args
