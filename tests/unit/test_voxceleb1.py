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
    held_out_for_validation,
    identification_parts,
    is_test_speaker,
    read_iden_split,
    read_meta,
    read_trial_list,
    speaker_of,
    video_of,
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


def assert_parts_of(entries, train, val, test):
    """train + val are exactly splits 1 + 2, disjoint, no video in both; test is split 3."""
    pool = [p for s, p in entries if s in (1, 2)]
    assert sorted(train + val) == sorted(pool) and not set(train) & set(val) and val
    assert not {(speaker_of(p), video_of(p)) for p in train} & {(speaker_of(p), video_of(p)) for p in val}
    assert test == [p for s, p in entries if s == 3]


def test_identification_protocol(voxceleb_corpus, tmp_path):
    dm = make_dm(voxceleb_corpus, tmp_path)
    dm.prepare_data()
    dm.setup()
    entries = read_iden_split(voxceleb_corpus / "iden_split.txt")
    assert dm.num_classes == len({speaker_of(p) for _, p in entries}) == 10
    # the default: train on splits 1 + 2 less whole held-out videos, select on those, test on 3
    assert_parts_of(entries, dm.train_paths, dm.eval_sets["val"].paths, dm.eval_sets["test"].paths)
    assert set(speaker_of(p) for p in dm.train_paths) == set(dm.class_names)  # every speaker keeps a video
    # the official protocol is one setting away: train 1, validate 2
    official = make_dm(voxceleb_corpus, tmp_path, iden_train_splits=[1], iden_val_by="split")
    official.setup()
    assert official.train_paths == [p for s, p in entries if s == 1]
    assert official.eval_sets["val"].paths == [p for s, p in entries if s == 2]
    assert official.eval_sets["test"].paths == dm.eval_sets["test"].paths
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


def write_split_file(path: Path, speakers: int = 12, videos: int = 18, utterances: int = 3) -> list[tuple[int, str]]:
    """An ``iden_split.txt`` in the official pattern: per speaker one test video, one validation
    video, the rest training (``videos`` differing between speakers, as in the real corpus)."""
    rng = np.random.default_rng(7)
    entries = []
    for s in range(speakers):
        n = videos - s % 5  # 14-18 videos
        for v, split in enumerate(rng.permutation([3, 2] + [1] * (n - 2))):
            entries += [(int(split), f"id{10001 + s}/vid{s:02d}x{v:02d}/{u + 1:05d}.wav") for u in range(utterances)]
    path.write_text("".join(f"{s} {p}\n" for s, p in entries))
    return entries


def test_identification_parts_of_a_generated_split_file(tmp_path):
    entries = write_split_file(tmp_path / "iden_split.txt")
    assert read_iden_split(tmp_path / "iden_split.txt") == entries
    parts = identification_parts(entries, train_splits=[1, 2], val_by="video", val_fraction=0.2, seed=0)
    assert_parts_of(entries, parts["train"], parts["val"], parts["test"])
    pool = [p for s, p in entries if s in (1, 2)]
    for speaker in {speaker_of(p) for p in pool}:
        videos = {video_of(p) for p in pool if speaker_of(p) == speaker}
        held = {video_of(p) for p in parts["val"] if speaker_of(p) == speaker}
        # 0.2 of 13-17 videos, rounded down or up: 2 or 3 (at least one stays in training)
        assert int(0.2 * len(videos)) <= len(held) <= int(0.2 * len(videos)) + 1
        assert all(sum(video_of(q) == video_of(p) for q in parts["val"]) == 3 for p in parts["val"] if speaker_of(p) == speaker)
    # seeded and deterministic; a speaker's draw does not depend on the other speakers' lines
    assert identification_parts(entries, val_fraction=0.2) == parts
    assert identification_parts(entries, val_fraction=0.2, seed=1)["val"] != parts["val"]
    first = speaker_of(entries[0][1])
    alone = identification_parts([e for e in entries if speaker_of(e[1]) == first], val_fraction=0.2)
    assert alone["val"] == [p for p in parts["val"] if speaker_of(p) == first]
    # by utterance: utterances of one video may be on both sides, none twice
    by_utt = identification_parts(entries, val_by="utterance", val_fraction=0.2)
    assert sorted(by_utt["train"] + by_utt["val"]) == sorted(pool) and not set(by_utt["train"]) & set(by_utt["val"])
    assert abs(len(by_utt["val"]) - 0.2 * len(pool)) < 0.05 * len(pool)
    # the old behaviour: train on 1, validate on the official 2
    old = identification_parts(entries, train_splits=[1], val_by="split")
    assert old == {"train": [p for s, p in entries if s == 1], "val": [p for s, p in entries if s == 2],
                   "test": parts["test"]}
    # a fraction too small to draw any video still leaves one for validation
    tiny = identification_parts(entries, val_fraction=0.001)
    assert len({video_of(p) for p in tiny["val"]}) == 1


