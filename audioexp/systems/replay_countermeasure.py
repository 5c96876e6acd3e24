"""The GMM replay countermeasure of Wickramasinghe et al. (ICASSP 2019) and the ASVspoof 2017
baseline: front-ends, two GMMs per system, fusion at feature or score level.

Paper: ``../shared/seeds/004_e732ba0d7f2022fb.txt``; corpus: :mod:`audioexp.data.asvspoof2017`;
configs: ``conf/task/fit_gmm.yaml`` (the ``gmm`` block), ``conf/backend/`` and the
``asvspoof17_*`` experiments; notes: ``experiments/asvspoof2017.md``.

For every front-end (and every feature-level fusion: frames of several front-ends side by
side) one *system*: two GMMs (genuine, spoof) trained on ``train`` and scored on ``dev``,
and two retrained on ``train + dev`` and scored on ``eval``, as the paper does. A score
fusion is a logistic regression trained on the dev scores of its systems and applied to
their eval scores. Features are cached on disk (``cache_dir``), keyed by the front-end's
settings and every file's name, size and mtime, so that a sweep over back-ends computes
them once and a changed file is computed again.

Parts: front-ends in :mod:`audioexp.features.replay` and :mod:`audioexp.features.cqcc`,
the GMM back-end in :mod:`audioexp.backends.gmm` (or its torch EM), the fusion in
:mod:`audioexp.backends.fusion`.
"""

from __future__ import annotations

import logging
import os
import time
import zipfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np

from audioexp.backends.fusion import LogisticRegressionFusion
from audioexp.backends.gmm import cap_frames_per_utterance
from audioexp.data.audio import AudioFileError
from audioexp.data.manifest import cache_key
from audioexp.features.functional import check_sample_rate
from audioexp.metrics.verification import equal_error_rate
from audioexp.utils.files import atomic_open, atomic_write_json

log = logging.getLogger(__name__)

__all__ = ["COUNTERMEASURE_DIR", "GMMReplayCountermeasure", "extract_features", "system_file_name"]

#: Folder of a fit_gmm run dir that holds the fitted systems (``systems.json`` and one
#: ``<system>.npz`` of GMM parameters per system), what ``audioexp.load(run_dir)`` predicts with.
COUNTERMEASURE_DIR = "countermeasure"


def system_file_name(name: str) -> str:
    """A system's name as a file name part (``score(cf+cm)`` -> ``score_cf_cm``).

    >>> system_file_name("score(cf+cm)")
    'score_cf_cm'
    """
    return name.replace("(", "_").replace(")", "").replace("+", "_")

Frontend = Callable[[np.ndarray], np.ndarray]


