"""Manifest building for a large corpus tree: ours against a plain pathlib walk.

The FM broadcast corpus of Han (2021) has 3.89 M clips. This writes a tree of empty
``.wav`` files in the corpus layout (``speech/<recording>/<clip>.wav``), then times

- ours: ``prepare_fm_broadcast`` (os.scandir walk streamed to a CSV manifest) and
  ``read_manifest_csv`` into the packed ``PathTable``;
- reference: ``sorted(Path(root).rglob('*.wav'))`` kept as a list of strings, the
  obvious way to list a corpus;

and prints files per second, peak Python memory (tracemalloc) and resident memory of the
in-memory file list, with the ratios, and an extrapolation to 3.89 M clips.

    python bench/bench_manifest.py [--files 300000]
"""

from __future__ import annotations

import argparse
import gc
import os
import shutil
import tempfile
import time
import tracemalloc
from pathlib import Path

from audioexp.data.fm_broadcast import CLASS_NAMES, prepare_fm_broadcast
from audioexp.data.manifest import read_manifest_csv

REAL_CORPUS = 3_890_208


def make_tree(root: Path, n_files: int, clips_per_recording: int = 1000) -> None:
    for i in range(n_files):
        label = CLASS_NAMES[i % 2]
        rec, clip = divmod(i // 2, clips_per_recording)
        d = root / label / f"{label}_rec{rec:05d}"
        if clip == 0:
            d.mkdir(parents=True, exist_ok=True)
        (d / f"{label}_rec{rec:05d}_{clip:06d}.wav").touch()


def timed(fn):
    gc.collect()
    tracemalloc.start()
    t0 = time.perf_counter()
    result = fn()
    seconds = time.perf_counter() - t0
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return result, seconds, peak


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--files", type=int, default=300_000)
    parser.add_argument("--keep", action="store_true", help="keep the temporary tree")
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="audioexp-bench-"))
    root = tmp / "fm"
    t0 = time.perf_counter()
    make_tree(root, args.files)
    print(f"tree: {args.files:,} empty files written in {time.perf_counter() - t0:.1f} s under {root}")
    try:
        # warm the OS directory cache for both contenders alike
        sum(1 for _ in os.walk(root))

        def ours():
            path = prepare_fm_broadcast(root, tmp / "cache", rebuild=True)
            return read_manifest_csv(path, root, CLASS_NAMES)

        def reference():
            return [str(p.relative_to(root)) for p in sorted(Path(root).rglob("*.wav"))]

        manifest, t_ours, peak_ours = timed(ours)
        listing, t_ref, peak_ref = timed(reference)
        assert len(manifest) == len(listing) == args.files
        n = args.files
        print(f"{'':12s}{'seconds':>10s}{'files/s':>14s}{'peak MiB':>11s}{'list MiB':>11s}")
        list_bytes = sum(len(s) + 49 for s in listing) + 8 * len(listing)  # str objects + list slots
        rows = [
            ("ours", t_ours, peak_ours, manifest.paths.nbytes + manifest.labels.nbytes + manifest.groups.nbytes),
            ("reference", t_ref, peak_ref, list_bytes),
        ]
        for name, secs, peak, held in rows:
            print(f"{name:12s}{secs:10.2f}{n / secs:14,.0f}{peak / 2**20:11.1f}{held / 2**20:11.1f}")
        print(f"ratio (reference / ours): time {t_ref / t_ours:.2f}x, peak memory {peak_ref / peak_ours:.2f}x, "
              f"held memory {list_bytes / rows[0][3]:.2f}x")
        print(f"extrapolated to {REAL_CORPUS:,} clips: ours {t_ours * REAL_CORPUS / n / 60:.1f} min, "
              f"{rows[0][3] * REAL_CORPUS / n / 2**20:.0f} MiB held; reference {t_ref * REAL_CORPUS / n / 60:.1f} min, "
              f"{list_bytes * REAL_CORPUS / n / 2**20:.0f} MiB held")
        print("(the manifest is built once and cached; later runs only read the CSV)")
    finally:
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
