"""ADResNet system: parameter groups and schedule, pre-trained extractor loading, dual-space loss."""

from __future__ import annotations

import functools

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf
from torch import nn

from audioexp.features.fbank import LogFilterbank
from audioexp.networks.adresnet import NETWORKS, AttributeDisentanglement
from audioexp.figures import tsne_figure
from audioexp.systems.adresnet import ADResNet
from audioexp.utils.runs import build_model
from tests.conftest import compose_config


def make(network="resnet", ad=False, **kw):
    """The system with its parts injected as the configs do (frontend built first, as build_model does)."""
    kw.setdefault("num_classes", 4)
    frontend = LogFilterbank(vad="none")
    backbone = NETWORKS[network]()
    return ADResNet(frontend=frontend, backbone=backbone, ad=functools.partial(AttributeDisentanglement, reduction_dim=8) if ad else None, **kw)


def write_run(model: ADResNet, run_dir, network="resnet", conv1_stride=1, legacy=False):
    """A finished run dir as task=train leaves it (config + Lightning-style checkpoint); ``legacy``:
    the model node of runs saved before parts were injected (``network``, ``conv1_stride``)."""
    (run_dir / "checkpoints").mkdir(parents=True)
    target = f"audioexp.networks.adresnet.{NETWORKS[network].__name__}"
    node = {"network": network, "conv1_stride": conv1_stride} if legacy else {"backbone": {"_target_": target, "conv1_stride": conv1_stride}}
    OmegaConf.save(OmegaConf.create({"model": node}), run_dir / "resolved_config.yaml")
    torch.save({"state_dict": model.state_dict()}, run_dir / "checkpoints" / "last.ckpt")
    return run_dir


def test_parameter_groups_learning_rates_and_milestones_from_the_config(tmp_path):
    cfg = compose_config(["+experiment=iemocap_adresnet", "model.pretrained=none"], tmp_path)
    assert OmegaConf.to_container(cfg.model.scheduler) == {
        "_target_": "torch.optim.lr_scheduler.MultiStepLR", "_partial_": True, "milestones": [20, 30, 40], "gamma": 0.1,
    }
    model = build_model(cfg)
    conf = model.configure_optimizers()
    optimizer, scheduler = conf["optimizer"], conf["lr_scheduler"]["scheduler"]
    assert isinstance(optimizer, torch.optim.Adam) and conf["lr_scheduler"]["interval"] == "epoch"
    groups = {g["name"]: g for g in optimizer.param_groups}
    assert {k: g["lr"] for k, g in groups.items()} == pytest.approx({"extractor": 1e-4, "classifier": 1e-2, "ad": 1e-2})
    # every trainable parameter in exactly one group, each group holding its part
    ids = [id(p) for g in optimizer.param_groups for p in g["params"]]
    assert sorted(ids) == sorted(id(p) for p in model.parameters() if p.requires_grad) and len(ids) == len(set(ids))
    assert {id(p) for p in groups["extractor"]["params"]} == {id(p) for p in model.backbone.parameters()}
    assert {id(p) for p in groups["classifier"]["params"]} == {id(p) for p in model.head.parameters()}
    assert {id(p) for p in groups["ad"]["params"]} == {
        id(p) for m in (model.ad, model.ad_emotion_head, model.ad_speaker_head) for p in m.parameters()
    }
    # divided by 10 at the paper's epochs 21, 31, 41 (counted from 1)
    seen = {}
    for epoch in range(50):
        seen[epoch + 1] = {g["name"]: g["lr"] for g in optimizer.param_groups}
        optimizer.step()
        scheduler.step()
    for epoch, factor in ((1, 1), (20, 1), (21, 0.1), (30, 0.1), (31, 0.01), (41, 0.001), (50, 0.001)):
        assert seen[epoch]["classifier"] == pytest.approx(1e-2 * factor)
        assert seen[epoch]["extractor"] == pytest.approx(1e-4 * factor)
        assert seen[epoch]["ad"] == pytest.approx(1e-2 * factor)


def test_baseline_experiments_use_a_tenth_for_random_extractors(tmp_path):
    for name, network in (("iemocap_resnet_baseline", "resnet"), ("iemocap_vgg5", "vgg5"), ("iemocap_vgg5_ad", "vgg5")):
        cfg = compose_config([f"+experiment={name}"], tmp_path)
        assert cfg.model.pretrained == "none" and cfg.model.backbone._target_.endswith(NETWORKS[network].__name__)
        model = build_model(cfg)
        lrs = {g["name"]: g["lr"] for g in model.parameter_groups()}
        assert lrs["extractor"] == pytest.approx(1e-3) and lrs["classifier"] == pytest.approx(1e-2)
        assert ("ad" in lrs) == (name == "iemocap_vgg5_ad")


