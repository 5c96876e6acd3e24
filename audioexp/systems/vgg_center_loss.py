"""VGGCenterLoss: speaker identification and verification (Yadav & Rai, Interspeech 2018).

S. Yadav and A. Rai, "Learning Discriminative Features for Speaker Identification and
Verification": VGG config A / B bodies on 1 x 161 x T log-power spectrograms, feature
averaging over time, a bottleneck FC (``ndims`` = 128) trained under the joint supervision
of softmax and center loss (``L = L_s + lambda L_c``, lambda = 5, the center term a
per-dimension mean: :mod:`audioexp.losses.center`), Adam with default
hyper-parameters. Identification: top-1 / top-5 on VoxCeleb1's test split (89.5 / 97.0 %
for Network B, joint); verification: cosine scores of bottleneck embeddings on the trial
list (EER 4.9 %).

Whole utterances longer than ``eval_window_seconds`` (ours; 60 s by default, longer than all
but a handful of VoxCeleb1 files) are evaluated in windows whose embeddings are averaged with
weights equal to their pooled frame counts (:mod:`audioexp.networks.windowed`): the network's
memory is bounded by the window instead of the file.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from functools import partial

import torch
from torch import nn
from torchmetrics import MinMetric

from audioexp.metrics.trials import TrialEmbeddings, cosine_trial_scores, embedding_matrix
from audioexp.metrics.verification import equal_error_rate, minimum_dcf
from audioexp.networks.windowed import longer_than_window, window_and_hop_frames, windowed_average
from audioexp.systems.classification import AudioClassifier

log = logging.getLogger(__name__)


class VGGCenterLoss(AudioClassifier):
    """VGG speaker network with softmax + center loss.

    Parameters
    ----------
    frontend : nn.Module
        The VoxCeleb front-end, ``LogPowerSpectrogram``: waveforms (batch, time) [+ lengths]
        to one-channel spectrograms (batch, 1, 161, frames).
    backbone : VGGSpeakerNet
        The paper's network A or B (``config``) with its bottleneck (``ndims``, the
        embedding) and softmax layer: (batch, 1, F, T) [+ frames] -> (logits, embedding).
    center_loss : callable
        ``center_loss(num_classes, ndims, reduction=...) -> CenterLoss`` (a ``_partial_``
        holding ``alpha``, the centers' learning rate, Wen et al.: 0.5, and
        ``dim_reduction``, "mean" by default: the squared distance averaged over the
        bottleneck's dimensions, the normalisation under which lambda = 5 is coherent; see
        :mod:`audioexp.losses.center`).
    num_classes : int
        Training speakers (1,251 identification, 1,211 verification on the real corpus).
    center_loss_weight : float
        lambda of eq. 2 (5 in the paper; 0 gives the softmax-only baseline). Its meaning
        depends on the center loss's normalisation: 5 with the default per-dimension mean
        equals 5 / ndims (0.039 for ndims 128) with the squared norm summed over the
        dimensions.
    center_loss_warmup_epochs : int
        Ramp lambda linearly from 0 over this many epochs (ours; 0 = the paper's constant
        lambda). With a center term too heavy for the softmax (lambda = 5 on the squared
        norm summed over the dimensions), the center term shrinks every embedding before
        the softmax has learned anything and training stalls at chance; a ramp was tried
        against that (it did not help on the miniature corpus; experiments/voxceleb.md).
    center_loss_start_epoch : int
        Train with the softmax alone for this many epochs, then add lambda x center loss
        (ramped over ``center_loss_warmup_epochs`` from there). Ours; 0 = the paper. The
        centers are updated from the first step, so they are the class means when the
        center term starts.
    loss_reduction : {"mean", "sum"}
        Applied to BOTH terms, so lambda keeps the paper's meaning (eq. 3 sums both).
    protocol : {"identification", "verification"}
        What validation and test measure: top-k accuracy, or EER / minDCF of cosine-scored trials.
    p_target : float
        Prior of the minDCF.
    lr : float
        Adam's default 1e-3 (the paper: "default hyper-parameter values").
    eval_window_seconds : float or None
        Evaluation (eval mode) of an utterance longer than this runs the network on windows
        of at most this length and averages their embeddings (and logits) weighted by each
        window's pooled frames (:func:`audioexp.networks.windowed.windowed_average`). A batch
        whose utterances are all at most this long is evaluated as before, bit for bit.
        ``None``: whole utterances of any length (the paper; memory grows with the file).
        Ours: 60 s.
    eval_hop_seconds : float or None
        Largest distance between window starts; ``None``: the window length (windows tile
        the utterance, every frame counted once).
    eval_windows_per_batch : int
        Windows of one utterance run through the network together (memory ~ this many windows).
    """

    def __init__(
        self,
        frontend: nn.Module,
        backbone: nn.Module,
        center_loss: Callable[..., nn.Module],
        num_classes: int,
        class_names: list[str] | None = None,
        center_loss_weight: float = 5.0,
        center_loss_warmup_epochs: int = 0,
        center_loss_start_epoch: int = 0,
        loss_reduction: str = "mean",
        protocol: str = "identification",
        p_target: float = 0.01,
        lr: float = 1e-3,
        optimizer: partial | None = None,
        scheduler: partial | None = None,
        eval_window_seconds: float | None = 60.0,
        eval_hop_seconds: float | None = None,
        eval_windows_per_batch: int = 1,
    ) -> None:
        if protocol not in ("identification", "verification"):
            raise ValueError(f"protocol must be 'identification' or 'verification', got {protocol!r}")
        class_names = [str(c) for c in class_names] if class_names is not None else None
        if backbone.classifier.out_features != num_classes:
            raise ValueError(f"the backbone's softmax has {backbone.classifier.out_features} classes, the data {num_classes}")
        super().__init__(
            frontend=frontend,
            backbone=backbone,
            head=nn.Identity(),
            num_classes=num_classes,
            class_names=class_names,
            lr=lr,
            optimizer=optimizer,
            scheduler=scheduler,
            top_k=(5,),
        )
        self.protocol = protocol
        self.center_loss_weight = center_loss_weight
        self.center_loss_warmup_epochs = center_loss_warmup_epochs
        self.center_loss_start_epoch = center_loss_start_epoch
        self.p_target = p_target
        self.eval_window_seconds = eval_window_seconds
        self.eval_hop_seconds = eval_hop_seconds
        self.eval_windows_per_batch = eval_windows_per_batch
        if eval_window_seconds is not None:
            self._window_frames()  # a bad window fails here, not at the first evaluation
        self.criterion = nn.CrossEntropyLoss(reduction=loss_reduction)
        self.center_loss = center_loss(num_classes, backbone.bottleneck.out_features, reduction=loss_reduction)
        self.val_trials = TrialEmbeddings()
        self.test_trials = TrialEmbeddings()
        self.val_eer_best = MinMetric()
        self.per_class_metrics = False  # hundreds of speakers: no per-speaker error rates
        self.save_hyperparameters(ignore=["frontend", "backbone", "center_loss", "optimizer", "scheduler"], logger=False)

    # --- forward -------------------------------------------------------------------------
    def _features(self, waveform: torch.Tensor, lengths: torch.Tensor | None):
        if lengths is not None and bool((lengths == waveform.shape[-1]).all()):
            lengths = None  # fixed-length crops: no masking needed
        spec = self.frontend(waveform, lengths)
        frames = self.frontend.num_frames(lengths) if lengths is not None else None
        return spec, frames

    def _window_frames(self) -> tuple[int, int | None]:
        """(window, hop) in front-end frames."""
        sample_rate, hop_length = self.frontend.sample_rate, self.frontend.hop_length
        window, hop = window_and_hop_frames(self.eval_window_seconds, self.eval_hop_seconds, sample_rate, hop_length)
        if window // 2 < self.backbone.min_frames:
            raise ValueError(
                f"eval_window_seconds={self.eval_window_seconds} gives windows of {window} frames; the network needs "
                f"at least {self.backbone.min_frames} in every window (half a window at the least)"
            )
        return window, hop

    def _windowed(self, waveform: torch.Tensor, lengths: torch.Tensor | None) -> bool:
        """Whether this (evaluation) batch holds an utterance longer than the window."""
        return not self.training and longer_than_window(waveform, lengths, self.eval_window_seconds,
                                                        self.frontend.sample_rate)

    def _windowed_embed(self, waveform: torch.Tensor, lengths: torch.Tensor | None) -> torch.Tensor:
        """Embeddings (batch, ndims), each utterance alone: its spectrogram whole (utterance-level
        normalisation, as unwindowed), the network on windows of it."""
        window, hop = self._window_frames()

        def encode(windows: torch.Tensor):
            return self.backbone.embed(windows), self.backbone.output_frames(windows.shape[-1])

        embeddings = []
        for b in range(waveform.shape[0]):
            n = int(lengths[b]) if lengths is not None else waveform.shape[-1]
            spec = self.frontend(waveform[b : b + 1, :n])[0]  # (1, freq, frames)
            embeddings.append(windowed_average(spec, encode, window, hop, self.eval_windows_per_batch))
        return torch.stack(embeddings)

    def forward_with_embedding(self, waveform: torch.Tensor, lengths: torch.Tensor | None = None):
        """``(logits, bottleneck embedding)`` for (batch, time) waveforms, padded ones with ``lengths``.

        In eval mode, a batch holding an utterance longer than ``eval_window_seconds`` is
        embedded in windows; the logits are the classifier on the pooled embedding (the
        classifier is affine, so this is the frame-weighted mean of the windows' logits).
        """
        if self._windowed(waveform, lengths):
            embedding = self._windowed_embed(waveform, lengths)
            return self.backbone.classifier(self.backbone.dropout_out(embedding)), embedding
        spec, frames = self._features(waveform, lengths)
        return self.backbone(spec, frames)

    def forward(self, waveform: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        return self.forward_with_embedding(waveform, lengths)[0]

    def embed(self, waveform: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """Bottleneck embeddings, shape (batch, ndims); padding is masked out with ``lengths``;
        utterances longer than ``eval_window_seconds`` are embedded in windows (eval mode)."""
        if self._windowed(waveform, lengths):
            return self._windowed_embed(waveform, lengths)
        spec, frames = self._features(waveform, lengths)
        return self.backbone.embed(spec, frames)

    # --- steps -----------------------------------------------------------------------------
    def current_center_loss_weight(self) -> float:
        """lambda: 0 before the start epoch, then ramped over the warm-up epochs (fractional
        epochs, so it rises every step)."""
        if (self.center_loss_warmup_epochs <= 0 and self.center_loss_start_epoch <= 0) or self._trainer is None:
            return self.center_loss_weight
        batches = self.trainer.num_training_batches
        batches = max(int(batches or 1), 1) if batches != float("inf") else 1
        ready = self.trainer.fit_loop.epoch_loop.batch_progress.current.ready
        progress = self.current_epoch + ready / batches - self.center_loss_start_epoch
        if progress < 0:
            return 0.0
        if self.center_loss_warmup_epochs <= 0:
            return self.center_loss_weight
        return self.center_loss_weight * min(1.0, progress / self.center_loss_warmup_epochs)

    def model_step(self, batch: dict):
        logits, embedding = self.forward_with_embedding(batch["waveform"], batch.get("length"))
        y = batch["label"]
        softmax = self.criterion(logits, y)
        center = self.center_loss(embedding, y)
        loss = softmax + self.current_center_loss_weight() * center
        return loss, logits, embedding, softmax, center

    def training_step(self, batch: dict | None, batch_idx: int):
        if batch is None:  # every file bad: still join the centers' all-reduce so DDP ranks stay in step
            if self.center_loss_weight > 0:
                self.center_loss.update_centers(
                    self.center_loss.centers.new_zeros(0, self.center_loss.ndims),
                    torch.zeros(0, dtype=torch.long, device=self.device),
                )
            return None
        loss, logits, embedding, softmax, center = self.model_step(batch)
        y = batch["label"]
        n = y.shape[0]
        if self.center_loss_weight > 0:
            self.center_loss.update_centers(embedding.detach(), y)
        self.log_dict(
            {"train/softmax": softmax, "train/center": center, "train/center_weight": self.current_center_loss_weight()},
            on_step=False, on_epoch=True, batch_size=n,
        )
        self.log("train/loss", loss, on_step=True, on_epoch=True, prog_bar=True, batch_size=n)
        self.train_metrics(logits.detach(), y)
        self.log_dict(self.train_metrics, on_step=False, on_epoch=True, batch_size=n)
        self.log_skipped_files("train", batch)
        return loss

    def _eval_step(self, batch: dict | None, stage: str) -> None:
        if batch is None:
            return
        if self.protocol == "identification":
            loss, logits, _, _, _ = self.model_step(batch)
            y = batch["label"]
            n = y.shape[0]
            self.log(f"{stage}/loss", loss, on_epoch=True, prog_bar=True, batch_size=n, sync_dist=True)
            metrics = getattr(self, f"{stage}_metrics")
            metrics(logits, y)
            self.log_dict(metrics, on_epoch=True, prog_bar=True, batch_size=n)
        else:
            getattr(self, f"{stage}_trials").update(batch["index"], self.embed(batch["waveform"], batch.get("length")))
        self.log_skipped_files(stage, batch)

    def validation_step(self, batch, batch_idx):
        self._eval_step(batch, "val")

    def test_step(self, batch, batch_idx):
        self._eval_step(batch, "test")

    # --- epoch ends ---------------------------------------------------------------------
    def _score_trials(self, stage: str):
        """EER and minDCF of the split's trials; returns (scores, labels) on the CPU."""
        metric = getattr(self, f"{stage}_trials")
        indices, gathered = metric.compute()
        metric.reset()
        trials = torch.as_tensor(self.trainer.datamodule.trials[stage], device=gathered.device)
        num_files = int(trials[:, 1:].max()) + 1
        embeddings = embedding_matrix(indices.to(gathered.device), gathered, num_files)
        scores = cosine_trial_scores(embeddings, trials).cpu()
        labels = trials[:, 0].cpu()
        scored = torch.isfinite(scores)
        if not bool(scored.all()):
            # files not embedded this epoch (limit_*_batches, skipped bad files): their trials drop out
            log.warning("%s: %d of %d trials have a file without an embedding; scoring the rest",
                        stage, int((~scored).sum()), len(scores))
            scores, labels = scores[scored], labels[scored]
        if labels.unique().numel() < 2:
            log.warning("%s: too few scored trials for an EER (need targets and non-targets)", stage)
            self.log_dict({f"{stage}/eer": float("nan"), f"{stage}/min_dcf": float("nan")})
            return scores, labels, float("nan")
        eer, _ = equal_error_rate(scores, labels)
        min_dcf, _ = minimum_dcf(scores, labels, p_target=self.p_target)
        self.log_dict({f"{stage}/eer": eer, f"{stage}/min_dcf": min_dcf}, prog_bar=True)
        return scores, labels, eer

    def on_validation_epoch_end(self) -> None:
        if self.protocol == "identification":
            super().on_validation_epoch_end()
            return
        if self.trainer.sanity_checking:  # a couple of batches cannot score the trial list
            self.val_trials.reset()
            return
        _, _, eer = self._score_trials("val")
        if eer == eer:
            self.val_eer_best(torch.tensor(eer))
            self.log("val/eer_best", self.val_eer_best.compute(), prog_bar=True)

    def on_test_epoch_end(self) -> None:
        if self.protocol == "identification":
            super().on_test_epoch_end()
            return
        scores, labels, eer = self._score_trials("test")
        if eer != eer:  # NaN: nothing to plot
            return
        from audioexp.figures import det_curve_figure

        self.log_figure("test/det_curve", det_curve_figure(scores.numpy(), labels.numpy(), title="test trials"))

    def predict_step(self, batch: dict, batch_idx: int) -> dict:
        return {"index": batch["index"], "embedding": self.embed(batch["waveform"], batch.get("length"))}
