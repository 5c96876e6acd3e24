"""audioexp.data.validate: facts of a file, the judgement, the cache, the metadata checks; and the
caches around a corpus (manifest, facts) rebuilt when they went stale or bad."""

from __future__ import annotations

import logging
import math

import numpy as np
import pytest
import soundfile as sf

from audioexp.data import validate as V
from audioexp.data.audio import AudioFileError, load_audio
from audioexp.data.fm_broadcast import FMBroadcastDataModule, prepare_fm_broadcast

SR = 16000


def noise(seconds, rng, scale=0.1, channels=1, sr=SR):
    shape = (int(seconds * sr), channels) if channels > 1 else (int(seconds * sr),)
    return (scale * rng.standard_normal(shape)).astype(np.float32)


@pytest.mark.parametrize("subtype,channels", [("PCM_16", 1), ("PCM_24", 2), ("FLOAT", 1)])
def test_wav_data_chunk_declared_and_present_frames(tmp_path, subtype, channels):
    rng = np.random.default_rng(0)
    path = tmp_path / "a.wav"
    sf.write(path, noise(2.0, rng, channels=channels), SR, subtype=subtype)
    block = channels * {"PCM_16": 2, "PCM_24": 3, "FLOAT": 4}[subtype]
    assert V.wav_data_frames(path) == (2 * SR, 2 * SR)
    size = path.stat().st_size
    cut = size - (2 * SR - 12345) * block  # keep 12,345 frames of sample data
    path.write_bytes(path.read_bytes()[:cut])
    assert V.wav_data_frames(path) == (2 * SR, 12345)
    assert sf.info(str(path)).frames == 12345  # what soundfile reports: the cut is invisible to it
    facts = V.probe_audio(path)
    assert (facts.frames, facts.data_frames) == (2 * SR, 12345)
    kind, message = V.AudioChecks(SR).judge(facts)
    assert kind == "truncated" and "declares 32000 frames" in message and "holds 12345" in message
    with pytest.raises(AudioFileError, match="truncated"):
        load_audio(path, SR, checks=V.AudioChecks(SR))
    flac = tmp_path / "a.flac"
    sf.write(flac, noise(1.0, rng), SR)
    assert V.wav_data_frames(flac) is None


def test_a_truncated_flac_is_found_without_decoding_it(tmp_path):
    path = tmp_path / "a.flac"
    sf.write(path, noise(5.0, np.random.default_rng(1)), SR)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 3])
    facts = V.probe_audio(path)
    assert not facts.scanned
    assert V.AudioChecks(SR).judge(facts)[0] in ("truncated", "unreadable")


def test_signal_facts_against_numpy():
    rng = np.random.default_rng(2)
    x = rng.standard_normal((1000, 2)) * 0.3
    x[[3, 500], [0, 1]] = [np.nan, np.inf]
    peak, rms_db, nonfinite = V.signal_facts(x)
    finite = x[np.isfinite(x)]
    assert nonfinite == 2
    assert peak == pytest.approx(np.abs(finite).max(), rel=1e-12)
    assert rms_db == pytest.approx(10 * np.log10(np.mean(finite**2)), rel=1e-12)
    assert V.signal_facts(np.zeros(10)) == (0.0, -math.inf, 0)