def test_pretrained_extractor_is_loaded_and_classifier_is_new(tmp_path):
    torch.manual_seed(0)
    speaker = make(num_classes=7, lr=1e-3, extractor_lr_factor=1.0, top_k=(5,))
    with torch.no_grad():  # BatchNorm running statistics too, not only the weights
        for buf in speaker.backbone.buffers():
            if buf.is_floating_point():
                buf.uniform_(0.5, 1.5)
    run = write_run(speaker, tmp_path / "speaker_run")
    torch.manual_seed(1)
    tuned = make(ad=True, pretrained="run", pretrained_run=str(run))
    theirs, ours = speaker.backbone.state_dict(), tuned.backbone.state_dict()
    assert theirs.keys() == ours.keys()
    for k in theirs:
        torch.testing.assert_close(ours[k], theirs[k], rtol=0, atol=0)
    assert tuned.head.weight.shape == (4, 128) and speaker.head.weight.shape == (7, 128)
    torch.manual_seed(1)
    fresh = make(ad=True)
    torch.testing.assert_close(tuned.head.weight, fresh.head.weight)  # the classifier is a new one
    assert not torch.equal(fresh.backbone.blocks["conv1"][0].weight, tuned.backbone.blocks["conv1"][0].weight)
    assert tuned.hparams.pretrained_run == str(run)


def test_pretrained_errors_say_how_to_provide_the_run(tmp_path):
    with pytest.raises(ValueError, match=r"needs model.pretrained_run.*voxceleb_resnet_pretrain"):
        make(pretrained="run")
    with pytest.raises(FileNotFoundError, match=r"does not exist.*voxceleb_resnet_pretrain"):
        make(pretrained="run", pretrained_run=str(tmp_path / "nowhere"))
    run = write_run(make(network="vgg5"), tmp_path / "vgg_run", network="vgg5")
    with pytest.raises(ValueError, match=r"trained VGG5 \(conv1 stride 1\); this model's backbone is TableOneResNet"):
        make(pretrained="run", pretrained_run=str(run))
    legacy = write_run(make(network="vgg5"), tmp_path / "old_vgg_run", network="vgg5", legacy=True)
    with pytest.raises(ValueError, match="trained VGG5"):
        make(pretrained="run", pretrained_run=str(legacy))
    with pytest.raises(ValueError, match="ad_after must be"):
        make(ad=True, ad_after="stage7")


def test_dual_space_loss_is_emotion_plus_half_the_two_heads():
    torch.manual_seed(2)
    model = make(ad=True, num_speakers=8, ad_loss_weight=0.5).train()
    batch = {"waveform": torch.randn(6, 8000), "label": torch.tensor([0, 1, 2, 3, 0, 1]), "speaker": torch.tensor([0, 7, 3, 3, 5, 1])}
    torch.manual_seed(3)
    out = model.losses(batch, with_ad=True)
    # recomputed from the parts: frontend -> extractor -> AD module at its end -> heads
    torch.manual_seed(3)
    feats = model.frontend(batch["waveform"])
    fmap = feats
    for block in model.backbone.blocks.values():
        fmap = block(fmap)
    ad = model.ad(fmap)
    ce = nn.functional.cross_entropy
    l_emo = ce(model.head(ad.positive.mean(dim=(2, 3))), batch["label"])
    l_plus = ce(model.ad_emotion_head(ad.positive.mean(dim=(2, 3))), batch["label"])
    l_minus = ce(model.ad_speaker_head(ad.negative.mean(dim=(2, 3))), batch["speaker"])
    torch.testing.assert_close(out["emotion"], l_emo)
    torch.testing.assert_close(out["ad_emotion"], l_plus)
    torch.testing.assert_close(out["ad_speaker"], l_minus)
    torch.testing.assert_close(out["loss"], l_emo + 0.5 * (l_plus + l_minus))
    out["loss"].backward()
    assert model.ad_speaker_head.weight.grad.abs().sum() > 0 and model.ad.attention.time_reduce.weight.grad.abs().sum() > 0
    # evaluation: L_emo alone (held-out speakers are not classes of the speaker head)
    loss, _, _ = model.model_step({k: v for k, v in batch.items() if k != "speaker"})
    assert torch.isfinite(loss)
    with pytest.raises(ValueError, match="outside the training set"):
        model.losses({**batch, "speaker": torch.tensor([0, -1, 3, 3, 5, 1])}, with_ad=True)
    with pytest.raises(KeyError, match="batch\\['speaker'\\]"):
        model.losses({k: v for k, v in batch.items() if k != "speaker"}, with_ad=True)


def test_forward_on_padded_batches_sees_each_item_alone_looped():
    model = make().eval()
    with torch.no_grad():
        assert model(torch.randn(2, 16000)).shape == (2, 4)
        x = torch.randn(1, 12000)
        padded = torch.cat([x, torch.zeros(1, 4000)], dim=1)
        batched = model(torch.cat([padded, torch.randn(1, 16000)]), torch.tensor([12000, 16000]))
        # the short item is its own 76 frames looped to the batch's 101 (no padding frames)
        alone = model.frontend(x)
        looped = torch.cat([alone, alone[..., :25]], dim=-1)
        torch.testing.assert_close(batched[0], model.head(model.backbone(looped)[0].mean(dim=(2, 3)))[0])


def test_tsne_figure_marks_every_point():
    rng = np.random.default_rng(0)
    emb = np.r_[rng.normal(0, 1, (20, 8)), rng.normal(5, 1, (20, 8))]
    fig = tsne_figure(emb, np.repeat([0, 1], 20), np.tile([2, 3], 20), ["neutral", "sad"], {2: "Ses02F", 3: "Ses02M"}, title="t")
    ax = fig.axes[0]
    assert sum(len(c.get_offsets()) for c in ax.collections) == 40
    assert "2=Ses02F" in ax.get_title()
