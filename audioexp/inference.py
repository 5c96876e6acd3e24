"""Use a finished run from Python: load it, embed audio files, score pairs::

    from audioexp.inference import load_run, embed_file, score_pair
    model = load_run("logs/train/runs/voxceleb_centerloss/2026-11-23_01-00-00")
    embed_file(model, "a.wav").shape            # (ndims,)
    score_pair(model, "a.wav", "b.wav")         # cosine similarity in [-1, 1]
"""

from __future__ import annotations

import dataclasses
import os

import numpy as np
import torch

from audioexp.data.audio import fix_length, load_audio, to_mono_at_rate
from audioexp.data.validate import AudioChecks
from audioexp.utils.runs import load_model


def load_run(run_dir: str | os.PathLike, checkpoint: str = "best", map_location: str = "cpu"):
    """The trained model of a run's output dir (its saved config plus ``checkpoint``), in eval mode.

    A run dir is code-adjacent input: its config's targets are checked and its checkpoint is
    loaded with ``weights_only=True`` (:mod:`audioexp.utils.trust`), but only load run dirs
    you trust.
    """
    return load_model(run_dir, checkpoint, map_location)


@torch.no_grad()
def embed_file(model, path: str | os.PathLike, checks: AudioChecks | None = None) -> np.ndarray:
    """The model's utterance embedding of a whole audio file, shape (dim,).

    The file is read at the model's sample rate (resampled and down-mixed if needed);
    ``checks`` (e.g. the run's own, :func:`run_checks`) refuse bad audio naming the file.
    """
    sample_rate = getattr(model.frontend, "sample_rate", 16000)
    waveform = load_audio(path, sample_rate, checks=checks)[None].to(next(model.parameters()).device)
    return model.embed(waveform)[0].float().cpu().numpy()


def cosine_score(a: np.ndarray, b: np.ndarray) -> float:
    """Cosine similarity of two embeddings.

    Examples
    --------
    >>> round(cosine_score(np.array([1.0, 0.0]), np.array([1.0, 1.0])), 4)
    0.7071
    """
    return float(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b) + 1e-12))


def score_pair(model, path_a: str | os.PathLike, path_b: str | os.PathLike) -> float:
    """Cosine score of two files' embeddings (higher: more likely the same speaker)."""
    return cosine_score(embed_file(model, path_a), embed_file(model, path_b))


def run_checks(data_cfg) -> AudioChecks:
    """The audio checks of a run's data config (its rate, lengths, rate policy, silence)."""
    get = data_cfg.get
    return AudioChecks(int(get("sample_rate", 16000)), float(get("min_seconds", get("min_clip_seconds", 0.0)) or 0.0),
                       get("max_seconds"), get("resample", "any"), get("silence_db", -60.0))


# --- predict: a finished run as a function of audio -------------------------------------------

#: Suffixes of the audio files a folder argument is searched for (what soundfile reads).
AUDIO_SUFFIXES = (".wav", ".flac", ".ogg")
#: Suffixes of list files: one audio path per line, relative to the list's folder.
LIST_SUFFIXES = (".txt", ".lst", ".list", ".scp")


def expand_paths(paths) -> list:
    """Audio files named by ``paths``: files as given, folders recursed (sorted, the
    :data:`AUDIO_SUFFIXES`), list files (:data:`LIST_SUFFIXES`) read line by line (blank lines
    and ``#`` comments skipped; relative paths are relative to the list's folder).

    Raises
    ------
    FileNotFoundError
        A path that does not exist (named), or nothing to predict on.
    """
    from pathlib import Path

    out = []
    for p in map(Path, paths):
        if p.is_dir():
            out.extend(sorted(f for f in p.rglob("*") if f.is_file() and f.suffix.lower() in AUDIO_SUFFIXES))
        elif p.suffix.lower() in LIST_SUFFIXES and p.is_file():
            out.extend(listed_path(p, line) for line in list_file_lines(p))
        elif p.exists():
            out.append(p)
        else:
            raise FileNotFoundError(f"{p} does not exist (give audio files, folders or a list file)")
    if not out:
        raise FileNotFoundError(f"no audio file ({', '.join(AUDIO_SUFFIXES)}) in {[str(p) for p in paths]}")
    return out


def list_file_lines(path) -> list[str]:
    """The entries of a list file: its lines without ``#`` comments and surrounding blanks,
    empty ones dropped."""
    from pathlib import Path

    return [e for e in (line.split("#", 1)[0].strip() for line in Path(path).read_text().splitlines()) if e]


def listed_path(list_file, entry: str):
    """A path named in ``list_file``: as given when absolute, else relative to the list's folder."""
    from pathlib import Path

    q = Path(entry)
    return q if q.is_absolute() else Path(list_file).parent / q


