"""FM broadcast DataModule: layout, manifest cache, splits, bad files, missing roots."""

from __future__ import annotations

import functools
import re

import shutil
import warnings

import numpy as np
import pytest
import soundfile as sf
import torch

from audioexp.data.audio import AudioFileError
from audioexp.data.validate import BadAudioError
from audioexp.data.fm_broadcast import CorpusNotFoundError, FMBroadcastDataModule, prepare_fm_broadcast
from audioexp.minicorpus import prepare

SR = 16000


def _tone(freq: float, seconds: float = 5.0, sr: int = SR, channels: int = 1) -> np.ndarray:
    t = np.arange(int(seconds * sr)) / sr
    y = 0.3 * np.sin(2 * np.pi * freq * t)
    return np.stack([y] * channels, axis=1) if channels > 1 else y


@pytest.fixture
def tiny_root(tmp_path):
    """5 recordings per class, 2 clips each, WAV and FLAC at various depths."""
    root = tmp_path / "fm"
    for label, base in (("speech", 200.0), ("music", 440.0)):
        for r in range(5):
            for c in range(2):
                ext = "flac" if (r + c) % 2 else "wav"
                path = root / label / f"rec{r}" / ("deeper" if c else "") / f"clip{c}.{ext}"
                path.parent.mkdir(parents=True, exist_ok=True)
                sf.write(path, _tone(base + 10 * r + c), SR)
    return root


def make_dm(root, tmp_path, **kw):
    kw.setdefault("val_fraction", 0.2)
    kw.setdefault("num_workers", 0)
    kw.setdefault("batch_size", 4)
    return FMBroadcastDataModule(root=str(root), cache_dir=str(tmp_path / "cache"), **kw)


def test_layout_labels_groups_and_batches(tiny_root, tmp_path):
    dm = make_dm(tiny_root, tmp_path, test_fraction=0.2)
    dm.prepare_data()
    dm.setup("fit")
    m = dm.manifest
    assert len(m) == 20 and m.class_counts() == {"speech": 10, "music": 10}
    assert sorted(m.group_names)[:2] == ["music/rec0", "music/rec1"] and len(m.group_names) == 10
    assert {len(v) for v in dm.splits.values()} == {12, 4}
    batch = next(iter(dm.train_dataloader()))
    assert batch["waveform"].shape == (4, 5 * SR) and batch["waveform"].dtype == torch.float32
    for i, row in enumerate(batch["index"].tolist()):
        assert batch["label"][i] == m.labels[row]
    assert int(batch["skipped"]) == 0


def test_manifest_is_cached_and_rebuilt_when_the_tree_changes(tiny_root, tmp_path):
    first = prepare_fm_broadcast(tiny_root, tmp_path / "cache")
    mtime = first.stat().st_mtime_ns
    assert prepare_fm_broadcast(tiny_root, tmp_path / "cache").stat().st_mtime_ns == mtime
    sf.write(tiny_root / "music" / "new.wav", _tone(300.0), SR)
    second = prepare_fm_broadcast(tiny_root, tmp_path / "cache")
    assert second == first and sum(1 for _ in open(second)) == 1 + 21


def test_grouped_split_keeps_recordings_whole(tiny_root, tmp_path):
    dm = make_dm(tiny_root, tmp_path, split_by="group", val_fraction=0.3, test_fraction=0.2)
    dm.setup()
    groups = {k: set(dm.manifest.groups[v]) for k, v in dm.splits.items()}
    assert not groups["train"] & groups["val"] and not groups["train"] & groups["test"] and not groups["val"] & groups["test"]


