"""Prediction throughput of every system on CPU: PyTorch (the framework) against ONNX Runtime.

For each system a short run is made on its generated miniature corpus (the real network and
front-end; weights after a few batches, which does not change the cost), or taken from
``--runs NAME=RUN_DIR``. Then the same audio files (copies of corpus audio cut or tiled to the
system's typical length) go through ``audioexp.load(run).predict_files`` twice: once as trained
(PyTorch; the GMM and probe back-ends: NumPy / scikit-learn), once with the network swapped for
its ONNX export run by ONNX Runtime (the GMM systems: their exported scoring modules), every
other step (reading, resampling, windowing, the front-ends of the GMM systems) the same. Prints
files per second, the real-time factor (processing seconds per second of audio; below 1 is
faster than real time) and the ratio ONNX Runtime / PyTorch of files per second.

    python bench/bench_predict.py [--files 16] [--threads 2] [--systems speech_music,vgg,adresnet,replay,probe]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

#: system -> (overrides of `python -m audioexp` that make a short run, seconds of each test file)
SYSTEMS = {
    "speech_music": (["+experiment=demo", "+debug=limit", "trainer.max_epochs=1"], 5.0),
    "vgg": (["+experiment=voxceleb_centerloss", "data=voxceleb1_mini", "+debug=limit",
             "trainer.max_epochs=1"], 8.0),
    "adresnet": (["+experiment=iemocap_adresnet", "data=iemocap_mini", "model.pretrained=none", "model.pretrained_run=null",
                  "+debug=limit", "trainer.max_epochs=1"], 4.0),
    "replay": (["+experiment=asvspoof17_sdfb_gmm", "data=asvspoof2017_mini", "backend.n_components=64"], 3.0),
    "probe": (["+experiment=emodb_probe", "data=emodb_mini", "embedder=egemaps", "probe=quick"], 2.5),
}


def make_run(name: str, overrides: list[str], work: Path) -> Path:
    run_dir = work / "runs" / name
    if not run_dir.exists():
        cmd = [sys.executable, "-m", "audioexp", *overrides, "logger=none", f"paths.data_dir={work / 'data'}",
               f"hydra.run.dir={run_dir}"]
        print(f"[{name}] making a short run: {' '.join(cmd[1:])}", flush=True)
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            raise SystemExit(f"[{name}] the run failed:\n{proc.stdout[-3000:]}{proc.stderr[-3000:]}")
    return run_dir


def test_files(predictor, work: Path, name: str, seconds: float, count: int) -> tuple[list[Path], float]:
    """``count`` WAV files of ``seconds`` at the run's rate, cut or tiled from corpus audio."""
    sources = sorted((work / "data").rglob("*.wav"))
    rate = predictor.sample_rate
    out_dir = work / "files" / name
    out_dir.mkdir(parents=True, exist_ok=True)
    files = []
    for i in range(count):
        y, sr = sf.read(sources[(i * 7919) % len(sources)], dtype="float32")
        if y.ndim > 1:
            y = y.mean(1)
        if sr != rate:
            import librosa

            y = librosa.resample(y, orig_sr=sr, target_sr=rate)
        n = int(seconds * rate)
        y = np.tile(y, -(-n // len(y)))[:n]
        files.append(out_dir / f"{i:03d}.wav")
        sf.write(files[-1], y, rate)
    return files, count * seconds


class OrtNetwork:
    """An ONNX Runtime session in the place of a run's network (``model(x)`` and ``model.embed(x)``)."""

    def __init__(self, path: Path, threads: int) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

    def __call__(self, waveform: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(self.session.run(None, {"waveform": waveform.numpy()})[0])

    embed = __call__


class OrtGMM:
    """An exported GMM scoring module in the place of a system's back-end (``score([frames])``)."""

    def __init__(self, path: Path, threads: int) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

    def score(self, features: list[np.ndarray]) -> np.ndarray:
        return np.array([self.session.run(None, {"frames": np.asarray(f, dtype=np.float64)})[0][0] for f in features])


def timed(predictor, files, repeats: int) -> float:
    if getattr(predictor, "kind", "") == "probe":
        # one new speaker, normalised over its files (as a list file of `path speaker` lines says)
        listing = files[0].parent / "files.txt"
        listing.write_text("".join(f"{f} bench_speaker\n" for f in files))
        files = [listing]
    predictor.predict_files(files, progress=False)  # warm-up
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        rows = predictor.predict_files(files, progress=False)
        best = min(best, time.perf_counter() - start)
        bad = [r for r in rows if r.get("error")]
        if bad:
            raise RuntimeError(f"{len(bad)} files failed: {bad[0]['error']}")
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--files", type=int, default=16)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--systems", default=",".join(SYSTEMS))
    parser.add_argument("--runs", nargs="*", default=[], help="NAME=RUN_DIR: time these runs instead of short ones")
    parser.add_argument("--work", help="folder for the short runs and files (default: a temporary one)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    given = dict(r.split("=", 1) for r in args.runs)

    import audioexp
    from audioexp.export import export_countermeasure, export_run

    tmp = tempfile.TemporaryDirectory() if not args.work else None
    work = Path(args.work or tmp.name)
    rows = []
    for name in args.systems.split(","):
        overrides, seconds = SYSTEMS[name]
        run_dir = Path(given[name]) if name in given else make_run(name, overrides, work)
        predictor = audioexp.load(run_dir)
        files, audio_seconds = test_files(predictor, work, name, seconds, args.files)
        t_torch = timed(predictor, files, args.repeats)
        t_ort = None
        if name == "replay":
            for path in export_countermeasure(run_dir, "onnx", work / "export" / name):
                system = json.loads(path.with_suffix(".onnx.json").read_text())["system"]
                if system in predictor.backends:
                    predictor.backends[system] = OrtGMM(path, args.threads)
            t_ort = timed(predictor, files, args.repeats)
        elif name != "probe":  # the probe's classifiers are scikit-learn's: nothing to export
            onnx = export_run(run_dir, "onnx", work / "export" / f"{name}.onnx")
            predictor.model = OrtNetwork(onnx, args.threads)
            t_ort = timed(predictor, files, args.repeats)
        rows.append((name, len(files), audio_seconds, t_torch, t_ort))

    print(f"\nprediction on CPU, {args.threads} thread(s), best of {args.repeats}; RTF = processing s / audio s\n")
    print(f"{'system':<14}{'files':>6}{'audio s':>9}{'PyTorch files/s':>17}{'RTF':>8}{'ORT files/s':>13}{'RTF':>8}"
          f"{'ORT/PyTorch':>13}")
    for name, n, audio, t_torch, t_ort in rows:
        ort_cols = (f"{n / t_ort:>13.2f}{t_ort / audio:>8.4f}{t_torch / t_ort:>13.2f}" if t_ort
                    else f"{'n/a':>13}{'':>8}{'':>13}")
        print(f"{name:<14}{n:>6}{audio:>9.1f}{n / t_torch:>17.2f}{t_torch / audio:>8.4f}{ort_cols}")
    print("\nspeech_music: the demo recipe (ResNet18 on its small log-mel); vgg: VGG-B at full width; adresnet:"
          " the IEMOCAP ResNet with its VAD-packed frames."
          "\nreplay: the front-end (SDFB) runs in audioexp for both columns; only the GMM scoring differs."
          "\nprobe: openSMILE + scikit-learn (no ONNX export).")
    if tmp is not None:
        tmp.cleanup()


if __name__ == "__main__":
    main()