def window_starts(num_samples: int, window: int, hop: int) -> list[int]:
    """Start of each window that tiles ``num_samples`` (every ``hop``; one more, ending at the
    signal's end, when the last falls short of it); one window at 0 for a shorter signal.

    Examples
    --------
    >>> window_starts(10, 4, 4), window_starts(8, 4, 4), window_starts(3, 4, 4)
    ([0, 4, 6], [0, 4], [0])
    """
    if window < 1 or hop < 1:
        raise ValueError(f"window and hop must be >= 1 sample, got {window}, {hop}")
    if num_samples <= window:
        return [0]
    starts = list(range(0, num_samples - window + 1, hop))
    if starts[-1] + window < num_samples:
        starts.append(num_samples - window)
    return starts


def read_waveform(audio, sample_rate: int | None, target_rate: int, checks: AudioChecks | None = None) -> torch.Tensor:
    """A file (path) or an in-memory waveform as a mono float32 tensor at ``target_rate``,
    converted as in training (down-mixed, resampled: :func:`audioexp.data.audio.to_mono_at_rate`).

    A path is read with ``checks`` (errors name the file); a waveform is ``(time,)`` or
    ``(channels, time)`` / ``(time, channels)`` (the longer axis is time) and needs its
    ``sample_rate``.
    """
    if isinstance(audio, (str, os.PathLike)):
        return load_audio(audio, target_rate, checks=checks)
    if sample_rate is None:
        raise ValueError("a waveform needs its sample_rate")
    x = np.asarray(audio, dtype=np.float32)
    if x.ndim == 1:
        x = x[:, None]
    elif x.ndim == 2 and x.shape[0] < x.shape[1]:  # (channels, time): the longer axis is time
        x = x.T
    if x.ndim != 2:
        raise ValueError(f"a waveform must be (time,) or (channels, time), got shape {x.shape}")
    x = to_mono_at_rate(x, int(sample_rate), target_rate)
    if not torch.isfinite(x).all():
        raise ValueError("the waveform holds NaN or infinite values")
    return x


#: What makes a file's row an error row instead of stopping a predict call (an unreadable or
#: refused file: AudioFileError, a RuntimeError; a missing one: OSError; a bad waveform or a
#: speaker without statistics: ValueError).
ROW_ERRORS = (OSError, ValueError, RuntimeError)


def predict_rows(predict, files, to_row, progress: bool = True, desc: str = "predict") -> list[dict]:
    """One row per file: ``{"path", **to_row(predict(path)), "error": ""}``, or ``{"path",
    "error": why}`` for a file that could not be read or scored (reported in its row, not
    fatal); a progress bar over two or more files."""
    from tqdm.auto import tqdm

    rows = []
    for path in tqdm(files, desc=desc, unit="file", disable=not progress or len(files) < 2):
        row = {"path": str(path)}
        try:
            row.update(to_row(predict(path)))
        except ROW_ERRORS as err:  # AudioFileError is a RuntimeError
            row["error"] = str(err).replace("\n", " ")
        else:
            row["error"] = ""
        rows.append(row)
    return rows


