"""The embedding probe of the EmoDB notebook (BYOL-S / openSMILE embeddings, sklearn classifiers).

Paper: ``../shared/seeds/002_9bfe7d8eb710ec64.txt``; corpus: :mod:`audioexp.data.emodb`;
configs: ``conf/task/probe.yaml``, ``conf/embedder/``, ``conf/probe/`` (this class's
settings) and the ``emodb_probe`` experiment; notes: ``experiments/emodb.md``.

A corpus is embedded once (:func:`get_embeddings`, cached on disk), standardised per
speaker, then every classifier is grid-searched (macro recall) and scored on
speaker-independent splits: one seeded split, leave-one-speaker-out or repeated splits.
Parts: embedders in :mod:`audioexp.embedders`, the classifiers and their grids in
:mod:`audioexp.probes.classifiers`, splits and per-speaker standardisation in
:mod:`audioexp.probes.functional`.

At the end of a run :meth:`EmbeddingProbe.save_probe` writes the deployable probe into
``RUN_DIR/probe/`` (split 0's fitted classifiers, the corpus speakers' statistics, the
embedder's settings); :class:`ProbePredictor` (:mod:`audioexp.systems.probe_predictor`)
predicts with it. Its ``.joblib`` files are pickles: a run dir is code-adjacent input, only
load run dirs you trust.
"""

from __future__ import annotations

import csv
import io
import logging
import time
from pathlib import Path

import numpy as np

from audioexp.embedders.extract import EmbeddingCache
from audioexp.probes.classifiers import DISPLAY_NAMES, ProbeResult, fit_and_score, per_class_report, pooled_confusion
from audioexp.probes.functional import evaluation_splits, speaker_standardize
from audioexp.systems.probe_predictor import PROBE_DIR, ProbePredictor, write_deployable_probe
from audioexp.utils.files import atomic_open, atomic_write_json, atomic_write_text

log = logging.getLogger(__name__)

__all__ = ["EmbeddingProbe", "ProbePredictor", "RESULT_COLUMNS", "get_embeddings", "markdown_table", "merge_into_sweep",
           "write_results"]

RESULT_COLUMNS = ["embedder", "classifier", "uar", "uar_std", "accuracy", "accuracy_std", "cv_uar", "protocol", "splits", "dim"]


def get_embeddings(embedder, datamodule, cache_dir: str | None, trainer_kwargs: dict | None = None) -> np.ndarray:
    """The embedder's (files, dim) array of the datamodule's files, from the cache when present."""
    cache = EmbeddingCache(cache_dir)
    files = datamodule.files
    settings = embedder.settings()
    path = cache.path(embedder.name.replace(":", "_").replace("/", "_"), settings, datamodule.root, files)
    cached = cache.load(path, files)
    if cached is not None:
        return cached
    start = time.perf_counter()
    embeddings = np.asarray(embedder.embed(datamodule, trainer_kwargs), dtype=np.float64)
    log.info("%s: %d x %d embeddings in %.1f s", embedder.name, *embeddings.shape, time.perf_counter() - start)
    if embeddings.shape[0] != len(files):
        raise RuntimeError(f"{embedder.name} gave {embeddings.shape[0]} embeddings for {len(files)} files")
    cache.save(path, files, embeddings, settings)
    return embeddings


def summarize(embedder: str, classifier: str, results: list[ProbeResult], protocol: str, dim: int) -> dict:
    """One row of the results table: mean and (population) standard deviation over the splits."""
    uar = np.array([r.uar for r in results])
    acc = np.array([r.accuracy for r in results])
    return {
        "embedder": embedder, "classifier": classifier,
        "uar": float(uar.mean()), "uar_std": float(uar.std()),
        "accuracy": float(acc.mean()), "accuracy_std": float(acc.std()),
        "cv_uar": float(np.mean([r.cv_uar for r in results])),
        "protocol": protocol, "splits": len(results), "dim": dim,
    }


