"""Hybrid BYOL-S: state_dict against the upstream definition, preprocessing against librosa,
pooling against a loop, checkpoint handling, and extraction through Trainer.predict."""

from __future__ import annotations

import json
from pathlib import Path

import librosa
import numpy as np
import pytest
import torch

from audioexp.data.audio import load_audio
from audioexp.data.emodb import EmoDBDataModule
from audioexp.embedders.byols import ByolsCvT, ByolsFrontend, load_byols_checkpoint
from audioexp.embedders.embedders import ByolsEmbedder
from audioexp.embedders.functional import LOG_EPS, clip_statistics, mean_plus_max_pool, reassemble_by_index

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "byols_cvt_state_dict.json"


def test_state_dict_matches_the_upstream_model_definition():
    """Names, order and shapes as serab-byols' CvT produces them (fixture cites the commit)."""
    fixture = json.loads(FIXTURE.read_text())
    assert fixture["upstream"]["commit"] == "115fd81235d2c14ddab4bcf55ed79250711c2a2c"
    ours = [[k, list(v.shape)] for k, v in ByolsCvT().state_dict().items()]
    assert ours == fixture["state_dict"]
    assert sum(int(np.prod(s)) for _, s in ours) == fixture["num_elements"]


def test_encoder_shapes():
    net = ByolsCvT().eval()
    with torch.no_grad():
        fmap = net.feature_map(torch.randn(2, 1, 64, 101))
        assert fmap.shape == (2, 512, 4, 7)
        assert net(torch.randn(3, 1, 64, 40)).shape == (3, 2048)
    with pytest.raises(ValueError, match="batch, 1, mels, frames"):
        net(torch.randn(2, 64, 40))


def test_mean_plus_max_pool_against_a_loop():
    x = torch.randn(2, 5, 3, 6, dtype=torch.float64)
    out = mean_plus_max_pool(x).numpy()
    a = x.numpy()
    for b in range(2):
        for f in range(3):
            for c in range(5):
                v = a[b, c, f, :]
                assert out[b, f * 5 + c] == pytest.approx(v.mean() + v.max(), abs=1e-12)


def test_frontend_matches_librosa():
    rng = np.random.default_rng(0)
    wave = (rng.standard_normal(16000) * 0.1).astype(np.float32)
    lms = ByolsFrontend().log_mel(torch.from_numpy(wave)[None])[0].double().numpy()
    ref = librosa.feature.melspectrogram(
        y=wave.astype(np.float64), sr=16000, n_fft=1024, win_length=400, hop_length=160, n_mels=64,
        fmin=60, fmax=7800, power=2.0, htk=True, norm=None, center=True, pad_mode="reflect",
    )
    np.testing.assert_allclose(lms, np.log(ref + LOG_EPS), atol=2e-3)
    normed = ByolsFrontend(mean=-3.0, std=2.0)(torch.from_numpy(wave)[None])
    assert normed.shape == (1, 1, 64, 101)
    np.testing.assert_allclose(normed[0, 0].double().numpy(), (lms + 3.0) / 2.0, atol=1e-5)


def test_clip_statistics_are_means_of_per_clip_statistics():
    rng = np.random.default_rng(1)
    clips = [rng.normal(rng.uniform(-5, 5), rng.uniform(0.5, 3), (64, int(rng.integers(20, 80)))) for _ in range(4)]
    mean, std = clip_statistics([torch.from_numpy(c) for c in clips])
    assert mean == pytest.approx(np.mean([c.mean() for c in clips]), rel=1e-5)
    assert std == pytest.approx(np.mean([c.std(ddof=1) for c in clips]), rel=1e-5)


def test_reassemble_by_index():
    rng = np.random.default_rng(2)
    rows = rng.normal(size=(7, 3))
    order = rng.permutation(7)
    # two "ranks", the second repeating an item as the distributed sampler pads
    got = reassemble_by_index([order[:4], np.r_[order[4:], order[0]]], [rows[order[:4]], rows[np.r_[order[4:], order[0]]]], 7)
    np.testing.assert_array_equal(got, rows)
    with pytest.raises(ValueError, match="no prediction"):
        reassemble_by_index(order[:5], rows[order[:5]], 7)
    with pytest.raises(ValueError, match="two different"):
        reassemble_by_index(np.r_[order, order[0]], np.r_[rows[order], rows[[order[1]]]], 7)


def test_without_checkpoint_it_stops_with_where_to_get_the_weights(tmp_path):
    with pytest.raises(FileNotFoundError, match="embedder.checkpoint=.*random weights are not an embedding"):
        ByolsEmbedder(checkpoint=None)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        ByolsEmbedder(checkpoint=str(tmp_path / "missing.pth"))
    with pytest.raises(FileNotFoundError, match="serab-byols"):
        load_byols_checkpoint(ByolsCvT(), None)


def test_checkpoint_loads_strictly(tmp_path):
    torch.manual_seed(0)
    state = ByolsCvT().state_dict()
    torch.save(state, tmp_path / "byols.pth")
    net = load_byols_checkpoint(ByolsCvT(), tmp_path / "byols.pth")
    assert all(torch.equal(net.state_dict()[k], v) for k, v in state.items())
    state.pop("layers.2.1.g")
    torch.save(state, tmp_path / "broken.pth")
    with pytest.raises(RuntimeError, match="(?s)not a hybrid BYOL-S CvT checkpoint.*layers.2.1.g"):
        load_byols_checkpoint(ByolsCvT(), tmp_path / "broken.pth")


@pytest.fixture(scope="module")
def tiny_emodb(tmp_path_factory):
    from audioexp.minicorpus import write_minicorpus

    return write_minicorpus("emodb", tmp_path_factory.mktemp("byols") / "emodb", seed=2, num_speakers=2,
                            texts_per_emotion=1, min_seconds=0.2, max_seconds=0.35)


def test_embedder_through_trainer_predict_equals_per_clip_reference(tmp_path, tiny_emodb):
    """Padded batches of unequal clips (batch_size 3) give each clip's own embedding, in file order."""
    torch.manual_seed(1)
    torch.save(ByolsCvT().state_dict(), tmp_path / "byols.pth")
    dm = EmoDBDataModule(str(tiny_emodb), batch_size=3)
    dm.prepare_data()
    dm.setup()
    embedder = ByolsEmbedder(checkpoint=str(tmp_path / "byols.pth"))
    got = embedder.embed(dm)
    assert got.shape == (14, 2048) and np.isfinite(got).all()
    # reference: serab-byols' recipe clip by clip, statistics over the same files
    model = embedder.build()
    waves = [load_audio(tiny_emodb / f, 16000) for f in dm.files]
    mean, std = clip_statistics([model.frontend.log_mel(w[None]) for w in waves])
    model.frontend.mean, model.frontend.std = mean, std
    with torch.no_grad():
        ref = np.stack([model.network(model.frontend(w[None]))[0].numpy() for w in waves])
    np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-4)
    fixed = ByolsEmbedder(checkpoint=str(tmp_path / "byols.pth"), normalization="fixed", mean=mean, std=std).embed(dm)
    np.testing.assert_allclose(fixed, ref, rtol=1e-4, atol=1e-4)