class Predictor:
    """A finished run as a function of audio (``audioexp.load(run_dir)``).

    - classifiers (speech/music, VoxCeleb identification, IEMOCAP emotion): :meth:`predict`
      gives the class probabilities and the top class;
    - speaker verification (a VoxCeleb verification run): :meth:`predict` gives the embedding,
      :meth:`score` the cosine score of two files or waveforms.

    Audio at any rate or channel count is converted as in training (down-mixed, resampled,
    each said once; a run whose corpus refuses other rates refuses them here too). Long files:

    - a run on fixed-length clips (speech/music, ``data.clip_seconds``): the file is cut into
      windows of the clip length tiling it (the last one ending at the file's end), the windows
      go through the network ``batch_size`` at a time (memory bounded by that), and the class
      probabilities are averaged over the windows; a shorter file is zero-padded at its end, as
      in evaluation;
    - a run on whole utterances (VoxCeleb, IEMOCAP): the file goes through whole, as in
      evaluation; beyond ``model.eval_window_seconds`` (60 s) the network itself embeds it
      window by window and pools the windows' embeddings weighted by their frames
      (:mod:`audioexp.networks.windowed`), so memory is bounded by the window.
    """

    def __init__(self, model, cfg, device: str = "cpu", batch_size: int = 8) -> None:
        self.model = model.to(device).eval()
        self.cfg = cfg
        self.device = device
        self.batch_size = int(batch_size)
        data = cfg.data
        self.sample_rate = int(getattr(model.frontend, "sample_rate", data.get("sample_rate", 16000)))
        # fixed-length clips (data.clip_seconds): windows of the clip length, a shorter file padded
        # with zeros at its end as in evaluation; utterance corpora: the whole file, as in
        # evaluation (the network windows an utterance longer than model.eval_window_seconds)
        clip = data.get("clip_seconds")
        self.window_seconds = float(clip) if clip else None
        self.pad_short = bool(clip)
        self.kind = "embedding" if getattr(model, "protocol", None) == "verification" else "classifier"
        self.class_names = list(getattr(model, "class_names", []))
        # long files are windowed here, so the corpus's upper length limit does not apply
        self.checks = dataclasses.replace(run_checks(data), max_seconds=None)

    @classmethod
    def from_run(cls, run_dir, checkpoint: str = "best", device: str = "cpu", batch_size: int = 8) -> Predictor:
        from audioexp.utils.runs import load_run_config, without_pretrained_weights

        cfg = without_pretrained_weights(load_run_config(run_dir))
        return cls(load_run(run_dir, checkpoint, map_location=device), cfg, device, batch_size)

    def _waveform(self, audio, sample_rate: int | None) -> torch.Tensor:
        return read_waveform(audio, sample_rate, self.sample_rate, self.checks)

    @torch.no_grad()
    def _windows_out(self, x: torch.Tensor) -> tuple[torch.Tensor, int]:
        """Per-window outputs (probabilities or embeddings), shape (windows, dim), and their count."""
        n = x.shape[-1]
        window = int(round(self.window_seconds * self.sample_rate)) if self.window_seconds else n
        if self.pad_short and n < window:
            x, n = fix_length(x, window, "start"), window
        starts = window_starts(n, window, window)
        outs = []
        for i in range(0, len(starts), self.batch_size):
            batch = torch.stack([x[s : s + window] for s in starts[i : i + self.batch_size]]).to(self.device)
            if self.kind == "embedding":
                outs.append(self.model.embed(batch).float().cpu())
            else:
                outs.append(self.model(batch).float().softmax(dim=1).cpu())
        return torch.cat(outs), len(starts)

    def predict(self, audio, sample_rate: int | None = None) -> dict:
        """One file (path) or waveform (with ``sample_rate``): ``{"probs": {class: p}, "top_class",
        "top_prob"}`` (classifier) or ``{"embedding": ndarray}`` (verification), plus
        ``"windows"`` and ``"seconds"``."""
        x = self._waveform(audio, sample_rate)
        out, num_windows = self._windows_out(x)
        result = {"windows": num_windows, "seconds": x.shape[-1] / self.sample_rate}
        if self.kind == "embedding":
            result["embedding"] = out.mean(dim=0).numpy()
            return result
        probs = out.mean(dim=0).numpy()
        top = int(np.argmax(probs))
        result.update(probs=dict(zip(self.class_names, map(float, probs))), top_class=self.class_names[top],
                      top_prob=float(probs[top]))
        return result

    def score(self, a, b, sample_rate: int | None = None) -> float:
        """Cosine score of two files or waveforms (verification runs)."""
        if self.kind != "embedding":
            raise ValueError("score() compares speaker embeddings: it needs a verification run "
                             "(e.g. +experiment=voxceleb_centerloss_verification)")
        return cosine_score(self.predict(a, sample_rate)["embedding"], self.predict(b, sample_rate)["embedding"])

    def score_trials(self, trials, audio_root=None, progress: bool = True) -> list[dict]:
        """Cosine scores of a trial list (VoxCeleb's ``veri_test.txt`` format: ``1|0 path_a
        path_b`` per line, 1 = same speaker), each file embedded once.

        Paths are relative to ``audio_root``: by default the list's folder's ``wav/`` when it
        exists (the VoxCeleb1 layout), else the list's folder. One row per trial: ``label``,
        ``enrol``, ``test``, ``score`` and ``error`` (a file that could not be read: its trials
        get no score, the others still do).
        """
        from pathlib import Path

        from tqdm.auto import tqdm

        from audioexp.data.voxceleb1 import read_trial_list

        if self.kind != "embedding":
            raise ValueError("score_trials() compares speaker embeddings: it needs a verification run "
                             "(e.g. +experiment=voxceleb_centerloss_verification)")
        trials = Path(trials)
        pairs = read_trial_list(trials)
        if audio_root is None:
            audio_root = trials.parent / "wav" if (trials.parent / "wav").is_dir() else trials.parent
        embeddings, errors = {}, {}
        files = sorted({f for _, a, b in pairs for f in (a, b)})
        for f in tqdm(files, desc="embed", unit="file", disable=not progress):
            try:
                embeddings[f] = self.predict(Path(audio_root) / f)["embedding"]
            except ROW_ERRORS as err:
                errors[f] = str(err).replace("\n", " ")
        rows = []
        for label, a, b in pairs:
            bad = "; ".join(errors[f] for f in (a, b) if f in errors)
            score = "" if bad else cosine_score(embeddings[a], embeddings[b])
            rows.append({"label": label, "enrol": a, "test": b, "score": score, "error": bad})
        return rows

    def predict_files(self, paths, progress: bool = True) -> list[dict]:
        """One row per file of ``paths`` (files, folders, list files): the path, the prediction
        (classifier: ``top_class``, ``top_prob``, ``prob_<class>``; verification: ``embedding``
        as space-separated numbers) and ``error`` (empty, or why the file could not be read:
        an unreadable file is reported in its row, not fatal)."""
        def to_row(result: dict) -> dict:
            row = {"windows": result["windows"], "seconds": round(result["seconds"], 3)}
            if self.kind == "embedding":
                row["embedding"] = " ".join(f"{v:.6g}" for v in result["embedding"])
            else:
                row.update(top_class=result["top_class"], top_prob=round(result["top_prob"], 6))
                row.update({f"prob_{k}": round(v, 6) for k, v in result["probs"].items()})
            return row

        return predict_rows(self.predict, expand_paths(paths), to_row, progress)
