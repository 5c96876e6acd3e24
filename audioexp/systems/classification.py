"""The one shared base: a single-label audio classifier around given parts.

``frontend`` (waveform -> features, on the model's device), ``backbone`` (features ->
feature map) and ``head`` (feature map -> logits); ``optimizer`` and ``scheduler`` are
partials from the config. Metrics are torchmetrics objects, one set per stage, logged
as ``stage/name``.
"""

from __future__ import annotations

import inspect
import logging
from functools import partial
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.loggers import WandbLogger
from torch import nn
from torchmetrics import MaxMetric, Metric, MinMetric

from audioexp.features.functional import check_sample_rate
from audioexp.metrics.classification import classification_metrics, confusion_matrix_metric
from audioexp.metrics.functional import confusion_error_rates
from audioexp.utils.files import atomic_open

log = logging.getLogger(__name__)


class AudioClassifier(L.LightningModule):
    """Cross-entropy classifier over waveforms.

    Parameters
    ----------
    frontend, backbone, head : nn.Module
    num_classes : int
    class_names : list of str, optional
    lr : float
        Base learning rate (``max_lr`` of a one-cycle schedule).
    optimizer : partial, optional
        ``optimizer(param_groups) -> Optimizer``; Adam by default.
    scheduler : partial, optional
        ``scheduler(optimizer, ...)``. Schedulers that take ``total_steps`` (one-cycle)
        get the run's total optimiser steps and per-group ``max_lr`` and step every batch.
    top_k : tuple of int
        Extra top-k accuracies to log.
    """

    def __init__(
        self,
        frontend: nn.Module,
        backbone: nn.Module,
        head: nn.Module,
        num_classes: int,
        class_names: list[str] | None = None,
        lr: float = 1e-3,
        optimizer: partial | None = None,
        scheduler: partial | None = None,
        top_k: tuple[int, ...] = (),
    ) -> None:
        super().__init__()
        self.frontend = frontend
        self.backbone = backbone
        self.head = head
        self.num_classes = num_classes
        self.class_names = list(class_names) if class_names else [str(i) for i in range(num_classes)]
        if len(self.class_names) != num_classes:
            raise ValueError(f"{len(self.class_names)} class names for {num_classes} classes")
        self.lr = lr
        self.optimizer_factory = optimizer
        self.scheduler_factory = scheduler
        self.criterion = nn.CrossEntropyLoss()
        # one metric set per stage (nn.ModuleDict keys may not be 'train': it is a method)
        self.train_metrics = classification_metrics(num_classes, "train/", top_k)
        self.val_metrics = classification_metrics(num_classes, "val/", top_k)
        self.test_metrics = classification_metrics(num_classes, "test/", top_k)
        self.val_confmat = confusion_matrix_metric(num_classes)
        self.test_confmat = confusion_matrix_metric(num_classes)
        self.val_acc_best = MaxMetric()
        # per-class error rates and the confusion-matrix image only make sense for few classes
        self.per_class_metrics = num_classes <= 20

    def setup(self, stage: str) -> None:
        """Refuse audio at another rate than the front-end was built for (both rates in the error)."""
        datamodule = getattr(getattr(self, "_trainer", None), "datamodule", None)
        check_sample_rate(getattr(datamodule, "sample_rate", None), getattr(self.frontend, "sample_rate", None),
                          f"the front-end {type(self.frontend).__name__}")

    # --- forward -------------------------------------------------------------------------
    def feature_map(self, waveform: torch.Tensor) -> torch.Tensor:
        """Body feature map, shape (batch, C, F', T')."""
        return self.backbone(self.frontend(waveform))

    def embed(self, waveform: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """Utterance embedding, shape (batch, C): the body's feature map averaged over F' and T'."""
        return self.feature_map(waveform).mean(dim=(2, 3))

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        """Logits, shape (batch, num_classes), for waveforms of shape (batch, time)."""
        return self.head(self.feature_map(waveform))

    # --- steps -----------------------------------------------------------------------------
    def model_step(self, batch: dict) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        logits = self(batch["waveform"])
        loss = self.criterion(logits, batch["label"])
        return loss, logits.argmax(dim=1), logits

    def _shared_step(self, batch: dict | None, stage: str) -> torch.Tensor | None:
        if batch is None:  # every file of the batch was bad and skipped
            return None
        loss, _, logits = self.model_step(batch)
        y = batch["label"]
        n = y.shape[0]
        self.log(f"{stage}/loss", loss, on_step=stage == "train", on_epoch=True, prog_bar=True, batch_size=n, sync_dist=stage != "train")
        metrics = getattr(self, f"{stage}_metrics")
        metrics(logits.detach(), y)
        self.log_dict(metrics, on_step=False, on_epoch=True, prog_bar=stage != "train", batch_size=n)
        if stage != "train" and self.per_class_metrics:
            getattr(self, f"{stage}_confmat").update(logits.detach().argmax(dim=1), y)
        self.log_skipped_files(stage, batch)
        return loss

    def log_skipped_files(self, stage: str, batch: dict) -> None:
        """``stage/skipped_files``: bad files the collate dropped, summed over the epoch and ranks."""
        skipped = batch.get("skipped")
        if skipped is not None:
            self.log(f"{stage}/skipped_files", skipped.float(), on_step=False, on_epoch=True, reduce_fx="sum", sync_dist=True, batch_size=1)

    def training_step(self, batch: dict | None, batch_idx: int) -> torch.Tensor | None:
        return self._shared_step(batch, "train")

    def validation_step(self, batch: dict | None, batch_idx: int) -> None:
        self._shared_step(batch, "val")

    def test_step(self, batch: dict | None, batch_idx: int) -> None:
        self._shared_step(batch, "test")

    def predict_step(self, batch: dict, batch_idx: int) -> dict:
        logits = self(batch["waveform"])
        return {"index": batch["index"], "probs": logits.softmax(dim=1), "label": batch["label"]}

    # --- epoch ends ---------------------------------------------------------------------
    def _log_error_rates(self, stage: str) -> torch.Tensor | None:
        if not self.per_class_metrics:
            return None
        metric = getattr(self, f"{stage}_confmat")
        confmat = metric.compute()  # synchronised across DDP ranks by torchmetrics
        rates = confusion_error_rates(confmat, self.class_names)
        self.log_dict({f"{stage}/{k}": v for k, v in rates.items()}, sync_dist=False)
        metric.reset()
        return confmat

    def on_validation_epoch_end(self) -> None:
        self._log_error_rates("val")
        if self.trainer.sanity_checking:
            return
        acc = self.val_metrics["acc"].compute()
        self.val_acc_best(acc)
        self.log("val/acc_best", self.val_acc_best.compute(), prog_bar=True)

    def on_test_epoch_end(self) -> None:
        confmat = self._log_error_rates("test")
        if confmat is not None:
            self.log_figure("test/confusion_matrix", self._confusion_figure(confmat.cpu().numpy()))

    def _confusion_figure(self, confmat):
        from audioexp.figures import confusion_matrix_figure

        return confusion_matrix_figure(confmat, self.class_names, title="test")

    def log_figure(self, key: str, fig) -> None:
        """Save ``fig`` as PNG in the run dir and log it to W&B when W&B is a logger."""
        import matplotlib.pyplot as plt

        if self.trainer is None or not self.trainer.is_global_zero:
            plt.close(fig)
            return
        out = Path(self.trainer.default_root_dir) / f"{key.replace('/', '_')}.png"
        out.parent.mkdir(parents=True, exist_ok=True)
        with atomic_open(out, mode="wb") as handle:
            fig.savefig(handle, dpi=120, format="png")
        for logger in self.loggers:
            if isinstance(logger, WandbLogger):
                logger.log_image(key=key, images=[str(out)])
        plt.close(fig)

    # --- optimisation -------------------------------------------------------------------
    def parameter_groups(self) -> list[dict]:
        """Optimiser parameter groups, each with its own ``lr`` (override for layer-wise rates)."""
        return [{"params": [p for p in self.parameters() if p.requires_grad], "lr": self.lr}]

    # --- resuming -------------------------------------------------------------------------
    def _best_metrics(self) -> dict[str, Metric]:
        """The running bests of validation metrics (``val_acc_best``, ``val_eer_best``, ...)."""
        return {name: m for name, m in self.named_children() if isinstance(m, (MaxMetric, MinMetric))}

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["best_metrics"] = {
            name: float(m.compute()) for name, m in self._best_metrics().items() if m.update_count > 0
        }

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        self._restored_best = checkpoint.get("best_metrics", {})

    def on_train_start(self) -> None:
        """Best-so-far metrics start empty, or from the checkpoint a run resumes (so that e.g.
        ``val/acc_best`` covers the epochs before the interruption too); a run resumed with more
        epochs (``trainer.max_epochs`` raised) keeps a valid OneCycle schedule (the restored
        state is fitted to this run's plan: :func:`stretch_one_cycle_state`)."""
        restored, self._restored_best = getattr(self, "_restored_best", {}), {}
        for name, metric in self._best_metrics().items():
            metric.reset()
            if name in restored:
                metric.update(torch.tensor(restored[name]))
        plan = getattr(self, "_one_cycle_plan", None)
        if plan is not None:
            scheduler, total, phases = plan
            stretch_one_cycle_state(scheduler.__dict__, total, phases)

    def configure_optimizers(self):
        groups = self.parameter_groups()
        factory = self.optimizer_factory or partial(torch.optim.Adam)
        optimizer = factory(groups)
        if self.scheduler_factory is None:
            return optimizer
        func = self.scheduler_factory.func if isinstance(self.scheduler_factory, partial) else self.scheduler_factory
        if "total_steps" in inspect.signature(func).parameters:
            # +1: Lightning may step once more than it estimates (e.g. fast_dev_run)
            total = int(self.trainer.estimated_stepping_batches) + 1
            scheduler = self.scheduler_factory(optimizer, max_lr=[g["lr"] for g in groups], total_steps=total)
            if isinstance(scheduler, torch.optim.lr_scheduler.OneCycleLR):
                self._one_cycle_plan = (scheduler, scheduler.total_steps, [dict(p) for p in scheduler._schedule_phases])
            return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}
        scheduler = self.scheduler_factory(optimizer)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "epoch"}}


