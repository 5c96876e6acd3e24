"""``task=probe``: embed a corpus once, then grid-searched classifiers on speaker-independent splits.

    python -m audioexp +experiment=emodb_probe embedder=egemaps
    python -m audioexp -m +experiment=emodb_probe embedder=compare,egemaps   # the table's rows

Writes into the run dir: ``results.csv`` and ``results.md`` (embedder x classifier, macro
recall = UAR and accuracy, mean and standard deviation over splits), ``reports/<classifier>.txt``
and ``.json`` (per-class precision/recall/F1 pooled over the splits), ``splits.json`` (test
speakers and best parameters per split), ``confusion_<classifier>.png``; the same table goes
to W&B, the metrics to ``metrics.json``. In a multirun the sweep dir's ``results.csv`` and
``results.md`` gather the rows of every job.
"""

from __future__ import annotations

import csv
import io
import logging
import time
from pathlib import Path

import hydra
import lightning as L
import numpy as np
from omegaconf import DictConfig, OmegaConf

from audioexp.embedders.extract import EmbeddingCache
from audioexp.probes.classifiers import DISPLAY_NAMES, ProbeResult, fit_and_score, per_class_report, pooled_confusion
from audioexp.probes.functional import evaluation_splits, speaker_standardize
from audioexp.tasks.registry import register_task
from audioexp.tasks.train import resolved_config
from audioexp.utils.files import atomic_write_json, atomic_write_text
from audioexp.utils.runs import RESOLVED_CONFIG, instantiate_loggers

log = logging.getLogger(__name__)

RESULT_COLUMNS = ["embedder", "classifier", "uar", "uar_std", "accuracy", "accuracy_std", "cv_uar", "protocol", "splits", "dim"]
EMBEDDER_HELP = "task=probe needs an embedder: embedder=compare | egemaps | byols (embedder.checkpoint=PATH) | audioexp (embedder.run_dir=RUN)"


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


def _merge_into_sweep(rows: list[dict]) -> None:
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


def _log_to_loggers(cfg: DictConfig, rows: list[dict], metrics: dict, figures: dict[str, Path]) -> None:
    from lightning.pytorch.loggers import WandbLogger

    loggers = instantiate_loggers(cfg.get("logger"))
    for logger in loggers:
        logger.log_hyperparams(resolved_config(cfg))
        logger.log_metrics(metrics)
        if isinstance(logger, WandbLogger):
            logger.log_table("probe/results", columns=RESULT_COLUMNS, data=[[r[c] for c in RESULT_COLUMNS] for r in rows])
            for name, path in figures.items():
                logger.log_image(f"probe/confusion_{name}", [str(path)])
        logger.finalize("success")


@register_task("probe")
def probe(cfg: DictConfig) -> dict[str, float]:
    from audioexp.figures import confusion_matrix_figure

    output_dir = Path(cfg.paths.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    L.seed_everything(cfg.seed, workers=True)
    if cfg.get("embedder") is None:
        raise ValueError(EMBEDDER_HELP)
    if cfg.get("probe") is None:
        raise ValueError("task=probe needs probe settings: probe=paper or probe=quick")
    atomic_write_text(output_dir / RESOLVED_CONFIG, OmegaConf.to_yaml(resolved_config(cfg)))
    opts = cfg.probe

    embedder = hydra.utils.instantiate(cfg.embedder)
    datamodule = hydra.utils.instantiate(cfg.data)
    datamodule.prepare_data()
    datamodule.setup("predict")
    trainer_kwargs = {k: cfg.trainer[k] for k in ("accelerator", "devices", "strategy", "precision", "num_nodes") if k in cfg.trainer}
    x = get_embeddings(embedder, datamodule, opts.get("cache_dir"), trainer_kwargs)
    y, speakers, class_names = datamodule.labels, datamodule.speakers, datamodule.class_names
    if opts.speaker_normalization:
        x = speaker_standardize(x, speakers)

    splits = evaluation_splits(speakers, opts.protocol, opts.test_fraction, opts.split_seed, opts.repeats)
    log.info("%s: %d files, %d speakers, %s protocol with %d split(s); classifiers %s, %s grid",
             embedder.name, len(y), len(np.unique(speakers)), opts.protocol, len(splits), list(opts.classifiers), opts.grid)
    rows, metrics, figures, per_split = [], {}, {}, []
    (output_dir / "reports").mkdir(exist_ok=True)
    for clf in opts.classifiers:
        results = []
        for k, (train_index, test_index) in enumerate(splits):
            result = fit_and_score(
                clf, x, y, train_index, test_index, speakers, grouped_inner_folds=opts.grouped_inner_folds,
                grid=opts.grid, cv_folds=opts.cv_folds, n_jobs=opts.n_jobs, seed=cfg.seed, verbose=opts.verbose,
            )
            log.info("%s / %s, split %d/%d (test speakers %s): UAR %.3f, accuracy %.3f (inner CV UAR %.3f, %.1f s); best %s",
                     embedder.name, clf, k + 1, len(splits), ",".join(result.test_speakers), result.uar, result.accuracy,
                     result.cv_uar, result.seconds, result.best_params)
            results.append(result)
            per_split.append({"classifier": clf, "split": k, "test_speakers": result.test_speakers, "uar": result.uar,
                              "accuracy": result.accuracy, "cv_uar": result.cv_uar, "best_params": result.best_params})
        row = summarize(embedder.name, clf, results, opts.protocol, x.shape[1])
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
        atomic_write_text(output_dir / "reports" / f"{clf}.txt", f"{embedder.name} / {clf}, {opts.protocol} ({len(splits)} split(s), pooled)\n\n{text}")
        atomic_write_json(output_dir / "reports" / f"{clf}.json", as_dict)
        fig = confusion_matrix_figure(pooled_confusion(results, len(class_names)), class_names, title=f"{embedder.name} / {DISPLAY_NAMES.get(clf, clf)}")
        figures[clf] = output_dir / f"confusion_{clf}.png"
        fig.savefig(figures[clf], dpi=100)
        import matplotlib.pyplot as plt

        plt.close(fig)
    metrics["num_files"] = float(len(y))
    metrics["dim"] = float(x.shape[1])
    atomic_write_json(output_dir / "splits.json", per_split)
    write_results(rows, output_dir)
    log.info("results table:\n%s", markdown_table(rows))
    _merge_into_sweep(rows)
    _log_to_loggers(cfg, rows, metrics, figures)
    return metrics
