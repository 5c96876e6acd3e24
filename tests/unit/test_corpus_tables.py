"""Every corpus writes its table in prepare_data and setup reads it: protocol files are parsed
once, a changed source rebuilds the table, a truncated table is refused."""

import shutil
import time

import pytest

import audioexp.data.asvspoof2017 as asvspoof_module
import audioexp.data.emodb as emodb_module
import audioexp.data.iemocap as iemocap_module
import audioexp.data.voxceleb1 as voxceleb_module
from audioexp.data.asvspoof2017 import ASVspoof2017
from audioexp.data.emodb import EmoDBDataModule
from audioexp.data.iemocap import IEMOCAPDataModule
from audioexp.data.manifest import CorpusNotFoundError, ManifestError, corpus_table, read_corpus_table
from audioexp.data.voxceleb1 import VoxCeleb1DataModule


def test_corpus_table_round_trip_rebuild_and_truncation(tmp_path):
    source = tmp_path / "protocol.txt"
    source.write_text("a 1\nb 2\n")
    calls = []

    def build():
        calls.append(1)
        return [line.split() + [None] for line in source.read_text().splitlines()]

    table = tmp_path / "cache" / "t.csv"
    cols = ("name", "value", "extra")
    assert corpus_table(table, cols, build, [source]) == table
    assert read_corpus_table(table, cols) == [{"name": "a", "value": "1", "extra": ""},
                                              {"name": "b", "value": "2", "extra": ""}]
    corpus_table(table, cols, build, [source])
    assert len(calls) == 1  # fresh: reused
    time.sleep(0.01)
    source.write_text("a 1\nb 2\nc 3\n")
    corpus_table(table, cols, build, [source])
    assert len(calls) == 2 and len(read_corpus_table(table, cols)) == 3
    corpus_table(table, ("name", "value", "other"), lambda: [("a", "1", "x")], [source])  # other columns: rebuilt
    assert read_corpus_table(table, ("name", "value", "other")) == [{"name": "a", "value": "1", "other": "x"}]
    with pytest.raises(ManifestError, match=r"t\.csv:1: expected the header name,value,extra"):
        read_corpus_table(table, cols)
    table.write_text("name,value,other\n")  # cut at a row boundary: the stamp says 1 row
    with pytest.raises(ManifestError, match=r"0 rows but 1 were written"):
        read_corpus_table(table, ("name", "value", "other"))


def test_a_missing_root_makes_no_folder(tmp_path):
    root = tmp_path / "nowhere"
    dm = EmoDBDataModule(str(root), check_counts=False)
    with pytest.raises(CorpusNotFoundError, match="expected the EmoDB layout"):
        dm.setup()
    assert not root.exists()


def _forbid(monkeypatch, module, name):
    def fail(*args, **kwargs):
        raise AssertionError(f"{name} was called again after prepare_data")
    monkeypatch.setattr(module, name, fail)


@pytest.mark.parametrize("corpus", ["emodb", "iemocap", "voxceleb_identification", "voxceleb_verification", "asvspoof"])
def test_setup_reads_the_table_prepare_wrote(corpus, request, tmp_path, monkeypatch):
    """After prepare_data, setup parses no protocol file and lists no folder: it reads the table,
    and gets what parsing the corpus directly gives."""
    if corpus == "emodb":
        root = request.getfixturevalue("emodb_corpus")
        make = lambda: EmoDBDataModule(str(root), check_counts=False, cache_dir=str(tmp_path))  # noqa: E731
        parse = [(emodb_module, "list_emodb")]
        result = lambda dm: [(u.name, u.speaker, u.emotion) for u in dm.utterances]  # noqa: E731
    elif corpus == "iemocap":
        root = request.getfixturevalue("iemocap_corpus")
        make = lambda: IEMOCAPDataModule(str(root), check_counts=False, cache_dir=str(tmp_path), num_workers=0)  # noqa: E731
        parse = [(iemocap_module, "read_iemocap")]
        result = lambda dm: {k: (v.paths, v.labels.tolist(), v.speakers.tolist()) for k, v in dm.splits.items()}  # noqa: E731
    elif corpus.startswith("voxceleb"):
        root = request.getfixturevalue("voxceleb_corpus")
        protocol = corpus.split("_")[1]
        make = lambda: VoxCeleb1DataModule(str(root), protocol=protocol, cache_dir=str(tmp_path), num_workers=0)  # noqa: E731
        parse = [(voxceleb_module, "read_iden_split"), (voxceleb_module, "scan_audio_files")]
        result = lambda dm: (dm.class_names, dm.train_paths, dm.train_labels.tolist(),  # noqa: E731
                             {k: (v.paths, v.labels.tolist()) for k, v in dm.eval_sets.items()})
    else:
        root = request.getfixturevalue("asvspoof_corpus")
        make = lambda: ASVspoof2017(str(root), cache_dir=str(tmp_path))  # noqa: E731
        parse = [(asvspoof_module, "read_protocol")]
        result = lambda dm: [dm.entries(s) for s in ("train", "dev", "eval")]  # noqa: E731

    direct = make()
    direct.prepare_data()
    if hasattr(direct, "setup"):
        direct.setup()
    expected = result(direct)
    assert any(p.suffix == ".csv" for p in tmp_path.iterdir())
    with monkeypatch.context() as m:
        for module, name in parse:
            _forbid(m, module, name)
        again = make()
        if hasattr(again, "setup"):
            again.setup()
        assert result(again) == expected


def test_a_protocol_error_is_found_at_prepare(asvspoof_corpus, tmp_path):
    root = tmp_path / "asv"
    shutil.copytree(asvspoof_corpus, root)
    protocol = root / "protocol_V2" / "ASVspoof2017_V2_dev.trl.txt"
    lines = protocol.read_text().splitlines()
    lines[2] = lines[2].replace("genuine", "genuin", 1).replace("spoof", "spooof", 1)
    protocol.write_text("\n".join(lines) + "\n")
    with pytest.raises(asvspoof_module.ProtocolFileError, match=r"ASVspoof2017_V2_dev\.trl\.txt:3: key must be"):
        ASVspoof2017(str(root), cache_dir=str(tmp_path / "cache")).prepare_data()
