"""ASVspoof 2017 protocol parsing (every real version 1.0 line) and the corpus layout."""

from __future__ import annotations

from collections import Counter

import pytest

from audioexp.data.asvspoof2017 import ASVspoof2017, ProtocolFileError, read_protocol
from audioexp.data.manifest import CorpusNotFoundError
from tests.conftest import SHARED_DATA

V1 = SHARED_DATA / "asvspoof2017-protocols-v1"
needs_v1 = pytest.mark.skipif(not V1.is_dir(), reason=f"real ASVspoof 2017 v1 protocol lists not at {V1}")


@needs_v1
def test_every_real_v1_protocol_line_parses():
    train = read_protocol(V1 / "ASVspoof2017_train.trn")
    dev = read_protocol(V1 / "ASVspoof2017_dev.trl")
    evl = read_protocol(V1 / "ASVspoof2017_eval.trl")
    assert (len(train), len(dev), len(evl)) == (3016, 1710, 14220)
    assert len(train) + len(dev) + len(evl) == 18946
    assert Counter(e.key for e in train) == {"genuine": 1508, "spoof": 1508}
    assert Counter(e.key for e in dev) == {"genuine": 760, "spoof": 950}
    assert all(e.key is None and e.phrase.startswith("S") for e in evl)
    spoof = [e for e in train if e.key == "spoof"]
    assert all(e.environment and e.playback and e.recorder for e in spoof)
    assert train[0].file == "T_1000001.wav" and train[0].label == 1 and train[0].environment is None
    with pytest.raises(ValueError, match="no key"):
        evl[0].label


@pytest.mark.parametrize(
    "line,message",
    [
        ("T_1000001.wav genuine M0002 S05 - -\n", "found 6"),
        ("T_1000001.wav bonafide M0002 S05 - - -\n", "key must be"),
        ("x.wav genuine M0002 S05 - - -\n", "file name"),
        ("T_1000001.wav genuine M0002 P05 - - -\n", "phrase"),
        ("T_1000001.wav genuine M0002 S05 E01 P01 R01\n", "genuine line"),
        ("T_1000001.wav spoof M0002 S05 E01 - R01\n", "spoof line"),
        ("E_1000001.wav 05\n", "phrase"),
    ],
)
def test_malformed_lines_name_file_and_line(tmp_path, line, message):
    path = tmp_path / "list.txt"
    path.write_text("T_1000009.wav genuine M0002 S05 - - -\n\n" + line)
    with pytest.raises(ProtocolFileError, match=message) as err:
        read_protocol(path)
    assert f"{path}:3:" in str(err.value)


def test_empty_list_and_missing_root(tmp_path):
    (tmp_path / "empty.txt").write_text("\n")
    with pytest.raises(ProtocolFileError, match="no entries"):
        read_protocol(tmp_path / "empty.txt")
    with pytest.raises(CorpusNotFoundError, match="ASVspoof2017_V2_train"):
        ASVspoof2017(tmp_path / "nowhere").prepare_data()
    corpus = ASVspoof2017(tmp_path)
    with pytest.raises(CorpusNotFoundError, match="protocol_V2"):
        corpus.entries("train")
    with pytest.raises(ValueError, match="version"):
        ASVspoof2017(tmp_path, version=3)


def test_v2_layout_and_missing_audio(tmp_path):
    (tmp_path / "protocol_V2").mkdir()
    (tmp_path / "ASVspoof2017_V2_dev").mkdir()
    (tmp_path / "protocol_V2" / "ASVspoof2017_V2_dev.trl.txt").write_text(
        "D_1000001.wav genuine M0011 S06 - - -\nD_1000002.wav spoof M0011 S06 E05 P08 R08\n"
    )
    (tmp_path / "ASVspoof2017_V2_dev" / "D_1000001.wav").write_bytes(b"")
    corpus = ASVspoof2017(tmp_path)
    with pytest.raises(CorpusNotFoundError, match="D_1000002.wav"):
        corpus.entries("dev")
    (tmp_path / "ASVspoof2017_V2_dev" / "D_1000002.wav").write_bytes(b"")
    paths, labels = corpus.utterances("dev")
    assert [p.name for p in paths] == ["D_1000001.wav", "D_1000002.wav"] and labels.tolist() == [1, 0]
