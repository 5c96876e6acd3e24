"""The header scan at prepare at corpus scale: ours against a plain soundfile.info loop.

Every corpus's prepare step reads each file's header (:func:`audioexp.data.validate.audit_audio`:
soundfile info plus the WAV ``data`` chunk's declared size, a thread pool) and caches the
facts by size and mtime, so a second prepare only stats the files. This writes ``--files``
short WAV files in the FM broadcast layout, then times

- ours, first prepare: ``audit_audio`` with an empty cache (every header read, cache written);
- ours, next prepare: ``audit_audio`` with the cache (every file stat-ed, none read);
- reference: ``[soundfile.info(p) for p in paths]``, the obvious loop (which cannot see a
  truncated WAV: soundfile reports the frames present, not the ones declared);

and prints files per second, the ratios, and what the 3.89 M clips of the real corpus
would take at these rates.

    python bench/bench_header_scan.py [--files 100000] [--workers 1]
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf

from audioexp.data.validate import audit_audio

REAL_CORPUS = 3_890_208


def make_tree(root: Path, n_files: int, clips_per_recording: int = 1000) -> list[str]:
    """``n_files`` distinct 0.05-s 16-bit WAVs (different bytes, so no file is a copy)."""
    rng = np.random.default_rng(0)
    data = (0.1 * rng.standard_normal(800)).astype(np.float32)
    root.mkdir(parents=True)
    sf.write(root / "template.wav", data, 16000, subtype="PCM_16")
    template = bytearray((root / "template.wav").read_bytes())
    paths = []
    for i in range(n_files):
        label = ("speech", "music")[i % 2]
        rec, clip = divmod(i // 2, clips_per_recording)
        d = root / label / f"rec{rec:05d}"
        if clip == 0:
            d.mkdir(parents=True, exist_ok=True)
        template[-4:] = i.to_bytes(4, "little")
        path = d / f"{clip:06d}.wav"
        path.write_bytes(template)
        paths.append(str(path))
    return paths


def main() -> None:
    from _options import parse_options

    args = parse_options(__doc__, files=100_000, workers=1, threads=1)
    tmp = Path(tempfile.mkdtemp(prefix="audioexp-bench-headers-"))
    try:
        t0 = time.perf_counter()
        paths = make_tree(tmp / "fm", args.files)
        print(f"tree: {args.files:,} WAV files written in {time.perf_counter() - t0:.1f} s")
        sum(1 for _ in os.walk(tmp / "fm"))  # warm the directory cache for every contender alike

        t0 = time.perf_counter()
        facts = audit_audio(paths, tmp / "cache" / "facts.csv", workers=args.workers, progress=False)
        t_first = time.perf_counter() - t0
        t0 = time.perf_counter()
        again = audit_audio(paths, tmp / "cache" / "facts.csv", workers=args.workers, progress=False)
        t_next = time.perf_counter() - t0
        t0 = time.perf_counter()
        infos = [sf.info(p) for p in paths]
        t_ref = time.perf_counter() - t0
        assert len(facts) == len(again) == len(infos) == args.files
        assert all(f.frames == 800 and not f.error for f in facts.values())

        n = args.files
        print(f"{'':34s} {'seconds':>8s} {'files/s':>10s} {'vs reference':>13s} {'3.89 M clips':>13s}")
        for name, t in (("ours, first prepare (headers)", t_first), ("ours, next prepare (stat only)", t_next),
                        ("reference: soundfile.info loop", t_ref)):
            print(f"{name:34s} {t:8.2f} {n / t:10,.0f} {t_ref / t:12.2f}x {REAL_CORPUS / (n / t) / 60:10.1f} min")
        print(f"(workers={args.workers}; files in the page cache: on a network file system each open waits, "
              "and AUDIOEXP_SCAN_WORKERS=8..32 threads help)")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
