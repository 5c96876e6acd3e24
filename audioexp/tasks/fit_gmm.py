"""``task=fit_gmm``: a GMM replay countermeasure on ASVspoof 2017 (Wickramasinghe et al. 2019).

    python -m audioexp +experiment=asvspoof17_sdfb_gmm data.root=/data/ASVspoof2017

Scores every system of :class:`audioexp.systems.replay_countermeasure.GMMReplayCountermeasure`
(front-ends under ``frontends``, the back-end of the ``backend`` group, fusions under
``gmm``) on dev and eval and reports ``<split>/<system>/eer`` and ``min_dcf``. Writes
``scores_<split>_<system>.txt``, ``det_<split>_<system>.png``, ``results.md`` (a table) and
the fitted systems (``countermeasure/``: GMM parameters and dev EER thresholds, what
``python -m audioexp.predict RUN_DIR FILE...`` scores with) into the output dir and logs the metrics, the table and the DET curves (W&B).
"""

from __future__ import annotations

import logging

import hydra
import numpy as np
from omegaconf import DictConfig

from audioexp.backends.gmm import CLASS_KEYS
from audioexp.metrics.verification import equal_error_rate, minimum_dcf
from audioexp.systems.replay_countermeasure import GMMReplayCountermeasure, system_file_name
from audioexp.tasks.registry import register_task
from audioexp.tasks.skeleton import TaskRun, data_metrics
from audioexp.utils.files import atomic_open, atomic_write_text

log = logging.getLogger(__name__)

RESULT_COLUMNS = ["system", "split", "eer_percent", "min_dcf", "trials"]


@register_task("fit_gmm")
def fit_gmm(cfg: DictConfig) -> dict[str, float]:
    import matplotlib.pyplot as plt

    from audioexp.figures import det_curve_figure

    run = TaskRun(cfg)
    run.save_config()
    corpus = hydra.utils.instantiate(cfg.data)
    system = GMMReplayCountermeasure(
        frontends={name: hydra.utils.instantiate(fe) for name, fe in cfg.frontends.items()},
        backend=hydra.utils.instantiate(cfg.backend, _partial_=True),
        **cfg.gmm,
    )
    corpus.prepare_data(system.splits)  # protocols read and checked before any feature is computed
    scores, labels = system.score(corpus)
    system.save(run.output_dir, scores, labels)  # what `python -m audioexp.predict RUN_DIR` scores with

    metrics: dict[str, float] = {}
    rows, figures = [], {}
    for name, per_split in scores.items():
        for split, s in per_split.items():
            eer, _ = equal_error_rate(s, labels[split])
            dcf, _ = minimum_dcf(s, labels[split], p_target=0.5)
            metrics[f"{split}/{name}/eer"] = eer
            metrics[f"{split}/{name}/min_dcf"] = dcf
            rows.append([name, split, 100 * eer, dcf, len(s)])
            safe = system_file_name(name)
            with atomic_open(run.output_dir / f"scores_{split}_{safe}.txt", mode="wb") as handle:
                np.savetxt(handle, np.stack([s, labels[split]], 1), fmt=["%.6f", "%d"])
            fig = det_curve_figure(s, labels[split], title=f"{name} ({split})")
            with atomic_open(run.output_dir / f"det_{split}_{safe}.png", mode="wb") as handle:
                fig.savefig(handle, dpi=100, format="png")
            figures[f"det/{split}/{safe}"] = fig
    # how each GMM's EM ended (converged at the backend's tol, or stopped at max_iter)
    for name, per_protocol in system.fitted.items():
        for protocol, backend in per_protocol.items():
            for label, info in getattr(backend, "convergence", {}).items():
                key = f"gmm/{protocol}/{name}/{CLASS_KEYS.get(label, label)}"
                metrics[f"{key}/n_iter"] = float(info["n_iter"])
                metrics[f"{key}/converged"] = float(info["converged"])
    table = "| system | split | EER % | minDCF (p 0.5) | trials |\n| --- | --- | --- | --- | --- |\n" + "".join(
        f"| {r[0]} | {r[1]} | {r[2]:.2f} | {r[3]:.3f} | {r[4]} |\n" for r in rows)
    atomic_write_text(run.output_dir / "results.md", table)
    log.info("results:\n%s", table)
    # files checked at prepare and bad ones left out; files that failed only when read
    metrics.update(data_metrics(corpus, read_skipped=getattr(corpus, "read_skipped", None)))
    metrics = run.finish(metrics, tables={"results": (RESULT_COLUMNS, rows)}, figures=figures)
    for fig in figures.values():
        plt.close(fig)
    return metrics