def _cell(row: dict, key: str) -> str:
    value = f"{100 * row[key]:.1f}"
    return value + (f" ± {100 * row[key + '_std']:.1f}" if row["splits"] > 1 else "")


def markdown_table(rows: list[dict]) -> str:
    """The notebook's table (rows: embedders, columns: classifiers), macro recall then accuracy, in %."""
    embedders = list(dict.fromkeys(r["embedder"] for r in rows))
    classifiers = list(dict.fromkeys(r["classifier"] for r in rows))
    cell = {(r["embedder"], r["classifier"]): r for r in rows}
    out = []
    for key, title in (("uar", "Macro recall (UAR), %"), ("accuracy", "Accuracy, %")):
        out.append(f"{title}\n")
        out.append("| embedder | " + " | ".join(DISPLAY_NAMES.get(c, c) for c in classifiers) + " |")
        out.append("| --- |" + " --- |" * len(classifiers))
        for e in embedders:
            out.append(f"| {e} | " + " | ".join(_cell(cell[e, c], key) if (e, c) in cell else "" for c in classifiers) + " |")
        out.append("")
    protocols = sorted({f"{r['protocol']} ({r['splits']} split{'s' if r['splits'] > 1 else ''})" for r in rows})
    out.append(f"Protocol: {', '.join(protocols)}; mean ± standard deviation over splits where there are several.\n")
    return "\n".join(out)


def write_results(rows: list[dict], directory: Path) -> None:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=RESULT_COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(directory / "results.csv", buffer.getvalue())
    atomic_write_text(directory / "results.md", markdown_table(rows))


def merge_into_sweep(rows: list[dict]) -> None:
    """In a multirun, add this job's rows to the sweep dir's table (jobs run one after another)."""
    try:
        from hydra.core.hydra_config import HydraConfig
        from hydra.types import RunMode

        hc = HydraConfig.get()
        if hc.mode != RunMode.MULTIRUN:
            return
        sweep = Path(hc.sweep.dir)
    except (ValueError, AttributeError):
        return
    existing = []
    if (sweep / "results.csv").exists():
        with open(sweep / "results.csv", encoding="utf-8") as handle:
            for row in csv.DictReader(handle):
                for key in ("uar", "uar_std", "accuracy", "accuracy_std", "cv_uar"):
                    row[key] = float(row[key])
                row["splits"], row["dim"] = int(row["splits"]), int(row["dim"])
                existing.append(row)
    mine = {(r["embedder"], r["classifier"], r["protocol"]) for r in rows}
    merged = [r for r in existing if (r["embedder"], r["classifier"], r["protocol"]) not in mine] + rows
    write_results(merged, sweep)
    log.info("sweep table updated: %s", sweep / "results.md")


