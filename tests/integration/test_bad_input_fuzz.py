"""Bad input never trains silently wrong: a seeded fuzz over the five miniature corpora.

For each corpus kind a copy of its miniature corpus gets bad audio files of every kind
(corrupt, empty, truncated, too short, too long, wrong rate, NaN, digital silence,
near-silence), each one named by the corpus's own metadata at a random place, and then:

- prepare (``data.validate=full``) stops with an error whose full list names every bad file;
- with ``data.skip_bad_files=true`` every bad file is counted in the summary, no clean file is,
  and ``setup`` uses exactly the clean files a corpus without the faults uses;
- ``+debug=fdr`` runs end to end and reports the counts in ``metrics.json``.

Bad metadata (malformed lines; duplicates, a file in two splits or with two labels, classes
seen only at test, lines naming missing files, folders that are not classes) is injected in
other copies: every injected case is named in the error (or in the list file it points at).
"""

from __future__ import annotations

import json
import random
import re
import shutil
from pathlib import Path

import hydra
import numpy as np
import pytest
import soundfile as sf

from audioexp.__main__ import run
from audioexp.data.validate import BadAudioError
from tests.conftest import compose_config

SR = 16000
BAD_KINDS = ("corrupt", "empty", "truncated", "short", "long", "rate", "nan", "silent", "quiet")
#: every corpus checked the same way here: decode all (NaN, silence), a low length cap, and
#: lower rates refused (ASVspoof refuses every other rate by default)
CHECKS = ["data.validate=full", "data.max_seconds=8.0", "data.resample=down"]
PER_KIND = 6  # bad files of each kind per corpus: 54 per corpus, 270 in all (and 33 bad lines below)

EXPERIMENTS = {
    "fm_broadcast": ("demo", []),
    "voxceleb1": ("voxceleb_softmax", ["model.backbone.width=0.25"]),
    "emodb": ("emodb_probe", ["embedder=egemaps", "probe=quick"]),
    "iemocap": ("iemocap_resnet_baseline", []),
    "asvspoof2017": ("asvspoof17_cqcc_gmm", []),
}