def extract_features(corpus, frontend, split: str, cache_dir: Path | None) -> tuple[list[np.ndarray], np.ndarray]:
    """Frames of every utterance of a split (``(frames, dim)`` each) and their labels, read
    from / written to the on-disk cache.

    The cache is keyed by the front-end's settings and every file's name, size and
    modification time, so a changed file is never served from it; an unreadable cache is
    computed again (with a warning). With the corpus's ``skip_bad_files``, a file that
    fails when read (NaN, silence: what a header check cannot see) is left out with a
    warning and counted in ``corpus.read_skipped[split]``.
    """
    paths, labels = corpus.utterances(split)
    settings = frontend.settings()
    if hasattr(corpus, "feature_settings"):  # e.g. silence trimming: what the corpus does to the audio
        settings = {**settings, **{f"corpus.{k}": v for k, v in corpus.feature_settings().items()}}
    stamp = [(Path(p).name, *_size_mtime(p)) for p in paths]
    key = cache_key(sorted(settings.items()), str(Path(corpus.root).resolve()), split, stamp)
    cache = cache_dir / f"{settings['class']}-{split}-{key}.npz" if cache_dir else None
    if cache is not None and cache.exists():
        try:
            with np.load(cache) as data:
                bounds = np.cumsum(np.concatenate([[0], data["lengths"]]))
                feats = [data["frames"][a:b] for a, b in zip(bounds[:-1], bounds[1:])]
                keep = data["keep"] if "keep" in data else np.ones(len(paths), dtype=bool)
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as err:
            log.warning("the feature cache %s is unreadable (%s): computing the features again", cache, err)
        else:
            if len(keep) == len(paths) and len(feats) == int(keep.sum()):
                log.info("%s features of %s read from %s", split, settings["class"], cache)
                _count_read_skipped(corpus, split, int((~keep).sum()))
                return feats, labels[keep]
    start = time.perf_counter()
    feats, keep = [], np.ones(len(paths), dtype=bool)
    for i, p in enumerate(paths):
        try:
            waveform = corpus.load(p)
        except AudioFileError as err:
            if not getattr(corpus, "skip_bad_files", False):
                raise
            log.warning("skipping a bad audio file (data.skip_bad_files=true): %s", err)
            keep[i] = False
            continue
        feats.append(np.asarray(frontend(waveform), dtype=np.float32))
    _count_read_skipped(corpus, split, int((~keep).sum()))
    if not feats:
        raise AudioFileError(corpus.audio_dir(split), f"no file of the {split} split could be read")
    log.info("%s: %d utterances -> %s features in %.1f s", split, len(feats), feats[0].shape[1:],
             time.perf_counter() - start)
    if cache is not None:
        with atomic_open(cache, mode="wb") as handle:
            np.savez(handle, frames=np.concatenate(feats), lengths=np.array([len(f) for f in feats]), keep=keep)
    return feats, labels[keep]


def _size_mtime(path) -> tuple[int, int]:
    st = os.stat(path)
    return st.st_size, st.st_mtime_ns


def _count_read_skipped(corpus, split: str, n: int) -> None:
    """Files of ``split`` skipped when read, kept on the corpus for the run's metrics."""
    counts = getattr(corpus, "read_skipped", None)
    if counts is None:
        counts = corpus.read_skipped = {}
    counts[split] = n


