"""A saved embedding probe (a ``task=probe`` run) as a function of audio::

    import audioexp
    probe = audioexp.load("logs/probe/runs/emodb_probe/DATE")   # a ProbePredictor
    probe.predict("03a01Fa.wav")      # {"top_class": "happiness", "top_prob": 0.71, "probs": {...}, ...}
    probe.predict_files(["clips.txt"])   # list file lines "path speaker": one row per file

What the run writes into ``RUN_DIR/probe/`` (:func:`write_deployable_probe`, every file
written atomically):

- ``<classifier>.joblib``: for each classifier, the grid search's best pipeline fitted on
  split 0's training speakers (``GridSearchCV.best_estimator_``): the model whose test
  predictions the run scored on split 0 (with ``probe.protocol=split``, the run's one split,
  the model of its reported test UAR);
- ``probe.json``: class names, the classifiers saved, each one's test UAR (the run's, mean
  over splits, and split 0's), which is best by the run's test UAR (the default at predict),
  the embedder's ``settings()`` and config (and for BYOL-S with ``normalization=dataset``
  the log-mel mean and standard deviation it computed over the corpus), whether embeddings
  were standardised per speaker, split 0's test speakers, the scikit-learn / joblib / NumPy
  versions, the sample rate;
- ``test_predictions.csv``: split 0's test files (``file`` relative to ``data_root`` of
  ``probe.json``), their speaker, true class and each classifier's predicted class, to check
  that the saved models predict what the run scored;
- ``speaker_stats.npz`` (when the run standardised per speaker): per corpus speaker, the mean
  and population standard deviation of its raw embeddings (all of its files the run read), as
  :func:`audioexp.probes.functional.speaker_standardize` computed them, ``scale`` (the
  standard deviation with columns constant within the speaker set to 1:
  ``StandardScaler.scale_``'s convention) and the file count. Read with ``allow_pickle=False``.

Trust: a ``.joblib`` file is a pickle, and loading one runs whatever code it names. A run dir
is code-adjacent input (:mod:`audioexp.utils.trust`): :class:`ProbePredictor` checks the
run's config targets before building the embedder, but the classifiers themselves can only be
unpickled, so only load run dirs you trust.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import logging
import os
import platform
import warnings
from pathlib import Path

import numpy as np
import torch

from audioexp.data.emodb import EmoDBNameError, parse_emodb_name
from audioexp.inference import (
    LIST_SUFFIXES,
    ROW_ERRORS,
    expand_paths,
    list_file_lines,
    listed_path,
    read_waveform,
    run_checks,
)
from audioexp.probes.functional import speaker_statistics, standardize_with
from audioexp.utils.files import atomic_open, atomic_write_json, atomic_write_text

log = logging.getLogger(__name__)

__all__ = [
    "PROBE_DIR", "ProbePredictor", "choose_classifier", "expand_with_speakers", "speaker_statistics",
    "standardize_with", "write_deployable_probe",
]

#: Folder of the run dir holding the deployable probe.
PROBE_DIR = "probe"
PROBE_FORMAT = 1


# --- writing (end of task=probe) -----------------------------------------------------------------

def _versions() -> dict[str, str]:
    import joblib
    import sklearn

    return {"sklearn": sklearn.__version__, "joblib": joblib.__version__, "numpy": np.__version__,
            "python": platform.python_version()}


def write_deployable_probe(
    directory: str | os.PathLike,
    *,
    estimators: dict[str, object],
    split0: dict[str, dict],
    test_uar: dict[str, float],
    class_names: list[str],
    x_raw: np.ndarray,
    files: list[str],
    speakers: np.ndarray,
    labels: np.ndarray,
    test_index: np.ndarray,
    test_predictions: dict[str, np.ndarray],
    embedder,
    embedder_config: dict | None,
    speaker_normalization: bool,
    sample_rate: int,
    data_root: str | os.PathLike | None = None,
    protocol: str = "split",
    num_splits: int = 1,
) -> Path:
    """Write ``probe/`` (see the module docstring); returns its path.

    Parameters
    ----------
    estimators : dict
        Classifier -> split 0's fitted best pipeline.
    split0 : dict
        Classifier -> ``{"uar", "accuracy", "cv_uar", "best_params"}`` of split 0.
    test_uar : dict
        Classifier -> the run's test UAR (``metrics.json`` ``test/<clf>/uar``): chooses the best.
    x_raw, files, speakers, labels
        The raw (un-standardised) embeddings of the files the run read, their paths relative to
        ``data_root``, speakers and labels.
    test_index, test_predictions
        Split 0's test rows and each classifier's predicted labels for them.
    """
    import joblib

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    speakers = np.asarray(speakers).astype(str)
    classifiers = {}
    for clf, estimator in estimators.items():
        with atomic_open(directory / f"{clf}.joblib", mode="wb") as handle:
            joblib.dump(estimator, handle)
        classifiers[clf] = {"file": f"{clf}.joblib", "test_uar": float(test_uar[clf]),
                            "split0_test_uar": float(split0[clf]["uar"]),
                            "split0_test_accuracy": float(split0[clf]["accuracy"]),
                            "split0_cv_uar": float(split0[clf]["cv_uar"]), "split0_best_params": split0[clf]["best_params"],
                            "predict_proba": hasattr(estimator, "predict_proba")}
    order = list(estimators)
    best = max(order, key=lambda c: (float(test_uar[c]), -order.index(c)))  # ties: the first listed
    embedder_info = {"name": embedder.name, "class": f"{type(embedder).__module__}.{type(embedder).__qualname__}",
                     "settings": embedder.settings(), "config": embedder_config}
    if getattr(embedder, "normalization", None) == "dataset":
        if getattr(embedder, "corpus_mean", None) is None:
            raise RuntimeError("the BYOL-S embedder recorded no corpus log-mel statistics (normalization=dataset)")
        embedder_info["log_mel_mean"], embedder_info["log_mel_std"] = float(embedder.corpus_mean), float(embedder.corpus_std)
    test_speakers = sorted(set(speakers[test_index].tolist()))
    info = {
        "format": PROBE_FORMAT,
        "class_names": list(class_names),
        "classifiers": classifiers,
        "best": best,
        "best_by": "the run's test UAR (metrics.json test/<classifier>/uar; the mean over splits when there are several)",
        "deployed": "split 0's grid-search best pipeline, fitted on split 0's training speakers",
        "protocol": protocol,
        "num_splits": int(num_splits),
        "split0_test_speakers": test_speakers,
        "split0_train_speakers": sorted(set(speakers.tolist()) - set(test_speakers)),
        "embedder": embedder_info,
        "speaker_normalization": bool(speaker_normalization),
        "speaker_stats": "speaker_stats.npz" if speaker_normalization else None,
        "sample_rate": int(sample_rate),
        "dim": int(x_raw.shape[1]),
        "num_files": int(len(x_raw)),
        "data_root": str(Path(data_root).resolve()) if data_root is not None else None,
        "versions": _versions(),
    }
    if speaker_normalization:
        stats = speaker_statistics(x_raw, speakers)
        with atomic_open(directory / "speaker_stats.npz", mode="wb") as handle:
            np.savez(handle, **stats)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["file", "speaker", "true_class", *(f"pred_{c}" for c in order)])
    for j, i in enumerate(test_index):
        writer.writerow([files[i], speakers[i], class_names[int(labels[i])],
                         *(class_names[int(test_predictions[c][j])] for c in order)])
    atomic_write_text(directory / "test_predictions.csv", buffer.getvalue())
    atomic_write_json(directory / "probe.json", info)  # last: its presence means the folder is complete
    log.info("deployable probe (split 0's %s; best by test UAR: %s) written to %s", ", ".join(order), best, directory)
    return directory


# --- reading -------------------------------------------------------------------------------------

def choose_classifier(info: dict, name: str | None = None) -> str:
    """``name`` if given (it must be saved), else the run's best by test UAR.

    Examples
    --------
    >>> choose_classifier({"classifiers": {"svm": {}, "random_forest": {}}, "best": "svm"})
    'svm'
    """
    if name is not None:
        if name not in info["classifiers"]:
            raise ValueError(f"no classifier {name!r} saved in this run; it has {sorted(info['classifiers'])}")
        return name
    return info["best"]


def expand_with_speakers(paths) -> list[tuple[Path, str | None]]:
    """:func:`audioexp.inference.expand_paths`, plus the speaker of list-file lines
    ``path speaker`` (whitespace-separated; a line that is itself an existing path is a path
    without speaker; relative paths are relative to the list's folder). Other paths: speaker None.

    Examples
    --------
    >>> import tempfile
    >>> d = Path(tempfile.mkdtemp())
    >>> _ = (d / "a.wav").write_bytes(b""); _ = (d / "l.txt").write_text("a.wav 17  # comment\\nb.wav\\n")
    >>> [(p.name, s) for p, s in expand_with_speakers([d / "l.txt", d / "a.wav"])]
    [('a.wav', '17'), ('b.wav', None), ('a.wav', None)]
    """
    out: list[tuple[Path, str | None]] = []
    for p in map(Path, paths):
        if p.suffix.lower() in LIST_SUFFIXES and p.is_file():
            for line in list_file_lines(p):
                parts = line.rsplit(None, 1)
                whole = listed_path(p, line)
                if len(parts) == 1 or whole.exists():
                    out.append((whole, None))
                else:
                    out.append((listed_path(p, parts[0]), parts[1]))
        else:
            out.extend((q, None) for q in expand_paths([p]))
    if not out:
        raise FileNotFoundError(f"no audio file in {[str(p) for p in paths]}")
    return out


def speaker_from_name(path) -> str | None:
    """The speaker of an EmoDB file name (``03a01Fa.wav`` -> ``03``), else None.

    >>> speaker_from_name("x/16b10Wb.wav"), speaker_from_name("clip.wav")
    ('16', None)
    """
    try:
        return parse_emodb_name(Path(path).name).speaker
    except EmoDBNameError:
        return None


def _build_embedder(cfg_embedder, info: dict, device: str):
    import hydra
    from omegaconf import OmegaConf

    emb = info["embedder"]
    if emb.get("log_mel_mean") is not None:
        # BYOL-S normalization=dataset: the corpus's statistics, fixed, so that one file's
        # embedding does not depend on the other files predicted with it
        cfg_embedder = OmegaConf.merge(cfg_embedder, {"normalization": "fixed", "mean": emb["log_mel_mean"],
                                                      "std": emb["log_mel_std"]})
    embedder = hydra.utils.instantiate(cfg_embedder)
    if hasattr(embedder, "device"):
        embedder.device = device
    if not hasattr(embedder, "embed_waveform"):
        raise TypeError(f"the run's embedder {type(embedder).__name__} cannot embed one waveform (no embed_waveform)")
    return embedder


def _warn_versions(info: dict, folder: Path) -> None:
    saved = dict(info.get("versions", {}))
    now = _versions()
    settings = info["embedder"].get("settings", {})
    if "opensmile" in settings:
        import opensmile

        saved["opensmile"], now["opensmile"] = settings["opensmile"], opensmile.__version__
    differ = [f"{k} {saved[k]} (now {now[k]})" for k in ("sklearn", "joblib", "opensmile") if k in saved and saved[k] != now[k]]
    if differ:
        message = (f"{folder} was saved with {', '.join(differ)}: the classifiers or embeddings may load differently "
                   "or predict otherwise than the run scored")
        warnings.warn(message, UserWarning, stacklevel=3)


class ProbePredictor:
    """A ``task=probe`` run's saved probe as a function of audio (``audioexp.load`` on a probe run).

    A file is read as the corpus was (:func:`audioexp.data.audio.load_audio` at the run's rate
    with the run's checks, less the length limit: any rate or channel count converted as in
    training), embedded whole by the run's embedder (``embed_waveform``; BYOL-S with
    ``normalization=dataset`` uses the corpus's log-mel statistics, fixed), standardised per
    speaker when the run did, and classified by split 0's fitted classifier (``classifier``:
    one of ``probe.json``'s, default the best by the run's test UAR).

    Speaker normalisation (runs with ``probe.speaker_normalization=true``), per file:

    - the speaker: the second column of a list-file line ``path speaker`` if given (or the
      ``speaker`` argument of :meth:`predict`), else parsed from an EmoDB file name
      (``03a01Fa.wav``: ``03``), else unknown;
    - its statistics: a corpus speaker's saved ones (``normalization`` column ``corpus``);
      otherwise, in :meth:`predict_files`, the mean and standard deviation of that speaker's
      files in the same call when there are at least 2 read (``files``); otherwise the row gets
      an error saying what to give: a list file of ``path speaker`` lines with several files per
      speaker. Runs without speaker normalisation: ``none``.

    Not fatal (:meth:`predict_files`): an unreadable or rejected file, or a speaker without
    statistics, is reported in its row's ``error`` and the other files are predicted.
    ``top_class`` is the classifier's ``predict`` (what the run scored); ``top_prob`` and
    ``probs`` (``prob_<class>`` in rows) only when it has ``predict_proba`` (not an SVC, which
    the grids fit without ``probability=True``): then ``top_prob`` is ``top_class``'s
    probability, else None.

    Files are embedded one at a time (the embedders take whole clips); ``batch_size`` is kept
    for the interface :func:`audioexp.predict.load_predictor` gives every predictor.

    Trust: the classifiers are unpickled (joblib): a run dir is code-adjacent input, only load
    run dirs you trust (the config's targets are checked, :mod:`audioexp.utils.trust`; a
    pickle cannot be).
    """

    kind = "probe"

    def __init__(self, run_dir: str | os.PathLike, classifier: str | None = None, device: str = "cpu",
                 batch_size: int = 8) -> None:
        import joblib

        from audioexp.utils.runs import load_run_config

        self.run_dir = Path(run_dir)
        folder = self.run_dir / PROBE_DIR
        if not (folder / "probe.json").is_file():
            raise FileNotFoundError(
                f"{self.run_dir} has no {PROBE_DIR}/probe.json: give the output dir of a task=probe run that saved its "
                "probe (runs made before probes were saved: run the probe again)"
            )
        self.info = json.loads((folder / "probe.json").read_text())
        if self.info.get("format") != PROBE_FORMAT:
            raise ValueError(f"{folder}/probe.json has format {self.info.get('format')}, this code reads {PROBE_FORMAT}")
        cfg = load_run_config(self.run_dir)  # targets checked before anything is built
        _warn_versions(self.info, folder)
        self.class_names: list[str] = list(self.info["class_names"])
        self.sample_rate = int(self.info["sample_rate"])
        self.classifier = choose_classifier(self.info, classifier)
        self.device = device
        self.batch_size = int(batch_size)
        self.estimator = joblib.load(folder / self.info["classifiers"][self.classifier]["file"])  # a pickle: trusted run dirs only
        self.has_proba = hasattr(self.estimator, "predict_proba")
        # whole files are embedded here, so the corpus's upper length limit does not apply
        self.checks = dataclasses.replace(run_checks(cfg.data), max_seconds=None)
        self.embedder = _build_embedder(cfg.embedder, self.info, device)
        self.speaker_normalization = bool(self.info["speaker_normalization"])
        self.speaker_stats: dict[str, np.ndarray] = {}
        self._stats_row: dict[str, int] = {}
        if self.speaker_normalization:
            with np.load(folder / self.info["speaker_stats"], allow_pickle=False) as data:
                self.speaker_stats = {k: data[k] for k in data.files}
            self._stats_row = {str(s): k for k, s in enumerate(self.speaker_stats["speakers"])}

    @classmethod
    def from_run(cls, run_dir: str | os.PathLike, classifier: str | None = None, device: str = "cpu",
                 batch_size: int = 8) -> ProbePredictor:
        return cls(run_dir, classifier=classifier, device=device, batch_size=batch_size)

    # --- steps ------------------------------------------------------------------------------
    def _waveform(self, audio, sample_rate: int | None) -> torch.Tensor:
        return read_waveform(audio, sample_rate, self.sample_rate, self.checks)

    def _embed(self, x: torch.Tensor) -> np.ndarray:
        emb = np.asarray(self.embedder.embed_waveform(x.numpy(), self.sample_rate), dtype=np.float64)
        if not np.isfinite(emb).all():
            raise ValueError("the embedder gave non-finite values for this file")
        return emb

    def _no_statistics(self, speaker: str | None, found: int) -> str:
        who = f"speaker {speaker!r} is not one of the run's corpus speakers" if speaker else "the speaker is unknown"
        return (f"cannot standardise per speaker as the run did: {who} and {found} of its files were given "
                "(at least 2 needed); give a list file of `path speaker` lines with several files per speaker "
                f"(corpus speakers: {', '.join(sorted(self._stats_row))})")

    def _corpus_standardize(self, emb: np.ndarray, speaker: str) -> np.ndarray:
        k = self._stats_row[speaker]
        return standardize_with(emb, self.speaker_stats["mean"][k], self.speaker_stats["std"][k])

    def _classify(self, z: np.ndarray) -> list[dict]:
        """Rows (n, dim) -> per row ``{"top_class", "top_prob", "probs"}`` (probabilities: None
        without ``predict_proba``)."""
        labels = self.estimator.predict(z)
        proba = self.estimator.predict_proba(z) if self.has_proba else None
        classes = [int(c) for c in self.estimator.classes_]
        out = []
        for i, label in enumerate(labels):
            result = {"top_class": self.class_names[int(label)], "top_prob": None, "probs": None}
            if proba is not None:
                probs = dict.fromkeys(self.class_names, 0.0)  # a class absent from training: 0
                for c, p in zip(classes, proba[i]):
                    probs[self.class_names[c]] = float(p)
                result.update(probs=probs, top_prob=probs[result["top_class"]])
            out.append(result)
        return out

    # --- API --------------------------------------------------------------------------------
    def predict(self, audio, sample_rate: int | None = None, speaker: str | None = None) -> dict:
        """One file (path) or waveform (with ``sample_rate``): ``{"top_class", "top_prob",
        "probs", "speaker", "normalization", "classifier", "seconds"}``.

        ``speaker``: whose statistics standardise the embedding (default: from an EmoDB file
        name). Alone, a file can only be standardised by a corpus speaker's statistics; for
        other speakers use :meth:`predict_files` with several files per speaker.

        Raises
        ------
        AudioFileError, ValueError
            An unreadable or rejected file; a speaker without statistics (the message says
            what to give).
        """
        if speaker is None and isinstance(audio, (str, os.PathLike)):
            speaker = speaker_from_name(audio)
        x = self._waveform(audio, sample_rate)
        emb = self._embed(x)
        normalization = "none"
        if self.speaker_normalization:
            if speaker not in self._stats_row:
                raise ValueError(self._no_statistics(speaker, 1))
            emb, normalization = self._corpus_standardize(emb, speaker), "corpus"
        result = self._classify(emb[None])[0]
        result.update(speaker=speaker, normalization=normalization, classifier=self.classifier,
                      seconds=x.shape[-1] / self.sample_rate)
        return result

    def predict_files(self, paths, progress: bool = True) -> list[dict]:
        """One row per file of ``paths`` (files, folders, list files with an optional speaker
        column: :func:`expand_with_speakers`), in order: ``path``, ``speaker``,
        ``normalization`` (``corpus|files|none``), ``top_class``, ``top_prob``,
        ``prob_<class>`` (classifiers with probabilities), ``seconds``, ``error`` ("" or why the
        file could not be read or standardised; such a row has no prediction)."""
        from tqdm.auto import tqdm

        items = expand_with_speakers(paths)
        rows, embeddings = [], {}
        for i, (path, given) in enumerate(tqdm(items, desc="predict", unit="file", disable=not progress or len(items) < 2)):
            speaker = given if given is not None else speaker_from_name(path)
            row = {"path": str(path), "speaker": speaker or "", "normalization": "", "top_class": "", "top_prob": None}
            if self.has_proba:
                row.update({f"prob_{c}": None for c in self.class_names})
            row.update(seconds=None, error="")
            try:
                x = self._waveform(path, None)
                embeddings[i] = self._embed(x)
                row["seconds"] = round(x.shape[-1] / self.sample_rate, 3)
            except ROW_ERRORS as err:
                row["error"] = str(err).replace("\n", " ")
            rows.append(row)
        z: dict[int, np.ndarray] = {}
        if not self.speaker_normalization:
            for i, emb in embeddings.items():
                z[i], rows[i]["normalization"] = emb, "none"
        else:
            groups: dict[str | None, list[int]] = {}
            for i in embeddings:
                groups.setdefault(rows[i]["speaker"] or None, []).append(i)
            for speaker, idx in groups.items():
                if speaker in self._stats_row:
                    for i in idx:
                        z[i], rows[i]["normalization"] = self._corpus_standardize(embeddings[i], speaker), "corpus"
                elif speaker is not None and len(idx) >= 2:
                    block = np.stack([embeddings[i] for i in idx])
                    stats = speaker_statistics(block, [speaker] * len(idx))
                    out = standardize_with(block, stats["mean"][0], stats["std"][0])
                    for j, i in enumerate(idx):
                        z[i], rows[i]["normalization"] = out[j], "files"
                else:
                    for i in idx:
                        rows[i]["error"] = self._no_statistics(speaker, len(idx))
        if z:
            order = sorted(z)
            for i, result in zip(order, self._classify(np.stack([z[i] for i in order]))):
                rows[i]["top_class"] = result["top_class"]
                if result["probs"] is not None:
                    rows[i]["top_prob"] = round(result["top_prob"], 6)
                    rows[i].update({f"prob_{c}": round(p, 6) for c, p in result["probs"].items()})
        return rows