def stretch_one_cycle_state(state: dict, total_steps: int, phases: list[dict]) -> bool:
    """Fit a restored OneCycleLR state (its ``__dict__`` or state dict) to this run's plan.

    A run resumed with a larger ``trainer.max_epochs`` plans its OneCycle for the new total,
    then Lightning restores the checkpoint's scheduler state, which holds the old total:
    stepping past it raised ("Tried to step 14 times. The specified number of total steps
    is 13"). Here the state takes the new total and phase boundaries and keeps its step
    count: the run continues on the one-cycle curve of the new length from the step it
    reached (the learning rate moves to that curve's value at this step; the steps before
    it followed the old curve). Returns whether the state was changed.
    """
    old_total = state.get("total_steps")
    if old_total == total_steps:
        return False
    step = state.get("last_epoch", 0)
    if step > total_steps:
        raise ValueError(f"the checkpoint has taken {step} OneCycle steps, more than the {total_steps} this "
                         "run's trainer.max_epochs allows: raise trainer.max_epochs")
    state["total_steps"] = total_steps
    state["_schedule_phases"] = [dict(phase) for phase in phases]
    log.warning("OneCycle schedule rebuilt for %d steps (the checkpoint's run planned %d); continuing at step %d",
                total_steps, old_total, step)
    return True
