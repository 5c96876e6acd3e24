"""``dev_run``: how the ``+debug`` presets shrink every task the same way.

A preset (``conf/debug/*.yaml``) sets Lightning's own switches under ``trainer`` and, under
``dev_run``, values for the parts that have such keys::

    dev_run:
      data: {batch_size: 4, num_workers: 0, max_files_per_class: 2}
      backend: {n_components: 2, max_iter: 3}      # fit_gmm's GMMs
      probe: {grid: quick, cv_folds: 2}            # the probe's classifiers

Each value lands only where the part already names that key, so one preset serves
training recipes, ``task=fit_gmm`` and ``task=probe`` alike and never passes a part an
argument it does not take.
"""

from __future__ import annotations

import logging

from omegaconf import DictConfig, open_dict

log = logging.getLogger(__name__)


def apply_dev_run(cfg: DictConfig) -> list[str]:
    """Put ``cfg.dev_run.<node>.<key>`` on ``cfg.<node>.<key>`` where that key exists.

    Returns the applied settings as ``node.key=value`` strings (also logged).
    """
    dev = cfg.get("dev_run")
    if not dev:
        return []
    applied = []
    with open_dict(cfg):
        for node, values in dev.items():
            target = cfg.get(node)
            if not isinstance(target, DictConfig):
                continue
            for key, value in values.items():
                if key in target:
                    target[key] = value
                    applied.append(f"{node}.{key}={value}")
    if applied:
        log.info("dev run: %s", " ".join(applied))
    return applied
