"""``task=fit_gmm``: GMM replay detection on ASVspoof 2017 (Wickramasinghe et al. 2019).

    python -m audioexp +experiment=asvspoof17_sdfb_gmm data.root=/data/ASVspoof2017

For every front-end in ``frontends`` (and the feature-level fusions in
``gmm.feature_fusion``): two GMMs trained on train and scored on dev (``dev/<system>/eer``),
and two retrained on train + dev and scored on eval (``eval/<system>/eer``), as the paper
does. ``gmm.score_fusion`` lists systems fused at score level: logistic-regression weights
trained on their dev scores, applied to their eval scores. Features are cached on disk
under ``gmm.cache_dir``, keyed by the front-end's settings and the protocol list, so a
sweep over back-ends computes them once. Writes ``scores_<split>_<system>.txt``,
``det_<split>_<system>.png`` and ``results.md`` (a table) into the output dir and logs
the metrics, the table and the DET curves to the configured loggers (W&B).
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import hydra
import numpy as np
from omegaconf import DictConfig, OmegaConf

from audioexp.data.manifest import cache_key
from audioexp.figures import det_curve_figure
from audioexp.metrics.verification import equal_error_rate, minimum_dcf
from audioexp.tasks.registry import register_task
from audioexp.utils.files import atomic_write_text

log = logging.getLogger(__name__)


def extract_features(corpus, frontend, split: str, cache_dir: Path | None) -> tuple[list[np.ndarray], np.ndarray]:
    """Features of every utterance of a split, read from / written to the on-disk cache."""
    paths, labels = corpus.utterances(split)
    proto = corpus.protocol_file(split)
    key = cache_key(sorted(frontend.settings().items()), str(Path(corpus.root).resolve()), split,
                    proto.stat().st_mtime, len(paths))
    cache = cache_dir / f"{frontend.settings()['class']}-{split}-{key}.npz" if cache_dir else None
    if cache is not None and cache.exists():
        with np.load(cache) as data:
            bounds = np.cumsum(np.concatenate([[0], data["lengths"]]))
            feats = [data["frames"][a:b] for a, b in zip(bounds[:-1], bounds[1:])]
        if len(feats) == len(paths):
            log.info("%s features of %s read from %s", split, frontend.settings()["class"], cache)
            return feats, labels
    start = time.perf_counter()
    feats = [np.asarray(frontend(corpus.load(p)), dtype=np.float32) for p in paths]
    log.info("%s: %d utterances -> %s features in %.1f s", split, len(paths), feats[0].shape[1:],
             time.perf_counter() - start)
    if cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache.with_suffix(".tmp.npz")
        np.savez(tmp, frames=np.concatenate(feats), lengths=np.array([len(f) for f in feats]))
        tmp.replace(cache)
    return feats, labels


def _score_system(cfg: DictConfig, feats: dict, labels: dict, protocols: list[str]) -> dict[str, np.ndarray]:
    scores = {}
    for split in protocols:
        train_splits = ["train"] if split == "dev" else ["train", "dev"]
        backend = hydra.utils.instantiate(cfg.backend)
        backend.fit([f for s in train_splits for f in feats[s]], np.concatenate([labels[s] for s in train_splits]))
        scores[split] = backend.score(feats[split])
    return scores


@register_task("fit_gmm")
def fit_gmm(cfg: DictConfig) -> dict[str, float]:
    from audioexp.backends.fusion import LogisticRegressionFusion
    from audioexp.utils.runs import instantiate_loggers

    output_dir = Path(cfg.paths.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    opts = cfg.gmm
    protocols = list(opts.protocols)
    if not set(protocols) <= {"dev", "eval"} or not protocols:
        raise ValueError(f"gmm.protocols must list 'dev' and/or 'eval', got {protocols}")
    if (opts.get("score_fusion") or []) and set(protocols) != {"dev", "eval"}:
        raise ValueError("score fusion trains its weights on dev scores and applies them to eval: "
                         "gmm.protocols must hold both")
    corpus = hydra.utils.instantiate(cfg.data)
    corpus.prepare_data()
    cache_dir = Path(opts.cache_dir) if opts.get("cache_dir") else None
    needed = sorted({"train", *protocols, *(["dev"] if "eval" in protocols else [])})
    systems_feats: dict[str, dict] = {}
    labels: dict[str, np.ndarray] = {}
    for name, fe_cfg in cfg.frontends.items():
        frontend = hydra.utils.instantiate(fe_cfg)
        systems_feats[name] = {}
        for split in needed:
            systems_feats[name][split], labels[split] = extract_features(corpus, frontend, split, cache_dir)
    for fused in opts.get("feature_fusion") or []:
        parts = list(fused)
        name = "+".join(parts)
        systems_feats[name] = {
            split: [np.concatenate(frames, axis=1) for frames in zip(*(systems_feats[p][split] for p in parts))]
            for split in needed
        }
    scores: dict[str, dict[str, np.ndarray]] = {}
    for name, feats in systems_feats.items():
        log.info("system %s: GMMs for %s", name, protocols)
        scores[name] = _score_system(cfg, feats, labels, protocols)
    for fused in opts.get("score_fusion") or []:
        parts = list(fused)
        fusion = LogisticRegressionFusion().fit(np.stack([scores[p]["dev"] for p in parts], 1), labels["dev"])
        log.info("score fusion of %s: weights %s, bias %.3f", parts, fusion.weights, fusion.bias)
        scores["score(" + "+".join(parts) + ")"] = {
            "eval": fusion(np.stack([scores[p]["eval"] for p in parts], 1))}

    metrics: dict[str, float] = {}
    rows = []
    figures = {}
    for name, per_split in scores.items():
        for split, s in per_split.items():
            eer, _ = equal_error_rate(s, labels[split])
            dcf, _ = minimum_dcf(s, labels[split], p_target=0.5)
            metrics[f"{split}/{name}/eer"] = eer
            metrics[f"{split}/{name}/min_dcf"] = dcf
            rows.append([name, split, 100 * eer, dcf, len(s)])
            safe = name.replace("(", "_").replace(")", "").replace("+", "_")
            np.savetxt(output_dir / f"scores_{split}_{safe}.txt", np.stack([s, labels[split]], 1), fmt=["%.6f", "%d"])
            fig = det_curve_figure(s, labels[split], title=f"{name} ({split})")
            fig.savefig(output_dir / f"det_{split}_{safe}.png", dpi=100)
            figures[f"det/{split}/{safe}"] = fig
    table = "| system | split | EER % | minDCF (p 0.5) | trials |\n| --- | --- | --- | --- | --- |\n" + "".join(
        f"| {r[0]} | {r[1]} | {r[2]:.2f} | {r[3]:.3f} | {r[4]} |\n" for r in rows)
    atomic_write_text(output_dir / "results.md", table)
    log.info("results:\n%s", table)
    atomic_write_text(output_dir / "resolved_config.yaml",
                      OmegaConf.to_yaml(OmegaConf.masked_copy(cfg, [k for k in cfg if k != "hydra"]), resolve=True))
    for logger in instantiate_loggers(cfg.get("logger")):
        logger.log_metrics(metrics)
        if logger.__class__.__name__ == "WandbLogger":
            logger.log_table("results", columns=["system", "split", "eer_percent", "min_dcf", "trials"], data=rows)
            for key, fig in figures.items():
                logger.log_image(key, [fig])
        logger.finalize("success")
    import matplotlib.pyplot as plt

    for fig in figures.values():
        plt.close(fig)
    return metrics