def write_bad(path: Path, kind: str, rng: np.random.Generator) -> None:
    """A bad audio file of ``kind`` at ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)

    def noise(seconds, sr=SR):
        return (0.1 * rng.standard_normal(int(seconds * sr))).astype(np.float32)

    if kind == "corrupt":
        path.write_bytes(b"RIFF" + rng.bytes(60))
    elif kind == "empty":
        sf.write(path, np.zeros(0, np.float32), SR)
    elif kind == "truncated":  # the header says 3 s, 1 s is left
        sf.write(path, noise(3.0), SR, subtype="PCM_16")
        path.write_bytes(path.read_bytes()[: 44 + 2 * SR])
    elif kind == "short":
        sf.write(path, noise(0.05), SR)
    elif kind == "long":
        sf.write(path, noise(9.0), SR)
    elif kind == "rate":
        sf.write(path, noise(2.0, 8000), 8000)
    elif kind == "nan":
        x = noise(2.0)
        x[rng.integers(len(x), size=10)] = np.nan
        sf.write(path, x, SR, subtype="FLOAT")
    elif kind == "silent":
        sf.write(path, np.zeros(2 * SR, np.float32), SR)
    elif kind == "quiet":  # RMS -80 dBFS
        sf.write(path, noise(2.0) * 1e-3, SR)
    else:
        raise ValueError(kind)


def insert_lines(path: Path, lines: list[str], rng: random.Random, blocks: bool = False) -> list[int]:
    """Insert ``lines`` at random places of a list file; return their line numbers (1-based).

    ``blocks``: only before lines starting with '[' or at the end (IEMOCAP's utterance blocks).
    """
    text = path.read_text().splitlines()
    for line in lines:
        spots = [i for i, t in enumerate(text) if t.startswith("[")] + [len(text)] if blocks else range(len(text) + 1)
        text.insert(rng.choice(list(spots)), line)
    path.write_text("\n".join(text) + "\n")
    return [i + 1 for i, t in enumerate(text) if t in set(lines)]


# --- bad audio named by each corpus's metadata -------------------------------------------------
def bad_kinds(rng: random.Random) -> list[str]:
    kinds = [k for k in BAD_KINDS for _ in range(PER_KIND)]
    rng.shuffle(kinds)
    return kinds


def inject_fm_broadcast(root: Path, rng: random.Random, nrng) -> list[Path]:
    recordings = sorted(p for p in root.glob("*/*") if p.is_dir())
    bad = []
    for i, kind in enumerate(bad_kinds(rng)):
        path = rng.choice(recordings) / f"bad{i:03d}_{kind}.wav"
        write_bad(path, kind, nrng)
        bad.append(path)
    return bad


def inject_voxceleb1(root: Path, rng: random.Random, nrng) -> list[Path]:
    split_file = root / "iden_split.txt"
    speakers = sorted({line.split()[1].split("/")[0] for line in split_file.read_text().splitlines() if line.strip()})
    bad, lines = [], []
    for i, kind in enumerate(bad_kinds(rng)):
        rel = f"{rng.choice(speakers)}/fuzz{i:03d}/00001.wav"
        write_bad(root / "wav" / rel, kind, nrng)
        bad.append(root / "wav" / rel)
        lines.append(f"{rng.choice('123')} {rel}")
    insert_lines(split_file, lines, rng)
    return bad


def inject_emodb(root: Path, rng: random.Random, nrng) -> list[Path]:
    names = sorted(p.name for p in (root / "wav").glob("*.wav"))
    bad = []
    for i, kind in enumerate(bad_kinds(rng)):
        stem = rng.choice(names)[:6]
        version = next(v for v in "bcdefghijklmnopqrstuvwxyz" if not (root / "wav" / f"{stem}{v}.wav").exists())
        path = root / "wav" / f"{stem}{version}.wav"
        write_bad(path, kind, nrng)
        bad.append(path)
    return bad


def inject_iemocap(root: Path, rng: random.Random, nrng) -> list[Path]:
    files = sorted(root.glob("Session*/dialog/EmoEvaluation/*_impro*.txt"))
    bad = []
    for i, kind in enumerate(bad_kinds(rng)):
        f = rng.choice(files)
        utt = f"{f.stem}_{rng.choice('FM')}9{i:02d}"
        path = root / f"Session{f.stem[4]}" / "sentences" / "wav" / f.stem / f"{utt}.wav"
        write_bad(path, kind, nrng)
        insert_lines(f, [f"[{100 + i}.0000 - {101 + i}.0000]\t{utt}\t{rng.choice(['neu', 'hap', 'ang', 'sad'])}\t"
                         "[2.5000, 2.5000, 2.5000]"], rng, blocks=True)
        bad.append(path)
    return bad


def inject_asvspoof2017(root: Path, rng: random.Random, nrng) -> list[Path]:
    bad = []
    lines: dict[str, list[str]] = {"train": [], "dev": [], "eval": []}
    for i, kind in enumerate(bad_kinds(rng)):
        split = rng.choice(["train", "dev", "eval"])
        name = f"{split[0].upper()}_19{i:05d}.wav"
        write_bad(root / f"ASVspoof2017_V2_{split}" / name, kind, nrng)
        bad.append(root / f"ASVspoof2017_V2_{split}" / name)
        lines[split].append(f"{name} genuine M0001 S01 - - -" if rng.random() < 0.5 else f"{name} spoof M0001 S01 E01 P01 R01")
    for split, suffix in (("train", "trn"), ("dev", "trl"), ("eval", "trl")):
        insert_lines(root / "protocol_V2" / f"ASVspoof2017_V2_{split}.{suffix}.txt", lines[split], rng)
    return bad


INJECT = {name: globals()[f"inject_{name}"] for name in EXPERIMENTS}


def used_files(dm) -> dict[str, set[str]]:
    """The files each split of a set-up corpus reads."""
    kind = type(dm).__name__
    if kind == "FMBroadcastDataModule":
        return {s: {dm.manifest.resolve(int(i)) for i in idx} for s, idx in dm.splits.items()}
    if kind == "VoxCeleb1DataModule":
        return {"train": set(dm.train_paths), **{s: set(e.paths) for s, e in dm.eval_sets.items()}}
    if kind == "EmoDBDataModule":
        return {"all": set(dm.files)}
    if kind == "IEMOCAPDataModule":
        return {s: set(v.paths) for s, v in dm.splits.items()}
    return {s: set(map(str, dm.utterances(s)[0])) for s in dm.splits_checked}


def make_corpus(name: str, root: Path, tmp_path: Path, extra: list[str] = ()):
    experiment, options = EXPERIMENTS[name]
    cfg = compose_config([f"+experiment={experiment}", *options, "logger=none", f"data.root={root}", *CHECKS, *extra],
                         tmp_path / "cfg")
    dm = hydra.utils.instantiate(cfg.data)
    if hasattr(dm, "splits_checked"):
        dm.prepare_data(("train", "dev", "eval"))
    else:
        dm.prepare_data()
    if hasattr(dm, "setup"):
        dm.setup()
    return dm


@pytest.mark.parametrize("name", list(EXPERIMENTS))
def test_bad_audio_is_named_or_counted_and_clean_files_are_the_same(name, corpora, tmp_path, imagenet_hub_cache):
    source = next(root for target, root in corpora.items() if f".{name}." in target)
    rng, nrng = random.Random(f"fuzz-{name}"), np.random.default_rng(sum(map(ord, name)))
    clean = tmp_path / "clean" / name
    shutil.copytree(source, clean, ignore=shutil.ignore_patterns(".audioexp"))
    baseline = used_files(make_corpus(name, clean, tmp_path / "a", ["data.skip_bad_files=true"]))

    faulty = tmp_path / "faulty" / name
    shutil.copytree(clean, faulty)
    bad = {str(p) for p in INJECT[name](faulty, rng, nrng)}
    assert len(bad) == len(BAD_KINDS) * PER_KIND

    # stopped at prepare, with every bad file in the list (the message shows the first ones)
    with pytest.raises(BadAudioError) as err:
        make_corpus(name, faulty, tmp_path / "b", ["data.skip_bad_files=false"])
    listed = re.search(r"all in (\S+\.bad\.txt)", str(err.value))
    text = Path(listed.group(1)).read_text() if listed else str(err.value)
    named = {line.split(": ", 1)[0] for line in text.splitlines()}
    assert named == bad, (sorted(bad - named)[:5], sorted(named - bad)[:5])

    # skipped: each counted once, by kind, and the same clean files used as without the faults
    dm = make_corpus(name, faulty, tmp_path / "c", ["data.skip_bad_files=true"])
    summary = dm.check_summary()["summary"]
    assert sum(v for k, v in summary.items() if k.endswith("skipped_files")) == len(bad)
    assert set(dm.check_summary()["bad"]) == bad
    faulty_used = {s: {p.replace(str(faulty), str(clean)) for p in files} for s, files in used_files(dm).items()}
    assert faulty_used == baseline

    # the whole path runs (one batch / a few files), and the run records the counts
    experiment, options = EXPERIMENTS[name]
    out = tmp_path / "run"
    cfg = compose_config([f"+experiment={experiment}", *options, "+debug=fdr", "logger=csv", f"data.root={faulty}",
                          *CHECKS, "data.skip_bad_files=true"], out)
    run(cfg)
    metrics = json.loads((out / "metrics.json").read_text())
    skipped = {k: v for k, v in metrics.items() if k.startswith("data/") and k.endswith("skipped_files")}
    assert sum(skipped.values()) == len(bad), skipped


# --- bad metadata --------------------------------------------------------------------------
def expect_error_naming(name: str, root: Path, tmp_path: Path, tokens: list[str], extra: list[str] = ()) -> None:
    with pytest.raises((ValueError, FileNotFoundError)) as err:
        make_corpus(name, root, tmp_path, extra)
    text = str(err.value)
    listed = re.search(r"all in (\S+\.txt)\)", text)
    if listed:
        text += Path(listed.group(1)).read_text()
    missing = [t for t in tokens if t not in text]
    assert not missing, f"not named: {missing}\n{text}"


def copy_of(name: str, corpora, tmp_path: Path, tag: str) -> Path:
    source = next(root for target, root in corpora.items() if f".{name}." in target)
    dest = tmp_path / tag / name
    shutil.copytree(source, dest, ignore=shutil.ignore_patterns(".audioexp"))
    return dest


def test_malformed_list_lines_are_all_named(corpora, tmp_path):
    rng = random.Random("fuzz-lines")
    # VoxCeleb1: split ids, columns, paths
    root = copy_of("voxceleb1", corpora, tmp_path, "vox")
    lines = insert_lines(root / "iden_split.txt", ["4 id10001/a/00001.wav", "garbage", "1 id10001/00001.wav",
                                                   "1 id10001/a/00001.flac x", "2"], rng)
    expect_error_naming("voxceleb1", root, tmp_path / "a", [f"iden_split.txt:{n}:" for n in lines])
    # IEMOCAP: times, labels, utterances of another dialog
    root = copy_of("iemocap", corpora, tmp_path, "iem")
    f = sorted(root.glob("Session1/dialog/EmoEvaluation/*_impro*.txt"))[0]
    lines = insert_lines(f, [f"[1.0 - x]\t{f.stem}_F901\tneu\t[2.5, 2.5, 2.5]",
                             f"[1.0000 - 2.0000]\t{f.stem}_F902\tzzz\t[2.5, 2.5, 2.5]",
                             "[1.0000 - 2.0000]\tSes02F_impro01_F903\tneu\t[2.5, 2.5, 2.5]",
                             f"[3.0000 - 2.0000]\t{f.stem}_F904\tneu\t[2.5, 2.5, 2.5]"], rng, blocks=True)
    expect_error_naming("iemocap", root, tmp_path / "b", [f"{f.name}:{n}:" for n in lines])
    # ASVspoof 2017: columns, names, keys, phrases, device fields
    root = copy_of("asvspoof2017", corpora, tmp_path, "asv")
    proto = root / "protocol_V2" / "ASVspoof2017_V2_dev.trl.txt"
    lines = insert_lines(proto, ["D_1900001.wav genuine", "D_19.wav genuine M0001 S01 - - -",
                                 "D_1900002.wav maybe M0001 S01 - - -", "D_1900003.wav genuine M0001 X01 - - -",
                                 "D_1900004.wav genuine M0001 S01 E01 P01 R01", "D_1900005.wav spoof M0001 S01 - - -"], rng)
    expect_error_naming("asvspoof2017", root, tmp_path / "c", [f"{proto.name}:{n}:" for n in lines])
    # EmoDB: names that do not parse
    root = copy_of("emodb", corpora, tmp_path, "emo")
    wav = sorted((root / "wav").glob("*.wav"))[0]
    names = ["03a01Fa_copy.wav", "3a01Fa.wav", "03a01Xa.wav", "03a01fa.wav"]
    for n in names:
        shutil.copy(wav, root / "wav" / n)
    expect_error_naming("emodb", root, tmp_path / "d", names)


def test_inconsistent_metadata_is_named_case_by_case(corpora, tmp_path):
    rng = random.Random("fuzz-meta")
    # VoxCeleb1: a line twice, a file in two parts, a speaker only in test, a missing file
    root = copy_of("voxceleb1", corpora, tmp_path, "vox")
    split_lines = [line for line in (root / "iden_split.txt").read_text().splitlines() if line.strip()]
    twice = rng.choice([line for line in split_lines if line.startswith("1 ")])
    moved = rng.choice([line for line in split_lines if line.startswith("1 ") and line != twice]).split()[1]
    only_test = "id19999/vid/00001.wav"
    (root / "wav" / "id19999" / "vid").mkdir(parents=True)
    shutil.copy(root / "wav" / moved, root / "wav" / only_test)
    insert_lines(root / "iden_split.txt", [twice, f"3 {moved}", f"3 {only_test}", "2 id10001/gone/00009.wav"], rng)
    gone = 1 + (root / "iden_split.txt").read_text().splitlines().index("2 id10001/gone/00009.wav")
    expect_error_naming("voxceleb1", root, tmp_path / "a", [
        f"{twice.split()[1]}' is listed 2 times in train", f"{moved}' is in more than one split", "'id19999'",
        f"gone/00009.wav does not exist (named at iden_split.txt:{gone})"])
    # IEMOCAP: an utterance listed twice, one with two labels, a line naming a missing file
    root = copy_of("iemocap", corpora, tmp_path, "iem")
    f = sorted(root.glob("Session2/dialog/EmoEvaluation/*_impro*.txt"))[0]
    utts = re.findall(r"^\[[^\]]+\]\t(\S+)\t(\S+)\t", f.read_text(), flags=re.M)
    (u1, l1), (u2, l2) = utts[0], utts[1]
    other = "sad" if l2 != "sad" else "ang"
    insert_lines(f, [f"[200.0000 - 201.0000]\t{u1}\t{l1}\t[2.5000, 2.5000, 2.5000]",
                     f"[202.0000 - 203.0000]\t{u2}\t{other}\t[2.5000, 2.5000, 2.5000]",
                     f"[204.0000 - 205.0000]\t{f.stem}_F977\tneu\t[2.5000, 2.5000, 2.5000]"], rng, blocks=True)
    expect_error_naming("iemocap", root, tmp_path / "b", [f"'{u1}' is listed more than once", f"'{u2}' is listed more than once",
                                                           f"{f.stem}_F977.wav does not exist"])
    # ASVspoof 2017: a line twice, a file with two keys; then a line naming a missing file
    root = copy_of("asvspoof2017", corpora, tmp_path, "asv")
    proto = root / "protocol_V2" / "ASVspoof2017_V2_train.trn.txt"
    entries = [line for line in proto.read_text().splitlines() if line.strip()]
    genuine = next(line for line in entries if " genuine " in line)
    flipped = next(line for line in entries if " genuine " in line and line != genuine).split()[0]
    insert_lines(proto, [genuine, f"{flipped} spoof M0001 S01 E01 P01 R01"], rng)
    expect_error_naming("asvspoof2017", root, tmp_path / "c", [f"'{genuine.split()[0]}' is listed more than once",
                                                                f"'{flipped}' is listed more than once"])
    proto.write_text("\n".join(entries) + "\n")
    lines = insert_lines(proto, ["T_1999999.wav genuine M0001 S01 - - -"], rng)
    expect_error_naming("asvspoof2017", root, tmp_path / "d", [f"{proto.name}:{lines[0]}: T_1999999.wav"])
    # FM broadcast: folders that are not classes (one only in case); a manifest with a line
    # twice and a clip under two labels
    root = copy_of("fm_broadcast", corpora, tmp_path, "fm")
    clip = sorted(root.glob("speech/*/*.wav"))[0]
    for folder in ("Speech/r1", "noise"):
        (root / folder).mkdir(parents=True)
        shutil.copy(clip, root / folder / "x.wav")
    expect_error_naming("fm_broadcast", root, tmp_path / "e", [f"{root}/Speech/", "only in case", f"{root}/noise/"])
    shutil.rmtree(root / "Speech")
    shutil.rmtree(root / "noise")
    rows = [f"{p.relative_to(root)},{p.parts[-3]}" for p in sorted(root.glob("*/*/*.wav"))]
    rows += [rows[3], rows[5].replace(",speech", ",music").replace(",music", ",speech") if ",music" in rows[5]
             else rows[5].replace(",speech", ",music")]
    (root / "manifest.csv").write_text("path,label\n" + "\n".join(rows) + "\n")
    n = len(rows)
    expect_error_naming("fm_broadcast", root, tmp_path / "f", [f"manifest.csv:{n}", f"manifest.csv:{n + 1}", "more than one label"],
                        [f"data.manifest={root / 'manifest.csv'}"])