class GMMReplayCountermeasure:
    """Front-ends + GMM back-end + fusion, scored on a corpus's dev and eval protocols.

    Parameters
    ----------
    frontends : mapping of str to callable
        ``name -> frontend``: waveform (samples,) to frames (frames, dim), with a
        ``settings()`` dict that keys the feature cache.
    backend : callable
        Makes a new, unfitted back-end (``fit(frames_per_utterance, labels)`` and
        ``score(frames_per_utterance)``: one LLR per utterance, higher = genuine).
    protocols : sequence of {"dev", "eval"}
        dev: GMMs trained on train; eval: GMMs trained on train + dev.
    feature_fusion : sequence of sequences of str
        Front-ends whose frames are concatenated into one more system (``"cf+cm"``).
    score_fusion : sequence of sequences of str
        Systems fused at score level (``"score(cf+cm)"``); needs both protocols.
    cache_dir : path, optional
        Where features are cached (none: computed every time).
    max_frames_per_utterance : int, optional
        GMM training takes at most this many frames of any one utterance, evenly spaced over
        it (:func:`audioexp.backends.gmm.cap_frames_per_utterance`); a warning says how many
        utterances were capped and how many frames dropped. Ours, not the paper's: it keeps
        one long file from supplying most of a class's frames. 3,000 (30 s at a 10 ms hop)
        caps no ASVspoof 2017 file (a few seconds each). Scoring uses every frame. ``None``:
        no cap.
    """

    def __init__(
        self,
        frontends: Mapping[str, Frontend],
        backend: Callable[[], object],
        protocols: Sequence[str] = ("dev", "eval"),
        feature_fusion: Sequence[Sequence[str]] = (),
        score_fusion: Sequence[Sequence[str]] = (),
        cache_dir: str | Path | None = None,
        max_frames_per_utterance: int | None = 3000,
    ) -> None:
        self.protocols = list(protocols)
        if not self.protocols or not set(self.protocols) <= {"dev", "eval"}:
            raise ValueError(f"gmm.protocols must list 'dev' and/or 'eval', got {self.protocols}")
        if score_fusion and set(self.protocols) != {"dev", "eval"}:
            raise ValueError("score fusion trains its weights on dev scores and applies them to eval: "
                             "gmm.protocols must hold both")
        if not frontends:
            raise ValueError("no front-end: list at least one under `frontends` (see the asvspoof17_* experiments)")
        for parts in [*feature_fusion, *score_fusion]:
            known = set(frontends) | {"+".join(f) for f in feature_fusion}
            unknown = [p for p in parts if p not in known]
            if unknown:
                raise ValueError(f"fusion of {list(parts)}: no system named {unknown}; systems are {sorted(known)}")
        self.frontends = dict(frontends)
        self.backend = backend
        self.feature_fusion = [list(f) for f in feature_fusion]
        self.score_fusion = [list(f) for f in score_fusion]
        self.cache_dir = Path(cache_dir) if cache_dir else None
        if max_frames_per_utterance is not None and max_frames_per_utterance < 1:
            raise ValueError(f"gmm.max_frames_per_utterance must be at least 1 (or null), got {max_frames_per_utterance}")
        self.max_frames_per_utterance = max_frames_per_utterance
        #: ``system -> protocol -> fitted back-end`` and ``fusion name -> (systems, fusion)``,
        #: filled by :meth:`score`, written by :meth:`save`.
        self.fitted: dict[str, dict[str, object]] = {}
        self.fusions: dict[str, tuple[list[str], LogisticRegressionFusion]] = {}

    @property
    def splits(self) -> list[str]:
        """The splits whose features are needed (train always; dev also for eval's GMMs)."""
        return sorted({"train", *self.protocols, *(["dev"] if "eval" in self.protocols else [])})

    def features(self, corpus) -> tuple[dict[str, dict[str, list[np.ndarray]]], dict[str, np.ndarray]]:
        """``system -> split -> frames per utterance`` (front-ends and feature fusions) and labels."""
        feats: dict[str, dict[str, list[np.ndarray]]] = {}
        labels: dict[str, np.ndarray] = {}
        for name, frontend in self.frontends.items():
            check_sample_rate(getattr(corpus, "sample_rate", None), getattr(frontend, "sample_rate", None),
                              f"the front-end {name!r}")
            feats[name] = {}
            for split in self.splits:
                feats[name][split], labels[split] = extract_features(corpus, frontend, split, self.cache_dir)
        for parts in self.feature_fusion:
            feats["+".join(parts)] = {
                split: [np.concatenate(frames, axis=1) for frames in zip(*(feats[p][split] for p in parts))]
                for split in self.splits
            }
        return feats, labels

    def training_frames(self, features: list[np.ndarray], what: str = "GMM training") -> list[np.ndarray]:
        """``features`` with each utterance capped at ``max_frames_per_utterance`` frames; warns
        (once per training set) how many utterances were capped and how many frames dropped."""
        capped, num_capped, num_dropped = cap_frames_per_utterance(features, self.max_frames_per_utterance)
        if num_capped:
            total = sum(len(f) for f in features)
            log.warning(
                "%s: %d of %d utterances had more than %d frames (gmm.max_frames_per_utterance) and were capped; "
                "%d of %d frames dropped", what, num_capped, len(features), self.max_frames_per_utterance,
                num_dropped, total,
            )
        return capped

    def _score_system(
        self, feats: Mapping[str, list[np.ndarray]], labels: Mapping[str, np.ndarray], name: str = ""
    ) -> dict[str, np.ndarray]:
        scores = {}
        for split in self.protocols:
            train_splits = ["train"] if split == "dev" else ["train", "dev"]
            backend = self.backend()
            train = self.training_frames([f for s in train_splits for f in feats[s]],
                                         f"system {name}, GMMs on {'+'.join(train_splits)}")
            backend.fit(train, np.concatenate([labels[s] for s in train_splits]))
            scores[split] = backend.score(feats[split])
            self.fitted.setdefault(name, {})[split] = backend
        return scores

    def score(self, corpus) -> tuple[dict[str, dict[str, np.ndarray]], dict[str, np.ndarray]]:
        """``system -> split -> LLR per utterance`` (score fusions included) and the labels."""
        feats, labels = self.features(corpus)
        scores: dict[str, dict[str, np.ndarray]] = {}
        for name, per_split in feats.items():
            log.info("system %s: GMMs for %s", name, self.protocols)
            scores[name] = self._score_system(per_split, labels, name)
        for parts in self.score_fusion:
            fusion = LogisticRegressionFusion().fit(np.stack([scores[p]["dev"] for p in parts], 1), labels["dev"])
            log.info("score fusion of %s: weights %s, bias %.3f", parts, fusion.weights, fusion.bias)
            name = "score(" + "+".join(parts) + ")"
            scores[name] = {"eval": fusion(np.stack([scores[p]["eval"] for p in parts], 1))}
            self.fusions[name] = (list(parts), fusion)
        return scores, labels

    def save(self, output_dir: str | Path, scores: Mapping[str, Mapping[str, np.ndarray]],
             labels: Mapping[str, np.ndarray]) -> Path:
        """Write every fitted system into ``output_dir/countermeasure/``, for prediction.

        Which GMMs: those of the dev protocol (trained on ``train``) when it ran, else those of
        eval (``train + dev``). Each system's decision threshold is its dev EER threshold
        (:func:`audioexp.metrics.verification.equal_error_rate`: ``LLR >= threshold`` is
        genuine), measured on the scores of exactly the GMMs saved; without a dev protocol
        there is none (``null``) and prediction gives the LLR without a decision. A score
        fusion keeps its weights and bias (trained on the dev scores) and its dev EER
        threshold is that of the fused dev scores (ours: the paper reports EERs only).

        Writes ``systems.json`` (per system: kind, front-ends, parameter file, threshold, dev
        EER, training splits) and ``<system>.npz`` per GMM system
        (:meth:`audioexp.backends.gmm.GMMBackend.parameters`); returns the folder.
        """
        out = Path(output_dir) / COUNTERMEASURE_DIR
        out.mkdir(parents=True, exist_ok=True)
        protocol = "dev" if "dev" in self.protocols else "eval"
        trained_on = ["train"] if protocol == "dev" else ["train", "dev"]
        systems: dict[str, dict] = {}

        def calibration(dev_scores):
            if dev_scores is None:
                return {"threshold": None, "dev_eer": None}
            eer, threshold = equal_error_rate(dev_scores, labels["dev"])
            return {"threshold": float(threshold), "dev_eer": float(eer)}

        for name, per_protocol in self.fitted.items():
            backend = per_protocol[protocol]
            params = backend.parameters()
            file = f"{system_file_name(name)}.npz"
            with atomic_open(out / file, mode="wb") as handle:
                np.savez(handle, **params)
            systems[name] = {"kind": "gmm", "frontends": name.split("+"), "parameters": file, "trained_on": trained_on,
                             "n_components": int(params["genuine_means"].shape[0]),
                             "dim": int(params["genuine_means"].shape[1]),
                             **calibration(scores[name].get("dev") if protocol == "dev" else None)}
        for name, (parts, fusion) in self.fusions.items():
            dev = fusion(np.stack([scores[p]["dev"] for p in parts], 1))
            systems[name] = {"kind": "score_fusion", "components": parts, "weights": [float(w) for w in fusion.weights],
                             "bias": float(fusion.bias), "trained_on": trained_on, **calibration(dev)}
        atomic_write_json(out / "systems.json", {
            "protocol": protocol,
            "decision": "genuine when LLR >= threshold (the system's dev EER threshold), else spoof",
            "systems": systems,
        })
        log.info("fitted systems %s written to %s", sorted(systems), out)
        return out
