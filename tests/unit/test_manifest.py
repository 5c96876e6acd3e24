"""Manifest walk, packed path table, CSV round trip and splits."""

import numpy as np
import pytest

from audioexp.data.manifest import (
    ManifestError,
    PathTable,
    read_manifest_csv,
    scan_audio_files,
    write_manifest_csv,
)
from audioexp.data.splits import grouped_split, random_split


def test_scan_finds_audio_at_any_depth_sorted(tmp_path):
    for rel in ["b/x.wav", "a/deep/er/y.FLAC", "a/z.wav", "a/notes.txt", ".hidden/h.wav", "top.wav"]:
        p = tmp_path / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b"")
    found = list(scan_audio_files(tmp_path))
    # a folder's files first, then its sub-folders, depth first, names sorted
    assert found == ["top.wav", "a/z.wav", "a/deep/er/y.FLAC", "b/x.wav"]


def test_path_table_round_trip_unicode():
    strings = ["speech/방송/clip 1.wav", "music/x.flac", ""]
    table = PathTable.from_strings(strings)
    assert len(table) == 3 and list(table) == strings and table[-1] == ""
    with pytest.raises(IndexError):
        table[3]


def test_manifest_csv_round_trip_and_errors(tmp_path):
    rows = [("speech/r1/a.wav", "speech", "r1"), ("music/b.wav", "music", "m")]
    path = tmp_path / "m.csv"
    assert write_manifest_csv(rows, path) == 2
    m = read_manifest_csv(path, tmp_path, ["speech", "music"])
    assert list(m.paths) == ["speech/r1/a.wav", "music/b.wav"]
    assert m.labels.tolist() == [0, 1] and m.group_names == ["r1", "m"]
    assert m.resolve(0) == str(tmp_path / "speech/r1/a.wav")
    bad = tmp_path / "bad.csv"
    bad.write_text("path,label\nx.wav,speech\ny.wav,noise\n")
    with pytest.raises(ManifestError, match=r"bad\.csv:3: unknown label 'noise'"):
        read_manifest_csv(bad, tmp_path, ["speech", "music"])
    bad.write_text("file,class\nx.wav,speech\n")
    with pytest.raises(ManifestError, match=r"bad\.csv:1: expected a header"):
        read_manifest_csv(bad, tmp_path, ["speech", "music"])


def test_random_split_is_seeded_disjoint_and_sized():
    tr, va, te = random_split(1000, 0.2, 0.1, seed=3)
    assert (len(tr), len(va), len(te)) == (700, 200, 100)
    assert len(np.intersect1d(tr, va)) == len(np.intersect1d(tr, te)) == len(np.intersect1d(va, te)) == 0
    tr2, va2, _ = random_split(1000, 0.2, 0.1, seed=3)
    np.testing.assert_array_equal(va, va2)
    assert not np.array_equal(va, random_split(1000, 0.2, 0.1, seed=4)[1])
    with pytest.raises(ValueError):
        random_split(10, 0.6, 0.5)


def test_grouped_split_keeps_groups_whole():
    rng = np.random.default_rng(0)
    groups = rng.integers(0, 40, size=2000)
    tr, va, te = grouped_split(groups, 0.2, 0.2, seed=1)
    sets = [set(groups[i]) for i in (tr, va, te)]
    assert not (sets[0] & sets[1]) and not (sets[0] & sets[2]) and not (sets[1] & sets[2])
    assert len(tr) + len(va) + len(te) == 2000
    assert 0.15 < len(va) / 2000 < 0.3 and 0.15 < len(te) / 2000 < 0.3
    with pytest.raises(ValueError, match="too few"):
        grouped_split(np.zeros(10, dtype=int), 0.2)