class EmbeddingProbe:
    """Grid-searched classifiers on embeddings, scored on speaker-independent splits.

    Parameters
    ----------
    classifiers : list of str
        Keys of :func:`audioexp.probes.classifiers.param_grid` (``logistic_regression``,
        ``svm``, ``random_forest``).
    grid : {"paper", "quick"}
        The notebook's grids or small ones for first looks.
    protocol : {"split", "loso", "repeated"}
    test_fraction, split_seed, repeats
        Of the speaker splits (:func:`audioexp.probes.functional.evaluation_splits`).
    cv_folds : int
        Inner folds of the grid search.
    grouped_inner_folds : bool
        Inner folds split by speaker (the notebook: stratified by class).
    speaker_normalization : bool
        Standardise each speaker's embeddings (the notebook: yes).
    n_jobs, verbose
        Of the grid search (:func:`audioexp.probes.classifiers.grid_search`: worker processes,
        -1 every core; the results do not depend on it; ``verbose`` shows a progress bar over
        the fits with the time left).
    cache_dir : path, optional
        Where embeddings are cached.
    seed : int
        Of the classifiers (random forests).

    Attributes
    ----------
    raw_embeddings_ : ndarray
        Set by :meth:`embed`: the embeddings before per-speaker standardisation (NaN rows: files
        not read).
    splits_, results_
        Set by :meth:`evaluate`: the (train, test) row indices of each split, and per classifier
        its :class:`~audioexp.probes.classifiers.ProbeResult` of each split (with the fitted
        estimator); :meth:`save_probe` writes split 0's.
    """

    def __init__(self, classifiers: list[str], grid: str = "paper", protocol: str = "split", test_fraction: float = 0.3,
                 split_seed: int = 0, repeats: int = 5, cv_folds: int = 5, grouped_inner_folds: bool = False,
                 speaker_normalization: bool = True, n_jobs: int | None = None, verbose: int = 0,
                 cache_dir: str | None = None, seed: int = 0) -> None:
        self.classifiers = list(classifiers)
        self.grid = grid
        self.protocol = protocol
        self.test_fraction = test_fraction
        self.split_seed = split_seed
        self.repeats = repeats
        self.cv_folds = cv_folds
        self.grouped_inner_folds = grouped_inner_folds
        self.speaker_normalization = speaker_normalization
        self.n_jobs = n_jobs
        self.verbose = verbose
        self.cache_dir = cache_dir
        self.seed = seed

    def embed(self, embedder, datamodule, trainer_kwargs: dict | None = None) -> np.ndarray:
        """``(files, dim)`` embeddings of the datamodule's files, standardised per speaker if asked
        (over the files that were read: a bad file skipped when read keeps a NaN row)."""
        x = get_embeddings(embedder, datamodule, self.cache_dir, trainer_kwargs)
        if getattr(embedder, "normalization", None) == "dataset" and getattr(embedder, "corpus_mean", None) is None \
                and hasattr(embedder, "corpus_statistics"):
            # BYOL-S: embeddings read from the cache; the saved probe needs the corpus's log-mel
            # statistics that embed() would have recorded (the log-mels only, no network)
            embedder.corpus_statistics(datamodule, trainer_kwargs)
        self.raw_embeddings_ = x
        if not self.speaker_normalization:
            return x
        read = np.isfinite(x).all(axis=1)
        out = np.full_like(x, np.nan)
        out[read] = speaker_standardize(x[read], np.asarray(datamodule.speakers)[read])
        return out

    def evaluate(self, x: np.ndarray, y: np.ndarray, speakers: np.ndarray, class_names: list[str], embedder_name: str,
                 output_dir: Path) -> tuple[list[dict], dict[str, float], dict[str, Path]]:
        """Every classifier on every split; writes ``reports/``, ``confusion_<clf>.png``,
        ``splits.json`` and the results table into ``output_dir``.

        Returns
        -------
        rows : list of dict
            One results-table row per classifier (:data:`RESULT_COLUMNS`).
        metrics : dict
            ``test/<clf>/uar``, ``test/<clf>/acc``, ``cv/<clf>/uar`` (and ``_std`` over
            several splits), ``num_files``, ``dim``.
        figures : dict
            Classifier -> its pooled confusion matrix image.
        """
        import matplotlib.pyplot as plt

        from audioexp.figures import confusion_matrix_figure

        splits = evaluation_splits(speakers, self.protocol, self.test_fraction, self.split_seed, self.repeats)
        log.info("%s: %d files, %d speakers, %s protocol with %d split(s); classifiers %s, %s grid",
                 embedder_name, len(y), len(np.unique(speakers)), self.protocol, len(splits), self.classifiers, self.grid)
        rows, metrics, figures, per_split = [], {}, {}, []
        self.splits_, self.results_ = splits, {}
        (output_dir / "reports").mkdir(parents=True, exist_ok=True)
        for clf in self.classifiers:
            results = []
            for k, (train_index, test_index) in enumerate(splits):
                result = fit_and_score(
                    clf, x, y, train_index, test_index, speakers, grouped_inner_folds=self.grouped_inner_folds,
                    grid=self.grid, cv_folds=self.cv_folds, n_jobs=self.n_jobs, seed=self.seed, verbose=self.verbose,
                )
                log.info("%s / %s, split %d/%d (test speakers %s): UAR %.3f, accuracy %.3f (inner CV UAR %.3f, %.1f s); best %s",
                         embedder_name, clf, k + 1, len(splits), ",".join(result.test_speakers), result.uar,
                         result.accuracy, result.cv_uar, result.seconds, result.best_params)
                results.append(result)
                per_split.append({"classifier": clf, "split": k, "test_speakers": result.test_speakers, "uar": result.uar,
                                  "accuracy": result.accuracy, "cv_uar": result.cv_uar, "best_params": result.best_params})
            self.results_[clf] = results
            row = summarize(embedder_name, clf, results, self.protocol, x.shape[1])
            rows.append(row)
            metrics[f"test/{clf}/uar"] = row["uar"]
            metrics[f"test/{clf}/acc"] = row["accuracy"]
            metrics[f"cv/{clf}/uar"] = row["cv_uar"]
            if len(splits) > 1:
                metrics[f"test/{clf}/uar_std"] = row["uar_std"]
                metrics[f"test/{clf}/acc_std"] = row["accuracy_std"]
            y_true = np.concatenate([r.y_true for r in results])
            y_pred = np.concatenate([r.y_pred for r in results])
            text, as_dict = per_class_report(y_true, y_pred, class_names)
            atomic_write_text(output_dir / "reports" / f"{clf}.txt",
                              f"{embedder_name} / {clf}, {self.protocol} ({len(splits)} split(s), pooled)\n\n{text}")
            atomic_write_json(output_dir / "reports" / f"{clf}.json", as_dict)
            fig = confusion_matrix_figure(pooled_confusion(results, len(class_names)), class_names,
                                          title=f"{embedder_name} / {DISPLAY_NAMES.get(clf, clf)}")
            figures[clf] = output_dir / f"confusion_{clf}.png"
            with atomic_open(figures[clf], mode="wb") as handle:
                fig.savefig(handle, dpi=100, format="png")
            plt.close(fig)
        metrics["num_files"] = float(len(y))
        metrics["dim"] = float(x.shape[1])
        atomic_write_json(output_dir / "splits.json", per_split)
        write_results(rows, output_dir)
        log.info("results table:\n%s", markdown_table(rows))
        return rows, metrics, figures

    def save_probe(self, output_dir: Path, embedder, datamodule, read: np.ndarray, metrics: dict[str, float],
                   embedder_config: dict | None = None) -> Path:
        """Write the deployable probe into ``output_dir/probe/`` after :meth:`embed` and
        :meth:`evaluate` (``read``: the rows :meth:`evaluate` was given), see
        :mod:`audioexp.systems.probe_predictor`: each classifier's split-0 estimator
        (``.joblib``, a pickle: only load run dirs you trust), ``probe.json``,
        ``test_predictions.csv`` and ``speaker_stats.npz``."""
        read = np.asarray(read, dtype=bool)
        train_index, test_index = self.splits_[0]
        first = {clf: results[0] for clf, results in self.results_.items()}
        return write_deployable_probe(
            Path(output_dir) / PROBE_DIR,
            estimators={clf: r.estimator for clf, r in first.items()},
            split0={clf: {"uar": r.uar, "accuracy": r.accuracy, "cv_uar": r.cv_uar, "best_params": r.best_params}
                    for clf, r in first.items()},
            test_uar={clf: metrics[f"test/{clf}/uar"] for clf in first},
            class_names=list(datamodule.class_names),
            x_raw=self.raw_embeddings_[read],
            files=list(np.asarray(datamodule.files)[read]),
            speakers=np.asarray(datamodule.speakers)[read],
            labels=np.asarray(datamodule.labels)[read],
            test_index=test_index,
            test_predictions={clf: r.y_pred for clf, r in first.items()},
            embedder=embedder,
            embedder_config=embedder_config,
            speaker_normalization=self.speaker_normalization,
            sample_rate=int(datamodule.sample_rate),
            data_root=getattr(datamodule, "root", None),
            protocol=self.protocol,
            num_splits=len(self.splits_),
        )