def test_identification_settings_that_cannot_work_raise(tmp_path):
    entries = write_split_file(tmp_path / "iden_split.txt", speakers=2, videos=5)
    with pytest.raises(ValueError, match="3 is the test split"):
        identification_parts(entries, train_splits=[1, 3])
    with pytest.raises(ValueError, match="validates on split 2"):
        identification_parts(entries, train_splits=[1, 2], val_by="split")
    with pytest.raises(ValueError, match="iden_val_by"):
        identification_parts(entries, val_by="speaker")
    with pytest.raises(ValueError, match="fraction"):
        identification_parts(entries, val_fraction=1.0)
    with pytest.raises(ValueError, match="iden_val_fraction"):
        VoxCeleb1DataModule(root=str(tmp_path), iden_val_fraction=0.0)
    # one video per speaker: nothing to hold out by video
    one_video = [(s, p) for s, p in entries if video_of(p) == video_of(entries[0][1])]
    assert held_out_for_validation([p for _, p in one_video], "video", 0.5) == set()


def test_miniature_config_holds_out_about_one_video_per_speaker():
    import inspect

    from omegaconf import OmegaConf

    from audioexp.minicorpus.voxceleb1 import write_voxceleb1

    conf = Path(__file__).resolve().parents[2] / "audioexp" / "conf" / "data"
    fraction = OmegaConf.load(conf / "voxceleb1_mini.yaml").iden_val_fraction
    assert OmegaConf.load(conf / "voxceleb1.yaml").iden_train_splits == [1, 2]
    defaults = inspect.signature(write_voxceleb1).parameters
    videos, speakers = defaults["videos_per_speaker"].default, defaults["num_speakers"].default
    pool = [f"id{10001 + s}/v{v}/00001.wav" for s in range(speakers) for v in range(videos - 1)]  # less the test video
    held = held_out_for_validation(pool, "video", fraction)
    per_speaker = [sum(speaker_of(p) == f"id{10001 + s}" for p in held) for s in range(speakers)]
    assert sum(n == 1 for n in per_speaker) >= speakers - 1 and max(per_speaker) <= videos - 2


@pytest.mark.skipif(not REAL_SAMPLE.exists(), reason="../shared/data/voxceleb1-sample is not present")
def test_real_sample_iden_split_parts(tmp_path):
    entries = read_iden_split(REAL_SAMPLE / "meta" / "iden_split.txt")
    assert [s for s, _ in entries] == [1, 2, 3, 1, 2, 3]
    # its split file is edited: each speaker's three utterances come from one video, so no
    # video can be held out, and the data module says so
    assert identification_parts(entries, val_fraction=0.5)["val"] == []
    with pytest.raises(ValueError, match="iden_val_by=utterance"):
        VoxCeleb1DataModule(root=str(REAL_SAMPLE), cache_dir=str(tmp_path), num_workers=0).setup()
    # by utterance: splits 1 + 2 less the held-out utterances, which train never holds; test is 3
    dm = VoxCeleb1DataModule(root=str(REAL_SAMPLE), cache_dir=str(tmp_path), num_workers=0, iden_val_by="utterance")
    dm.setup()
    train, val, test = dm.train_paths, dm.eval_sets["val"].paths, dm.eval_sets["test"].paths
    assert sorted(train + val) == sorted(p for s, p in entries if s in (1, 2)) and val and not set(train) & set(val)
    assert test == [p for s, p in entries if s == 3] and dm.class_names == ["id10001", "id10002"]
    assert list(dm.train_labels) == [dm.class_names.index(speaker_of(p)) for p in train]
    official = VoxCeleb1DataModule(root=str(REAL_SAMPLE), cache_dir=str(tmp_path), num_workers=0,
                                   iden_train_splits=[1], iden_val_by="split")
    official.setup()
    assert official.train_paths == [p for s, p in entries if s == 1]
    assert official.eval_sets["val"].paths == [p for s, p in entries if s == 2]


@pytest.mark.skipif(not REAL_SAMPLE.exists(), reason="../shared/data/voxceleb1-sample is not present")
def test_real_sample_files_identification():
    dm = VoxCeleb1DataModule(root=str(REAL_SAMPLE), cache_dir=None, num_workers=0, batch_size=2, eval_batch_size=2,
                             iden_val_by="utterance")  # one video per speaker: nothing to hold out by video
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
