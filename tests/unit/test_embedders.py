"""openSMILE dimensions, the embedding cache, and the embedder of a finished audioexp run."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from audioexp.data.audio import load_audio
from audioexp.data.emodb import EmoDBDataModule
from audioexp.embedders.embedders import OpenSmileEmbedder, RunEmbedder
from audioexp.systems.embedding_probe import get_embeddings
from tests.conftest import compose_config


@pytest.fixture(scope="module")
def tiny_emodb(tmp_path_factory):
    from audioexp.minicorpus import write_minicorpus

    return write_minicorpus("emodb", tmp_path_factory.mktemp("emb") / "emodb", seed=3, num_speakers=2,
                            texts_per_emotion=1, min_seconds=0.3, max_seconds=0.5)


@pytest.fixture
def tiny_dm(tiny_emodb):
    dm = EmoDBDataModule(str(tiny_emodb))
    dm.prepare_data()
    dm.setup()
    return dm


@pytest.mark.parametrize("feature_set,dim", [("ComParE_2016", 6373), ("eGeMAPSv02", 88)])
def test_opensmile_dimensions(feature_set, dim):
    embedder = OpenSmileEmbedder(feature_set)
    rng = np.random.default_rng(0)
    t = np.arange(16000) / 16000
    wave = 0.1 * np.sin(2 * np.pi * 150 * t) * (1 + 0.5 * np.sin(2 * np.pi * 4 * t)) + 0.01 * rng.standard_normal(16000)
    x = embedder.embed_waveform(wave, 16000)
    assert x.shape == (dim,) and np.isfinite(x).all()
    assert embedder.dim == dim


def test_opensmile_refuses_unknown_sets():
    with pytest.raises(ValueError, match="unknown openSMILE feature set"):
        OpenSmileEmbedder("eGeMAPS_v9")


class CountingEmbedder:
    """Mean and standard deviation of each clip; counts how often it really runs."""

    name = "counting"

    def __init__(self, scale=1.0):
        self.scale = scale
        self.calls = 0

    def settings(self):
        return {"embedder": "counting", "scale": self.scale}

    def embed(self, datamodule, trainer_kwargs=None):
        self.calls += 1
        waves = [load_audio(datamodule.root / f, 16000).numpy() for f in datamodule.files]
        return np.array([[w.mean(), self.scale * w.std()] for w in waves])


def test_cache_is_keyed_by_settings_and_files(tmp_path, tiny_emodb, tiny_dm):
    embedder = CountingEmbedder()
    first = get_embeddings(embedder, tiny_dm, str(tmp_path / "cache"))
    again = get_embeddings(embedder, tiny_dm, str(tmp_path / "cache"))
    assert embedder.calls == 1
    np.testing.assert_array_equal(first, again)
    other = CountingEmbedder(scale=2.0)
    np.testing.assert_allclose(get_embeddings(other, tiny_dm, str(tmp_path / "cache"))[:, 1], 2 * first[:, 1])
    assert other.calls == 1
    # a changed file is a new key
    path = tiny_emodb / tiny_dm.files[0]
    st = os.stat(path)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    get_embeddings(embedder, tiny_dm, str(tmp_path / "cache"))
    assert embedder.calls == 2
    # no cache dir: always extracts
    get_embeddings(embedder, tiny_dm, None)
    assert embedder.calls == 3


def test_run_embedder_gives_the_runs_embed_output_in_file_order(tmp_path, tiny_dm, imagenet_hub_cache):
    """A finished run (config + checkpoint) embeds every file as model.embed does."""
    from audioexp.tasks.skeleton import resolved_config
    from audioexp.utils.runs import RESOLVED_CONFIG, build_model

    run_dir = tmp_path / "run"
    cfg = compose_config(["+experiment=demo"], run_dir)
    torch.manual_seed(0)
    model = build_model(cfg).eval()
    (run_dir / "checkpoints").mkdir(parents=True)
    OmegaConf.save(OmegaConf.create(resolved_config(cfg)), run_dir / RESOLVED_CONFIG)
    torch.save({"state_dict": model.state_dict()}, run_dir / "checkpoints" / "last.ckpt")
    embedder = RunEmbedder(str(run_dir), checkpoint="last")
    assert embedder.settings()["checkpoint"]["size"] > 0
    got = embedder.embed(tiny_dm)
    with torch.no_grad():
        ref = np.stack([model.embed(load_audio(tiny_dm.root / f, 16000)[None])[0].numpy() for f in tiny_dm.files])
    assert got.shape == ref.shape
    np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match="embedder.run_dir"):
        RunEmbedder(None)
