"""Manifest building for a large corpus tree: ours against a plain pathlib walk.

The FM broadcast corpus of Han (2021) has 3.89 M clips. This writes a tree of empty
``.wav`` files in the corpus layout (``speech/<recording>/<clip>.wav``), then times

- ours: ``prepare_fm_broadcast`` (os.scandir walk streamed to a CSV manifest) and
  ``read_manifest_csv`` into the packed ``PathTable``;
- reference: ``sorted(Path(root).rglob('*.wav'))`` kept as a list of strings, the
  obvious way to list a corpus;

and prints build time (walk + CSV), load time and resident memory of a fresh process that
loads the cached manifest (as a run's ``setup`` does), against the goals of issue 17 at the
corpus's 3.89 M clips (build <= 60 s, load <= 2 s, RSS <= 1 GB), with the reference's time
and memory and the ratios. The default is the full size (a tree of 3.89 M empty files: a few
minutes and ~1 GB of inodes); a smaller ``--files`` extrapolates linearly.

    python bench/bench_manifest.py [--files 3890208] [--no-reference]
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import subprocess
import sys
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


def rss_mib() -> float:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS")) / 1024


LOAD = """
import json, sys, time
from audioexp.data.fm_broadcast import CLASS_NAMES
from audioexp.data.manifest import read_manifest_csv
def rss():
    with open('/proc/self/status') as f:
        return next(int(l.split()[1]) for l in f if l.startswith('VmRSS')) / 1024
before = rss()
t0 = time.perf_counter()
m = read_manifest_csv(sys.argv[1], sys.argv[2], CLASS_NAMES)
seconds = time.perf_counter() - t0
print(json.dumps({"seconds": seconds, "rows": len(m), "rss_mib": rss(), "rss_added_mib": rss() - before}))
"""


def load_in_fresh_process(csv: Path, root: Path) -> dict:
    """The cached manifest read by a new Python process (as a run's ``setup`` does): seconds,
    and the process's resident memory after it (and the part the manifest added)."""
    out = subprocess.run([sys.executable, "-c", LOAD, str(csv), str(root)], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--files", type=int, default=REAL_CORPUS)
    parser.add_argument("--keep", action="store_true", help="keep the temporary tree")
    parser.add_argument("--no-reference", action="store_true", help="skip the rglob reference (slow at full size)")
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="audioexp-bench-"))
    root = tmp / "fm"
    t0 = time.perf_counter()
    make_tree(root, args.files)
    print(f"tree: {args.files:,} empty files written in {time.perf_counter() - t0:.1f} s under {root}")
    try:
        # warm the OS directory cache for both contenders alike
        sum(1 for _ in os.walk(root))
        n = args.files
        csv, t_build, peak_build = timed(lambda: prepare_fm_broadcast(root, tmp / "cache", rebuild=True))
        loaded = load_in_fresh_process(csv, root)
        assert loaded["rows"] == n, loaded
        print(f"ours: build (walk + CSV) {t_build:.1f} s ({n / t_build:,.0f} files/s, peak {peak_build / 2**20:.0f} MiB "
              f"Python); load in a fresh process {loaded['seconds']:.2f} s, RSS {loaded['rss_mib']:.0f} MiB "
              f"({loaded['rss_added_mib']:.0f} MiB for the manifest)")
        scale = REAL_CORPUS / n
        goals = [("build", t_build * scale, 60.0, "s"), ("load", loaded["seconds"] * scale, 2.0, "s"),
                 ("RSS", loaded["rss_mib"] - loaded["rss_added_mib"] + loaded["rss_added_mib"] * scale, 1024.0, "MiB")]
        label = "at" if n == REAL_CORPUS else f"extrapolated (x{scale:.1f}) to"
        print(f"goals {label} {REAL_CORPUS:,} clips: " + "; ".join(
            f"{name} {value:.1f} {unit} (goal <= {goal:g} {unit}: {'met' if value <= goal else 'NOT met'})"
            for name, value, goal, unit in goals))
        if not args.no_reference:
            manifest = read_manifest_csv(csv, root, CLASS_NAMES)
            held = manifest.paths.nbytes + manifest.labels.nbytes + manifest.groups.nbytes
            del manifest

            def reference():
                return [str(p.relative_to(root)) for p in sorted(Path(root).rglob("*.wav"))]

            listing, t_ref, peak_ref = timed(reference)
            assert len(listing) == n
            list_bytes = sum(len(s) + 49 for s in listing) + 8 * len(listing)  # str objects + list slots
            print(f"reference (sorted pathlib rglob, a list of str): {t_ref:.1f} s, peak {peak_ref / 2**20:.0f} MiB, "
                  f"list {list_bytes / 2**20:.0f} MiB")
            print(f"ratio (reference / ours): time {t_ref / t_build:.2f}x, peak memory {peak_ref / peak_build:.2f}x, "
                  f"held memory {list_bytes / held:.2f}x (ours: {held / 2**20:.0f} MiB packed)")
        print("(the manifest is built once and cached; later runs only load it)")
    finally:
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