def test_csv_manifest_instead_of_folders(tiny_root, tmp_path):
    csv = tmp_path / "list.csv"
    rows = ["path,label,group"] + [f"speech/rec{r}/clip0.wav,speech,s{r}" for r in (0, 2, 4)]
    rows += [f"{tiny_root}/music/rec{r}/clip0.wav,music,m{r}" for r in (0, 2, 4)]  # absolute paths too
    csv.write_text("\n".join(rows) + "\n")
    dm = make_dm(tiny_root, tmp_path, manifest=str(csv), val_fraction=0.34)
    dm.setup()
    assert len(dm.manifest) == 6 and dm.manifest.group_names[0] == "s0"
    assert next(iter(dm.val_dataloader()))["waveform"].shape[1] == 5 * SR


def test_shuffled_labels_only_touch_training(tiny_root, tmp_path):
    dm = make_dm(tiny_root, tmp_path, shuffle_labels=True, val_fraction=0.3)
    dm.setup()
    train = dm._dataset("train")
    true = dm.manifest.labels[train.indices]
    assert sorted(train.labels) == sorted(true) and not np.array_equal(train.labels, true)
    val = dm._dataset("val")
    np.testing.assert_array_equal(val.labels, dm.manifest.labels[val.indices])


def test_other_rates_and_stereo_are_converted(tiny_root, tmp_path):
    path = tiny_root / "music" / "rec0" / "clip0.wav"
    sf.write(path, _tone(440.0, seconds=5.0, sr=44100, channels=2), 44100)
    dm = make_dm(tiny_root, tmp_path, val_fraction=0.0)
    dm.setup()
    ds = dm._dataset("train")
    row = next(i for i in range(len(ds)) if dm.manifest.paths[int(ds.indices[i])] == "music/rec0/clip0.wav")
    item = ds[row]
    assert item["waveform"].shape == (5 * SR,)
    spectrum = np.abs(np.fft.rfft(item["waveform"].numpy()))
    assert abs(np.argmax(spectrum) * SR / (5 * SR) - 440.0) < 1.0  # still a 440 Hz tone at 16 kHz


@pytest.mark.parametrize("kind", ["corrupt", "empty", "nan", "short"])
def test_bad_files_raise_naming_the_file_or_are_skipped_and_counted(kind, tiny_root, tmp_path):
    bad = tiny_root / "speech" / "rec0" / "clip0.wav"
    if kind == "corrupt":
        bad.write_bytes(b"RIFF....WAVEfmt garbage")
    elif kind == "empty":
        sf.write(bad, np.zeros(0), SR)
    elif kind == "nan":
        sf.write(bad, np.full(5 * SR, np.nan, dtype=np.float32), SR, subtype="FLOAT")
    else:
        sf.write(bad, _tone(200.0, seconds=0.2), SR)
    dm = make_dm(tiny_root, tmp_path, val_fraction=0.0, batch_size=20)
    dm.setup()
    with pytest.raises(AudioFileError) as err:
        next(iter(dm.train_dataloader()))
    assert str(bad) in str(err.value)

    # prepare reads every header: a corrupt, empty or short file stops the run there, naming it;
    # NaN samples show only when decoded (data.validate=full, or at read time)
    found_at_prepare = kind != "nan"
    if found_at_prepare:
        with pytest.raises(BadAudioError, match=re.escape(str(bad))):
            make_dm(tiny_root, tmp_path, val_fraction=0.0, batch_size=20).prepare_data()
    with pytest.raises(BadAudioError, match=re.escape(str(bad))):
        make_dm(tiny_root, tmp_path, val_fraction=0.0, batch_size=20, validate="full").prepare_data()

    dm = make_dm(tiny_root, tmp_path, val_fraction=0.0, batch_size=20, skip_bad_files=True)
    dm.prepare_data()
    dm.setup()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        batch = next(iter(dm.train_dataloader()))
    # left out before the split, counted in the summary (the NaN file too: the full scan above
    # cached what it found, and a header check reuses it while the file is unchanged)
    assert dm.check_summary()["summary"] == {"all/files": 20, "all/skipped_files": 1}
    assert len(dm.splits["train"]) == 19 and int(batch["skipped"]) == 0 and batch["waveform"].shape[0] == 19
    assert not caught


