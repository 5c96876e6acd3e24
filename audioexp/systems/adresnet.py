"""ADResNet: speech emotion recognition with frontend attribute disentanglement (Xi et al. 2022).

Y.-X. Xi, Y. Song, L.-R. Dai, I. McLoughlin, L. Liu, "Frontend attributes disentanglement
for speech emotion recognition", ICASSP 2022. A feature extractor (the ResNet of Table 1,
or VGG5) on 41-dim log filterbanks, pre-trained as a VoxCeleb1 speaker classifier, then
fine-tuned on IEMOCAP with a new linear emotion classifier and an AD module at the end of
the extractor (section 3): ``L = L_emo + lambda (CE(f+, emotion) + CE(f-, speaker))``,
lambda = 0.5. Adam, batch 128, 50 epochs, classifier learning rate 0.01, extractor one
hundredth of it, both divided by 10 at epochs 21, 31 and 41. Weighted F1 (Table 2):
ResNet 55.47 % from scratch, 62.24 % pre-trained, 68.19 % pre-trained + AD; VGG5 61.84 %,
VGG5 + AD 64.34 %.

The same system, without AD and with as many classes as speakers, is the pre-training
speaker classifier (``audioexp/conf/experiment/voxceleb_resnet_pretrain.yaml``); a fine-tuning run
loads that run's extractor with ``pretrained=run pretrained_run=DIR``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from functools import partial
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torchmetrics import MaxMetric
from torchmetrics.classification import MulticlassF1Score

from audioexp.networks.adresnet import ADOutput
from audioexp.networks.windowed import longer_than_window, window_and_hop_frames, windowed_average
from audioexp.systems.classification import AudioClassifier

log = logging.getLogger(__name__)

__all__ = ["ADResNet", "load_pretrained_extractor"]

HOW_TO_PRETRAIN = (
    "pre-train the extractor first (python -m audioexp +experiment=voxceleb_resnet_pretrain) and give its "
    "output dir as model.pretrained_run=DIR (or set AUDIOEXP_SPEAKER_PRETRAINED_RUN)"
)


def _network_of(model_cfg) -> tuple[str, int]:
    """(extractor class name, conv1 stride) a run's ``model`` node trained: its injected
    ``backbone`` node, or the ``network``/``conv1_stride`` keys of runs saved before."""
    if model_cfg.get("backbone") is not None:
        backbone = model_cfg.backbone
        return str(backbone._target_).rsplit(".", 1)[-1], int(backbone.get("conv1_stride", 1))
    legacy = {"resnet": "TableOneResNet", "vgg5": "VGG5"}
    return legacy.get(str(model_cfg.get("network")), str(model_cfg.get("network"))), int(model_cfg.get("conv1_stride", 1))


def load_pretrained_extractor(extractor: nn.Module, run_dir: str | Path, which: str = "best") -> Path:
    """Copy a finished run's ``backbone.*`` weights into ``extractor``; return the checkpoint used.

    The run must have trained the same extractor (class and conv1 stride); every extractor
    tensor must be present with the same shape (strict loading). A run dir is code-adjacent
    input: its config's targets are checked and its checkpoint is read with
    ``torch.load(weights_only=True)`` (:mod:`audioexp.utils.trust`), but only load run dirs
    you trust.
    """
    from audioexp.utils.runs import find_checkpoint, load_run_config
    from audioexp.utils.trust import load_checkpoint

    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise FileNotFoundError(f"model.pretrained_run={run_dir} does not exist; " + HOW_TO_PRETRAIN)
    theirs = _network_of(load_run_config(run_dir).model)
    ours = (type(extractor).__name__, int(getattr(extractor, "conv1_stride", 1)))
    if theirs != ours:
        raise ValueError(
            f"model.pretrained_run={run_dir} trained {theirs[0]} (conv1 stride {theirs[1]}); "
            f"this model's backbone is {ours[0]} (conv1 stride {ours[1]})"
        )
    ckpt_path = find_checkpoint(run_dir, which)
    state = load_checkpoint(ckpt_path, map_location="cpu")["state_dict"]
    backbone = {k[len("backbone."):]: v for k, v in state.items() if k.startswith("backbone.")}
    if not backbone:
        raise ValueError(f"{ckpt_path} holds no backbone.* tensors: not an ADResNet run?")
    extractor.load_state_dict(backbone, strict=True)
    return ckpt_path


class ADResNet(AudioClassifier):
    """Emotion (or speaker) classifier: extractor [+ AD module] + linear classifier.

    Parameters
    ----------
    frontend : nn.Module
        ``LogFilterbank``: (batch, time) [+ lengths] -> (batch, 1, 41, frames).
    backbone : FeatureExtractor
        The ResNet of Table 1 (``TableOneResNet``, its ``conv1_stride`` unstated in the
        paper: ours 1) or VGG5 (``conf/model/backbone/``).
    ad : callable, optional
        ``ad(channels) -> AttributeDisentanglement`` (a ``_partial_`` holding D, the
        attention's ``reduction_dim``: 8): insert the AD module and train with the
        dual-space loss; None: no AD module.
    num_classes : int
        Emotions (4) or, pre-training, speakers.
    ad_after : str
        Block the AD module follows: "end" (the paper's choice) or a block name
        (``stage1``-``stage4``, ``transition1``-``transition4``, ``conv1`` ...).
    ad_loss_weight : float
        lambda (0.5).
    num_speakers : int
        Classes of the F- speaker head: the fold's training speakers (8).
    pretrained : {"none", "run"}
        "run": load the extractor of the finished pre-training run ``pretrained_run``.
    pretrained_run : str, optional
        Its output dir: code-adjacent input (weights_only checkpoint, checked config
        targets), so only a run dir you trust.
    lr : float
        Learning rate of the classifier (0.01).
    extractor_lr_factor : float
        Extractor rate = ``lr * extractor_lr_factor`` (the paper: 0.01 when pre-trained).
    ad_lr_factor : float
        AD module and dual-space heads: ``lr * ad_lr_factor`` (ours: 1, new parameters).
    top_k : tuple of int
        Extra top-k accuracies (pre-training: top-5).
    tsne : bool
        Log a t-SNE image of the test embeddings (class colours, speaker numbers).
    tsne_max_points : int
    eval_window_seconds : float or None
        Evaluation (eval mode) of an utterance longer than this runs the extractor on windows
        of at most this many seconds of its (VAD-kept) frames and averages the window
        embeddings weighted by each window's output frames, the logits being the classifier on
        that average (:func:`audioexp.networks.windowed.windowed_average`). Batches of shorter
        utterances are evaluated as before, bit for bit. ``None``: whole utterances always.
        Ours: 60 s (IEMOCAP's longest utterance lasts about 35 s).
    eval_hop_seconds : float or None
        Largest distance between window starts; ``None``: windows tile the utterance.
    eval_windows_per_batch : int
        Windows of one utterance through the extractor at once.
    """

    def __init__(
        self,
        frontend: nn.Module,
        backbone: nn.Module,
        num_classes: int,
        class_names: list[str] | None = None,
        ad: Callable[[int], nn.Module] | None = None,
        ad_after: str = "end",
        ad_loss_weight: float = 0.5,
        num_speakers: int = 8,
        pretrained: str = "none",
        pretrained_run: str | None = None,
        lr: float = 0.01,
        extractor_lr_factor: float = 0.01,
        ad_lr_factor: float = 1.0,
        optimizer: partial | None = None,
        scheduler: partial | None = None,
        top_k: tuple[int, ...] = (),
        tsne: bool = True,
        tsne_max_points: int = 2000,
        eval_window_seconds: float | None = 60.0,
        eval_hop_seconds: float | None = None,
        eval_windows_per_batch: int = 1,
    ) -> None:
        if pretrained not in ("none", "run"):
            raise ValueError(f"pretrained must be 'none' or 'run', got {pretrained!r}")
        class_names = [str(c) for c in class_names] if class_names is not None else None
        top_k = tuple(int(k) for k in top_k)
        extractor = backbone
        channels = extractor.out_channels
        super().__init__(
            frontend=frontend, backbone=extractor, head=nn.Linear(channels, num_classes), num_classes=num_classes,
            class_names=class_names, lr=lr, optimizer=optimizer, scheduler=scheduler, top_k=top_k,
        )
        self.ad_after = ad_after
        self.ad_loss_weight = ad_loss_weight
        self.extractor_lr_factor = extractor_lr_factor
        self.ad_lr_factor = ad_lr_factor
        self.tsne = tsne
        self.tsne_max_points = tsne_max_points
        self.eval_window_seconds = eval_window_seconds
        self.eval_hop_seconds = eval_hop_seconds
        self.eval_windows_per_batch = eval_windows_per_batch
        if eval_window_seconds is not None:
            self._window_frames()  # a bad window fails here, not at the first evaluation
        if ad is not None:
            block = list(extractor.blocks)[-1] if ad_after == "end" else ad_after
            if block not in extractor.block_channels:
                raise ValueError(f"ad_after must be 'end' or one of {list(extractor.blocks)}, got {ad_after!r}")
            ad_channels = extractor.block_channels[block]
            self.ad = ad(ad_channels)
            self.ad_emotion_head = nn.Linear(ad_channels, num_classes)  # f+ = FC(pool(F+))
            self.ad_speaker_head = nn.Linear(ad_channels, num_speakers)  # f- = FC(pool(F-))
        else:
            self.ad = self.ad_emotion_head = self.ad_speaker_head = None
        for stage in ("train", "val", "test"):
            getattr(self, f"{stage}_metrics").add_metrics(
                {"weighted_f1": MulticlassF1Score(num_classes=num_classes, average="weighted")}
            )
        self.val_f1_best = MaxMetric()
        self._test_outputs: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []
        if pretrained == "run":
            if not pretrained_run:
                raise ValueError("model.pretrained=run needs model.pretrained_run: " + HOW_TO_PRETRAIN)
            ckpt = load_pretrained_extractor(self.backbone, pretrained_run)
            log.info("feature extractor loaded from %s (classifier%s new)", ckpt, ", AD module and heads" if ad else "")
        self.save_hyperparameters(ignore=["frontend", "backbone", "ad", "optimizer", "scheduler"], logger=False)

    # --- forward -------------------------------------------------------------------------
    def _lengths(self, waveform: torch.Tensor, lengths: torch.Tensor | None) -> torch.Tensor | None:
        if lengths is None or bool((lengths == waveform.shape[-1]).all()):
            return None
        return lengths

    def extract(self, waveform: torch.Tensor, lengths: torch.Tensor | None = None) -> tuple[torch.Tensor, ADOutput | None]:
        """Final feature map (batch, C, F', T') and the AD module's output (None without AD)."""
        features = self.frontend(waveform, self._lengths(waveform, lengths))
        return self.backbone(features, ad=self.ad, ad_after=self.ad_after)

    def _window_frames(self) -> tuple[int, int | None]:
        """(window, hop) in front-end frames."""
        return window_and_hop_frames(self.eval_window_seconds, self.eval_hop_seconds, self.frontend.sample_rate,
                                     self.frontend.hop_length)

    def _windowed(self, waveform: torch.Tensor, lengths: torch.Tensor | None) -> bool:
        """Whether this (evaluation) batch holds an utterance longer than the window."""
        return not self.training and longer_than_window(waveform, lengths, self.eval_window_seconds,
                                                        self.frontend.sample_rate)

    def _windowed_embed(self, waveform: torch.Tensor, lengths: torch.Tensor | None) -> torch.Tensor:
        """Embeddings (batch, C), each utterance alone: its features whole (utterance-level VAD
        and normalisation, as unwindowed), the extractor (and AD module) on windows of them,
        weighted by each window's output frames T'."""
        window, hop = self._window_frames()

        def encode(windows: torch.Tensor):
            feature_map = self.backbone(windows, ad=self.ad, ad_after=self.ad_after)[0]
            return feature_map.mean(dim=(2, 3)), feature_map.shape[3]

        embeddings = []
        for b in range(waveform.shape[0]):
            n = int(lengths[b]) if lengths is not None else waveform.shape[-1]
            features = self.frontend(waveform[b : b + 1, :n])[0]  # (1, F, frames)
            embeddings.append(windowed_average(features, encode, window, hop, self.eval_windows_per_batch))
        return torch.stack(embeddings)

    def embed(self, waveform: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """Utterance embedding (batch, C): the final feature map averaged over F' and T' (in
        eval mode, in windows for a batch holding an utterance longer than ``eval_window_seconds``)."""
        if self._windowed(waveform, lengths):
            return self._windowed_embed(waveform, lengths)
        return self.extract(waveform, lengths)[0].mean(dim=(2, 3))

    def forward(self, waveform: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """Class logits (batch, num_classes) for (batch, time) waveforms."""
        return self.head(self.embed(waveform, lengths))

    # --- steps -----------------------------------------------------------------------------
    def losses(self, batch: dict, with_ad: bool) -> dict[str, torch.Tensor]:
        """``loss`` (the total), ``emotion`` (L_emo), ``logits``, ``embedding`` and, with AD,
        ``ad_emotion`` (L_AD+), ``ad_speaker`` (L_AD-) and ``speaker_logits``."""
        if not with_ad and self._windowed(batch["waveform"], batch.get("length")):
            ad_out = None  # evaluation: no dual-space loss
            embedding = self._windowed_embed(batch["waveform"], batch.get("length"))
        else:
            feature_map, ad_out = self.extract(batch["waveform"], batch.get("length"))
            embedding = feature_map.mean(dim=(2, 3))
        logits = self.head(embedding)
        out = {"logits": logits, "embedding": embedding, "emotion": self.criterion(logits, batch["label"])}
        out["loss"] = out["emotion"]
        if with_ad and ad_out is not None:
            if "speaker" not in batch:
                raise KeyError("the dual-space loss needs batch['speaker'] (training-speaker indices): use a DataModule that provides them, e.g. IEMOCAPDataModule")
            speakers = batch["speaker"]
            if bool((speakers < 0).any()):
                raise ValueError("the dual-space loss got utterances of speakers outside the training set")
            out["ad_emotion"] = self.criterion(self.ad_emotion_head(ad_out.positive.mean(dim=(2, 3))), batch["label"])
            out["speaker_logits"] = self.ad_speaker_head(ad_out.negative.mean(dim=(2, 3)))
            out["ad_speaker"] = self.criterion(out["speaker_logits"], speakers)
            out["loss"] = out["emotion"] + self.ad_loss_weight * (out["ad_emotion"] + out["ad_speaker"])
        return out

    def model_step(self, batch: dict):
        out = self.losses(batch, with_ad=False)
        return out["loss"], out["logits"].argmax(dim=1), out["logits"]

    def training_step(self, batch: dict | None, batch_idx: int):
        if batch is None:
            return None
        out = self.losses(batch, with_ad=True)
        y = batch["label"]
        n = y.shape[0]
        self.log("train/loss", out["loss"], on_step=True, on_epoch=True, prog_bar=True, batch_size=n)
        if "ad_speaker" in out:
            speaker_acc = (out["speaker_logits"].argmax(dim=1) == batch["speaker"]).float().mean()
            self.log_dict({"train/emotion_loss": out["emotion"], "train/ad_emotion_loss": out["ad_emotion"],
                           "train/ad_speaker_loss": out["ad_speaker"], "train/ad_speaker_acc": speaker_acc},
                          on_step=False, on_epoch=True, batch_size=n)
        self.train_metrics(out["logits"].detach(), y)
        self.log_dict(self.train_metrics, on_step=False, on_epoch=True, batch_size=n)
        self.log_skipped_files("train", batch)
        return out["loss"]

    def test_step(self, batch: dict | None, batch_idx: int) -> None:
        if batch is None:
            return
        out = self.losses(batch, with_ad=False)
        y = batch["label"]
        n = y.shape[0]
        self.log("test/loss", out["loss"], on_epoch=True, batch_size=n, sync_dist=True)
        self.test_metrics(out["logits"], y)
        self.log_dict(self.test_metrics, on_epoch=True, batch_size=n)
        if self.per_class_metrics:
            self.test_confmat.update(out["logits"].argmax(dim=1), y)
        if self.tsne and sum(len(e) for e, _, _ in self._test_outputs) < self.tsne_max_points:
            speakers = batch.get("speaker_id", torch.full_like(y, -1))
            self._test_outputs.append((out["embedding"].detach().cpu(), y.cpu(), speakers.cpu()))
        self.log_skipped_files("test", batch)

    # --- epoch ends ---------------------------------------------------------------------
    def on_validation_epoch_end(self) -> None:
        if not self.trainer.sanity_checking:
            self.val_f1_best(self.val_metrics["weighted_f1"].compute())
            self.log("val/weighted_f1_best", self.val_f1_best.compute(), prog_bar=True)
        super().on_validation_epoch_end()

    def on_test_epoch_start(self) -> None:
        self._test_outputs = []

    def on_test_epoch_end(self) -> None:
        super().on_test_epoch_end()
        outputs, self._test_outputs = self._test_outputs, []
        if not self.tsne or not outputs:
            return
        embeddings = torch.cat([e for e, _, _ in outputs]).float().numpy()
        if len(embeddings) < 5:
            log.info("t-SNE skipped: only %d test embeddings", len(embeddings))
            return
        labels = torch.cat([y for _, y, _ in outputs]).numpy()
        speakers = torch.cat([s for _, _, s in outputs]).numpy()
        all_names = list(getattr(getattr(self.trainer, "datamodule", None), "speakers", None) or [])
        names = {int(s): all_names[s] for s in np.unique(speakers) if 0 <= s < len(all_names)}
        from audioexp.figures import tsne_figure

        fig = tsne_figure(embeddings, labels, speakers, self.class_names, names, title="test utterance embeddings")
        self.log_figure("test/tsne", fig)

    # --- optimisation -------------------------------------------------------------------
    def parameter_groups(self) -> list[dict]:
        """``extractor`` at ``lr * extractor_lr_factor``, ``classifier`` at ``lr``, ``ad`` (the AD
        module and both dual-space heads) at ``lr * ad_lr_factor``."""
        groups = [
            {"params": list(self.backbone.parameters()), "lr": self.lr * self.extractor_lr_factor, "name": "extractor"},
            {"params": list(self.head.parameters()), "lr": self.lr, "name": "classifier"},
        ]
        if self.ad is not None:
            ad_params = [*self.ad.parameters(), *self.ad_emotion_head.parameters(), *self.ad_speaker_head.parameters()]
            groups.append({"params": ad_params, "lr": self.lr * self.ad_lr_factor, "name": "ad"})
        frontend = [p for p in self.frontend.parameters() if p.requires_grad]
        if frontend:
            groups[1]["params"] += frontend
        return groups
