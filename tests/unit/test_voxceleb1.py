"""VoxCeleb1 DataModule: protocol files, the two protocols, padding, real sample files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from audioexp.data.fm_broadcast import CorpusNotFoundError
from audioexp.data.voxceleb1 import (
    ProtocolFileError,
    VoxCeleb1DataModule,
    draw_trials,
    is_test_speaker,
    read_iden_split,
    read_meta,
    read_trial_list,
    speaker_of,
)
from tests.conftest import SHARED_DATA

REAL_SAMPLE = SHARED_DATA / "voxceleb1-sample"


def make_dm(root, tmp_path, **kw):
    kw.setdefault("num_workers", 0)
    kw.setdefault("batch_size", 4)
    kw.setdefault("eval_batch_size", 3)
    return VoxCeleb1DataModule(root=str(root), cache_dir=str(tmp_path / "cache"), **kw)


def test_protocol_file_errors_name_file_and_line(tmp_path):
    bad = tmp_path / "iden_split.txt"
    bad.write_text("1 id10001/abc/00001.wav\n4 id10001/abc/00002.wav\n")
    with pytest.raises(ProtocolFileError, match=r"iden_split\.txt:2: expected '1\|2\|3"):
        read_iden_split(bad)
    bad.write_text("1 id10001/00001.wav\n")
    with pytest.raises(ProtocolFileError, match=r"iden_split\.txt:1: expected a path"):
        read_iden_split(bad)
    trials = tmp_path / "veri_test.txt"
    trials.write_text("1 id10270/a/00001.wav id10270/b/00001.wav\n\n2 id10270/a/00001.wav id10271/b/00001.wav\n")
    with pytest.raises(ProtocolFileError, match=r"veri_test\.txt:3: expected '1\|0"):
        read_trial_list(trials)


def test_test_speaker_range():
    assert is_test_speaker("id10270") and is_test_speaker("id10309")
    assert not is_test_speaker("id10269") and not is_test_speaker("id10310") and not is_test_speaker("x10280")


def test_identification_protocol(voxceleb_corpus, tmp_path):
    dm = make_dm(voxceleb_corpus, tmp_path)
    dm.prepare_data()
    dm.setup()
    entries = read_iden_split(voxceleb_corpus / "iden_split.txt")
    assert dm.num_classes == len({speaker_of(p) for _, p in entries}) == 10
    assert len(dm.train_paths) == sum(s == 1 for s, _ in entries)
    assert len(dm.eval_sets["val"].paths) == sum(s == 2 for s, _ in entries)
    assert len(dm.eval_sets["test"].paths) == sum(s == 3 for s, _ in entries)
    batch = next(iter(dm.train_dataloader()))
    assert batch["waveform"].shape == (4, 48000) and bool((batch["length"] == 48000).all())
    test_batch = next(iter(dm.test_dataloader()))
    # whole utterances of different lengths, zero-padded, lengths kept
    lengths = test_batch["length"]
    assert test_batch["waveform"].shape == (3, int(lengths.max()))
    for i, n in enumerate(lengths.tolist()):
        assert test_batch["waveform"][i, n:].abs().sum() == 0
    names = dm.class_names
    for i, idx in enumerate(test_batch["index"].tolist()):
        assert names[int(test_batch["label"][i])] == speaker_of(dm.eval_sets["test"].paths[idx])
    meta = read_meta(voxceleb_corpus / "vox1_meta.csv")
    assert dm.meta == meta and all(meta[s]["Set"] == ("test" if is_test_speaker(s) else "dev") for s in names)


def test_verification_protocol(voxceleb_corpus, tmp_path):
    dm = make_dm(voxceleb_corpus, tmp_path, protocol="verification", val_utterances_per_speaker=2, num_val_trials=50)
    dm.prepare_data()
    dm.setup()
    train_speakers = {speaker_of(p) for p in dm.train_paths}
    assert not any(is_test_speaker(s) for s in train_speakers) and dm.num_classes == len(train_speakers) == 6
    # every file of the training speakers is used, whatever its identification split
    all_dev = [p for p in (voxceleb_corpus / "wav").rglob("*.wav") if not is_test_speaker(p.parts[-3])]
    assert len(dm.train_paths) + len(dm.eval_sets["val"].paths) == len(all_dev)
    assert not set(dm.train_paths) & set(dm.eval_sets["val"].paths)
    val = dm.eval_sets["val"]
    assert {speaker_of(p) for p in val.paths} <= train_speakers  # validation never touches the test list
    trials = val.trials
    assert len(trials) == 50 and set(trials[:, 0]) == {0, 1}
    for label, a, b in trials:
        assert a != b and (speaker_of(val.paths[a]) == speaker_of(val.paths[b])) == bool(label)
    test = dm.eval_sets["test"]
    listed = read_trial_list(voxceleb_corpus / "veri_test.txt")
    assert len(test.trials) == len(listed)
    for (label, a, b), (label2, pa, pb) in zip(test.trials, listed):
        assert label == label2 and test.paths[a] == pa and test.paths[b] == pb


def test_draw_trials_is_balanced_and_seeded():
    speakers = np.repeat(np.arange(5), 4)
    t1, t2 = draw_trials(speakers, 100, seed=1), draw_trials(speakers, 100, seed=1)
    np.testing.assert_array_equal(t1, t2)
    assert t1[:, 0].sum() == 50
    assert all((speakers[a] == speakers[b]) == bool(lab) and a != b for lab, a, b in t1)


def test_missing_root_and_split_show_layout(tmp_path):
    with pytest.raises(CorpusNotFoundError, match=r"(?s)does not exist.*wav/<speaker id>/<video id>"):
        make_dm(tmp_path / "nowhere", tmp_path).prepare_data()
    (tmp_path / "vox" / "wav").mkdir(parents=True)
    with pytest.raises(CorpusNotFoundError, match="no identification split file"):
        make_dm(tmp_path / "vox", tmp_path).setup()
    with pytest.raises(CorpusNotFoundError, match="no verification trial list"):
        make_dm(tmp_path / "vox", tmp_path, protocol="verification").setup()


@pytest.mark.skipif(not REAL_SAMPLE.exists(), reason="../shared/data/voxceleb1-sample is not present")
def test_real_sample_files_identification():
    dm = VoxCeleb1DataModule(root=str(REAL_SAMPLE), cache_dir=None, num_workers=0, batch_size=2, eval_batch_size=2)
    dm.cache_dir = Path("/nonexistent")  # identification never writes a cache
    dm.setup()
    assert dm.class_names == ["id10001", "id10002"]
    batch = next(iter(dm.test_dataloader()))
    assert batch["waveform"].shape[0] == 2 and int(batch["length"].min()) > 4 * 16000
    assert torch.isfinite(batch["waveform"]).all()


def test_a_trial_listed_twice_is_named_by_its_lines(voxceleb_corpus, tmp_path):
    import shutil

    from audioexp.data.validate import MetadataError

    root = tmp_path / "vox"
    shutil.copytree(voxceleb_corpus, root, ignore=shutil.ignore_patterns(".audioexp"))
    lines = (root / "veri_test.txt").read_text().splitlines()
    (root / "veri_test.txt").write_text("\n".join([*lines, lines[3]]) + "\n")
    with pytest.raises(MetadataError, match=rf"is listed more than once \(veri_test.txt:4, veri_test.txt:{len(lines) + 1}\)"):
        make_dm(root, tmp_path, protocol="verification").prepare_data()