def test_judgement_of_every_kind(tmp_path):
    rng = np.random.default_rng(3)
    checks = V.AudioChecks(SR, min_seconds=0.5, max_seconds=4.0, resample="down", silence_db=-60.0)
    files = {
        "ok": (noise(1.0, rng), SR),
        "stereo_48k": (noise(1.0, rng, channels=2, sr=48000), 48000),  # converted, not bad
        "too_short": (noise(0.2, rng), SR),
        "too_long": (noise(5.0, rng), SR),
        "sample_rate": (noise(1.0, rng, sr=8000), 8000),
        "silent": (np.zeros(SR, np.float32), SR),
        "quiet": (noise(1.0, rng, scale=1e-4), SR),  # -80 dBFS
        "nonfinite": (np.where(np.arange(SR) == 7, np.nan, noise(1.0, rng)).astype(np.float32), SR),
        "empty": (np.zeros(0, np.float32), SR),
    }
    paths = {}
    for name, (data, sr) in files.items():
        paths[name] = tmp_path / f"{name}.wav"
        sf.write(paths[name], data, sr, subtype="FLOAT")
    (tmp_path / "corrupt.wav").write_bytes(b"RIFF1234WAVEjunkjunk")
    paths["unreadable"] = tmp_path / "corrupt.wav"
    paths["missing"] = tmp_path / "nowhere.wav"
    expected = {"ok": None, "stereo_48k": None, "too_short": "too_short", "too_long": "too_long", "sample_rate": "sample_rate",
                "silent": "silent", "quiet": "silent", "nonfinite": "nonfinite", "empty": "empty",
                "unreadable": "unreadable", "missing": "missing"}
    header_only = {"silent", "quiet", "nonfinite"}  # seen only once decoded
    for name, path in paths.items():
        full = checks.judge(V.probe_audio(path, full=True))
        header = checks.judge(V.probe_audio(path))
        assert (full[0] if full else None) == expected[name], (name, full)
        assert (header[0] if header else None) == (None if name in header_only else expected[name]), (name, header)
    # at read time, whatever the prepare mode, the same checks raise naming the file
    for name in ("silent", "quiet", "nonfinite", "too_long", "sample_rate"):
        with pytest.raises(AudioFileError, match=str(paths[name])):
            load_audio(paths[name], SR, checks=checks)
    assert load_audio(paths["stereo_48k"], SR, checks=checks).shape == (SR,)
    assert V.AudioChecks(SR, resample="any").rate_problem(8000) is None
    assert "not the experiment's" in V.AudioChecks(SR, resample="never").rate_problem(48000)


