"""``task=probe``: embed a corpus once, then grid-searched classifiers on speaker-independent splits.

    python -m audioexp +experiment=emodb_probe embedder=egemaps
    python -m audioexp -m +experiment=emodb_probe embedder=compare,egemaps   # the table's rows

The system is :class:`audioexp.systems.embedding_probe.EmbeddingProbe` (``probe`` config
group). Writes into the run dir: ``results.csv`` and ``results.md`` (embedder x classifier,
macro recall = UAR and accuracy, mean and standard deviation over splits),
``reports/<classifier>.txt`` and ``.json`` (per-class precision/recall/F1 pooled over the
splits), ``splits.json`` (test speakers and best parameters per split),
``confusion_<classifier>.png``, and ``probe/`` (each classifier fitted on split 0's training
speakers, the corpus speakers' statistics, the embedder's settings: what
:class:`audioexp.systems.probe_predictor.ProbePredictor` predicts with; its ``.joblib`` files
are pickles, only load run dirs you trust); the same table goes to W&B, the metrics to ``metrics.json``.
In a multirun the sweep dir's ``results.csv`` and ``results.md`` gather the rows of every job.
"""

from __future__ import annotations

import logging

import hydra
import numpy as np
from omegaconf import DictConfig, OmegaConf

from audioexp.systems.embedding_probe import RESULT_COLUMNS, merge_into_sweep
from audioexp.tasks.registry import register_task
from audioexp.tasks.skeleton import TaskRun, data_metrics

log = logging.getLogger(__name__)

EMBEDDER_HELP = "task=probe needs an embedder: embedder=compare | egemaps | byols (embedder.checkpoint=PATH) | audioexp (embedder.run_dir=RUN)"


@register_task("probe")
def probe(cfg: DictConfig) -> dict[str, float]:
    if cfg.get("embedder") is None:
        raise ValueError(EMBEDDER_HELP)
    if cfg.get("probe") is None:
        raise ValueError("task=probe needs probe settings: probe=paper or probe=quick")
    run = TaskRun(cfg)
    run.save_config()
    system = hydra.utils.instantiate(cfg.probe, seed=cfg.seed)
    embedder = hydra.utils.instantiate(cfg.embedder)
    datamodule = hydra.utils.instantiate(cfg.data)
    datamodule.prepare_data()
    datamodule.setup("predict")
    trainer_kwargs = {k: cfg.trainer[k] for k in ("accelerator", "devices", "strategy", "precision", "num_nodes") if k in cfg.trainer}
    x = system.embed(embedder, datamodule, trainer_kwargs)
    read = np.isfinite(x).all(axis=1)  # False: a bad file skipped when read (data.skip_bad_files)
    if not read.all():
        log.warning("%d of %d files could not be read and are left out of the probe (first: %s)",
                    int((~read).sum()), len(read), np.asarray(datamodule.files)[~read][0])
    rows, metrics, figures = system.evaluate(x[read], datamodule.labels[read], np.asarray(datamodule.speakers)[read],
                                             datamodule.class_names, embedder.name, run.output_dir)
    system.save_probe(run.output_dir, embedder, datamodule, read, metrics,
                      embedder_config=OmegaConf.to_container(cfg.embedder, resolve=True))
    metrics.update(data_metrics(datamodule, read_skipped={"all": int((~read).sum())}))
    merge_into_sweep(rows)
    return run.finish(
        metrics,
        tables={"probe/results": (RESULT_COLUMNS, [[r[c] for c in RESULT_COLUMNS] for r in rows])},
        figures={f"probe/confusion_{name}": path for name, path in figures.items()},
    )