def test_a_bad_file_found_only_when_read_is_skipped_and_counted_in_its_batch(tiny_root, tmp_path):
    bad = tiny_root / "speech" / "rec0" / "clip0.wav"
    sf.write(bad, np.full(5 * SR, np.nan, dtype=np.float32), SR, subtype="FLOAT")
    dm = make_dm(tiny_root, tmp_path, val_fraction=0.0, batch_size=20, skip_bad_files=True)
    dm.prepare_data()  # headers only: NaN samples are not seen here
    dm.setup()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        batch = next(iter(dm.train_dataloader()))
    assert int(batch["skipped"]) == 1 and batch["waveform"].shape[0] == 19
    assert any(str(bad) in str(w.message) and "NaN" in str(w.message) for w in caught)


def test_missing_or_empty_root_shows_the_expected_layout(tmp_path):
    with pytest.raises(CorpusNotFoundError, match=r"(?s)does not exist.*speech/\*\*/\*\.wav.*minicorpus fm_broadcast"):
        make_dm(tmp_path / "nowhere", tmp_path).prepare_data()
    (tmp_path / "empty" / "speech").mkdir(parents=True)
    with pytest.raises(CorpusNotFoundError, match="holds no audio files"):
        make_dm(tmp_path / "empty", tmp_path).prepare_data()


def test_minicorpus_is_written_when_asked_and_missing(tmp_path):
    root = tmp_path / "mini"
    dm = make_dm(root, tmp_path, prepare=functools.partial(prepare, kind="fm_broadcast"))
    dm.prepare_data()
    dm.setup()
    assert dm.manifest.class_counts()["speech"] > 0 and dm.manifest.class_counts()["music"] > 0
    shutil.rmtree(root)


def test_manifest_build_writes_the_rows_of_the_plain_walk_and_arrays_that_read_back_the_same(tmp_path):
    """The folder-by-folder build = fm_broadcast_rows written by csv (quoting included), and the
    .npz beside it loads the same manifest as parsing the CSV; an edited CSV is parsed again."""
    import csv as csvlib
    import os

    from audioexp.data.fm_broadcast import fm_broadcast_rows, prepare_fm_broadcast
    from audioexp.data.manifest import read_manifest_csv, write_manifest_csv

    root = tmp_path / "fm"
    for rel in ["speech/rec b/x2.wav", "speech/rec b/x1.wav", "speech/rec, quoted/y.flac", "speech/loose.wav",
                "speech/rec b/deeper/z.wav", "music/m1/a.WAV", "music/m1/.hidden.wav", "music/top.wav"]:
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).touch()
    built = prepare_fm_broadcast(root, tmp_path / "cache")
    reference = tmp_path / "reference.csv"
    write_manifest_csv(fm_broadcast_rows(root), reference)
    assert built.read_text() == reference.read_text()
    assert len(list(csvlib.reader(built.open()))) == 1 + 7
    fast = read_manifest_csv(built, root, ["speech", "music"])
    assert built.with_suffix(".npz").exists()
    os.remove(built.with_suffix(".npz"))
    parsed = read_manifest_csv(built, root, ["speech", "music"])
    assert list(fast.paths) == list(parsed.paths) and list(fast.group_names) == list(parsed.group_names)
    assert (fast.labels == parsed.labels).all() and (fast.groups == parsed.groups).all()
    assert fast.labels.dtype == parsed.labels.dtype and fast.groups.dtype == parsed.groups.dtype
    # the arrays are used only while the CSV is the one they were written from
    prepare_fm_broadcast(root, tmp_path / "cache", rebuild=True)
    with built.open("a") as f:
        f.write("music/extra.wav,music,music/extra.wav\r\n")
    from audioexp.data.manifest import ManifestError

    with pytest.raises(ManifestError, match="8 rows but 7"):  # parsed (not the stale arrays) and refused
        read_manifest_csv(built, root, ["speech", "music"])