def test_the_facts_cache_reads_only_new_or_changed_files_and_survives_corruption(tmp_path, monkeypatch, caplog):
    rng = np.random.default_rng(4)
    paths = []
    for i in range(6):
        paths.append(str(tmp_path / f"{i}.wav"))
        sf.write(paths[-1], noise(0.5, rng), SR)
    cache = tmp_path / "cache" / "facts.csv"
    probed = []
    real = V.probe_audio
    monkeypatch.setattr(V, "probe_audio", lambda p, full=False: probed.append((p, full)) or real(p, full))
    first = V.audit_audio(paths, cache)
    assert len(probed) == 6 and all(f.frames == SR // 2 for f in first.values())
    probed.clear()
    key = lambda facts: {p: (f.size, f.mtime_ns, f.format, f.rate, f.frames) for p, f in facts.items()}  # noqa: E731
    assert key(V.audit_audio(paths, cache)) == key(first) and probed == []
    sf.write(paths[2], noise(0.75, rng), SR)  # changed: size differs
    again = V.audit_audio(paths, cache)
    assert [p for p, _ in probed] == [paths[2]] and again[paths[2]].frames == int(0.75 * SR)
    probed.clear()
    V.audit_audio(paths, cache, full=True)  # not decoded yet: every file again, decoded
    assert sorted(probed) == sorted((p, True) for p in paths)
    probed.clear()
    assert V.audit_audio(paths, cache, full=False)[paths[0]].scanned  # a decode serves header checks too
    assert probed == []
    cache.write_text(cache.read_text()[:-40])  # truncated mid-row
    with caplog.at_level(logging.WARNING):
        V.audit_audio(paths, cache)
    assert "unreadable" in caplog.text and len(probed) == 6


def test_metadata_problems_name_each_case():
    files = {
        "train": [("a", "x", "l:1"), ("a", "x", "l:9"), ("b", "y", "l:2"), ("c", "x", "l:3")],
        "test": [("c", "x", "l:4"), ("d", "z", "l:5"), ("e", None, "l:6")],
        "val": [("b", "x", "l:7")],
    }
    problems = V.metadata_problems(files)
    assert "'a' is listed 2 times in train (l:1, l:9)" in problems
    assert "'c' is in more than one split: train, test" in problems
    assert "'b' is in more than one split: train, val" in problems
    assert "'b' has more than one label: x (l:7), y (l:2)" in problems
    assert "classes ['z'] of test have no train files: a model cannot learn them" in problems
    assert len(problems) == 5
    assert V.metadata_problems({"all": [("a", "x"), ("b", "x")]}) == []


def _fm(root, cache, **kw):
    return FMBroadcastDataModule(str(root), cache_dir=str(cache), val_fraction=0.25, num_workers=0, **kw)


def test_fm_manifest_sees_clips_added_deep_and_rebuilds_a_truncated_cache(tmp_path, caplog):
    rng = np.random.default_rng(5)
    root = tmp_path / "fm"
    for label in ("speech", "music"):
        for rec in range(2):
            for clip in range(3):
                (root / label / f"rec{rec}" / "part").mkdir(parents=True, exist_ok=True)
                sf.write(root / label / f"rec{rec}" / "part" / f"{clip}.wav", noise(1.5, rng), SR)
    manifest = prepare_fm_broadcast(root, tmp_path / "cache")
    assert len(manifest.read_text().splitlines()) == 13
    sf.write(root / "music" / "rec1" / "part" / "new.wav", noise(1.5, rng), SR)  # two folders below the class
    manifest = prepare_fm_broadcast(root, tmp_path / "cache")
    assert "music/rec1/part/new.wav" in manifest.read_text()
    lines = manifest.read_text().splitlines()
    manifest.write_text("\n".join(lines[:7]) + "\n")  # cut at a row boundary
    with caplog.at_level(logging.WARNING):
        dm = _fm(root, tmp_path / "cache")
        dm.prepare_data()
        dm.setup()
    assert "holds 6 rows but 13 were written" in caplog.text
    assert len(dm.manifest) == 13


def test_a_changed_file_is_read_again_at_prepare(tmp_path):
    rng = np.random.default_rng(6)
    root = tmp_path / "fm"
    for label in ("speech", "music"):
        (root / label).mkdir(parents=True)
        for clip in range(4):
            sf.write(root / label / f"{clip}.wav", noise(1.5, rng), SR)
    dm = _fm(root, tmp_path / "cache")
    dm.prepare_data()
    sf.write(root / "music" / "2.wav", noise(1.5, rng)[: SR // 4], SR)  # now too short
    with pytest.raises(V.BadAudioError, match=r"music/2\.wav: is 0\.250 s long"):
        _fm(root, tmp_path / "cache").prepare_data()


def test_a_truncated_corpus_table_is_rebuilt_with_one_warning(tmp_path, caplog):
    from audioexp.data.asvspoof2017 import ASVspoof2017
    from audioexp.data.emodb import EmoDBDataModule
    from audioexp.minicorpus import write_minicorpus

    emodb = write_minicorpus("emodb", tmp_path / "emodb", seed=1, texts_per_emotion=1, min_seconds=0.6, max_seconds=0.7)
    dm = EmoDBDataModule(str(emodb), cache_dir=str(tmp_path / "cache"), check_counts=False)
    dm.prepare_data()
    table = dm.table_path()
    rows = table.read_text().splitlines()
    table.write_text("\n".join(rows[:-3]) + "\n")  # cut at a row boundary
    with caplog.at_level(logging.WARNING):
        assert len(dm.read_table()) == len(rows) - 1
    assert "rebuilding the corpus table" in caplog.text and "were written" in caplog.text

    asv = write_minicorpus("asvspoof2017", tmp_path / "asv", seed=1, utterances_per_class={"train": 2, "dev": 2, "eval": 2},
                           seconds=(0.5, 0.6))
    corpus = ASVspoof2017(asv, cache_dir=tmp_path / "cache")
    corpus.prepare_data(("train",))
    table = corpus.table_path("train")
    rows = table.read_text().splitlines()
    table.write_text("\n".join(rows[:2]) + "\n")
    assert len(corpus.entries("train")) == len(rows) - 1
