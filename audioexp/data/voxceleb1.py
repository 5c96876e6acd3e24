"""VoxCeleb1 (Nagrani, Chung & Zisserman, Interspeech 2017).

What: 153,516 utterances (4-20 s, 16 kHz) of 1,251 celebrities cut from YouTube videos.
Licence: CC BY 4.0 (audio URLs and metadata; https://www.robots.ox.ac.uk/~vgg/data/voxceleb/).
Protocols (both chosen with ``protocol=``):

- ``identification``: 1,251-way classification. ``iden_split.txt`` (``1|2|3 path``) puts
  one video of each speaker in test (3), one in validation (2) and the rest in training (1).
  Train on 1, select checkpoints on 2, report on 3.
- ``verification``: the 40 speakers whose names start with 'E' (ids id10270-id10309) are
  the test set. Train on every file of the other 1,211 speakers (whatever their
  identification split), select checkpoints on trials drawn from held-out files of those
  training speakers (never on the test list), report EER and minDCF on the trial list
  ``veri_test.txt`` (``1|0 path_a path_b``; the cleaned ``veri_test2.txt`` is accepted).

On-disk layout read here::

    ROOT/wav/<speaker id>/<video id>/<utterance>.wav
    ROOT/iden_split.txt or ROOT/meta/iden_split.txt      (identification)
    ROOT/veri_test.txt  or ROOT/veri_test2.txt           (verification; or trial_list=PATH)
    ROOT/vox1_meta.csv                                   (optional, tab-separated)

Counts are read from the files, never assumed: the current release (153,516 utterances;
identification 138,361 / 6,904 / 8,251; 37,720 trials, 37,611 cleaned) differs from the
paper's Table 2.
"""

from __future__ import annotations

import csv
import logging
import os
from dataclasses import dataclass
from collections.abc import Callable
from pathlib import Path

import numpy as np
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from audioexp.data.datamodule import CorpusDataModule, default_cache_dir
from audioexp.data.datasets import UtteranceDataset, collate_skipping_bad
from audioexp.data.manifest import CorpusNotFoundError, scan_audio_files
from audioexp.data.protocols import ProtocolFileError, read_list_file, repeated

log = logging.getLogger(__name__)

TEST_SPEAKER_IDS = range(10270, 10310)  # id10270-id10309: names starting with 'E'
PROTOCOLS = ("identification", "verification")

EXPECTED_LAYOUT = """\
expected the VoxCeleb1 layout:
  {root}/wav/<speaker id>/<video id>/<utterance>.wav
  {root}/iden_split.txt (or meta/iden_split.txt)   lines '1|2|3 id10001/1zcIwhmdeo4/00001.wav'
  {root}/veri_test.txt (or veri_test2.txt)         lines '1|0 id10270/x6uYqmx31kE/00001.wav id10270/...'
To try the recipes without the corpus, write a miniature one:
  python -m audioexp.minicorpus voxceleb1 {root}"""


def speaker_of(path: str) -> str:
    """``id10001/1zcIwhmdeo4/00001.wav`` -> ``id10001``."""
    return path.split("/", 1)[0]


def video_of(path: str) -> str:
    return path.split("/")[1] if path.count("/") >= 2 else ""


def is_test_speaker(speaker: str) -> bool:
    """The verification test set: ids id10270-id10309."""
    digits = speaker[2:] if speaker.startswith("id") else ""
    return digits.isdigit() and int(digits) in TEST_SPEAKER_IDS


def _check_path(path: str) -> str:
    if path.count("/") != 2 or not path.lower().endswith(".wav"):
        raise ValueError(f"expected a path '<speaker>/<video>/<utterance>.wav', got {path!r}")
    return path


def _parse_split_line(line: str) -> tuple[int, str]:
    fields = line.split()
    if len(fields) != 2 or fields[0] not in ("1", "2", "3"):
        raise ValueError("expected '1|2|3 <speaker>/<video>/<utt>.wav'")
    return int(fields[0]), _check_path(fields[1])


def _parse_trial_line(line: str) -> tuple[int, str, str]:
    fields = line.split()
    if len(fields) != 3 or fields[0] not in ("0", "1"):
        raise ValueError("expected '1|0 <path_a> <path_b>'")
    return int(fields[0]), _check_path(fields[1]), _check_path(fields[2])


def read_iden_split(path: str | os.PathLike) -> list[tuple[int, str]]:
    """Parse ``iden_split.txt``: ``(split, relative path)`` per line, split in {1, 2, 3}."""
    return read_list_file(path, _parse_split_line)


def read_trial_list(path: str | os.PathLike) -> list[tuple[int, str, str]]:
    """Parse ``veri_test.txt``: ``(label, path_a, path_b)`` per line, label 1 = same speaker."""
    return read_list_file(path, _parse_trial_line, empty="no trials")


def read_meta(path: str | os.PathLike) -> dict[str, dict[str, str]]:
    """Parse ``vox1_meta.csv`` (tab-separated: VoxCeleb1 ID, VGGFace1 ID, Gender, Nationality, Set)."""
    with open(path, encoding="utf-8", newline="") as handle:
        reader = csv.DictReader(handle, delimiter="\t")
        rows = {}
        for lineno, row in enumerate(reader, start=2):
            key = (row.get("VoxCeleb1 ID") or "").strip()
            if not key:
                raise ProtocolFileError(f"{path}:{lineno}: no 'VoxCeleb1 ID' (is the file tab-separated?)")
            rows[key] = {k.strip(): (v or "").strip() for k, v in row.items() if k}
    return rows


def _first_existing(*candidates: Path) -> Path | None:
    return next((c for c in candidates if c.exists()), None)


def draw_trials(speakers: np.ndarray, num_trials: int, seed: int) -> np.ndarray:
    """Balanced verification trials among items with the given speaker labels.

    Returns
    -------
    ndarray of int64, shape (n, 3)
        ``(label, index_a, index_b)`` rows, ``label`` 1 for a same-speaker pair; half the
        trials are targets (fewer if the items allow fewer), every pair has two different items.
    """
    rng = np.random.default_rng(seed)
    speakers = np.asarray(speakers)
    by_speaker = {s: np.flatnonzero(speakers == s) for s in np.unique(speakers)}
    with_pairs = [s for s, idx in by_speaker.items() if len(idx) >= 2]
    if not with_pairs or len(by_speaker) < 2:
        raise ValueError("need at least two speakers, one of them with two or more items, to draw trials")
    trials = []
    for i in range(num_trials):
        if i % 2 == 0:
            s = with_pairs[rng.integers(len(with_pairs))]
            a, b = rng.choice(by_speaker[s], size=2, replace=False)
            trials.append((1, a, b))
        else:
            a = rng.integers(len(speakers))
            b = rng.integers(len(speakers))
            while speakers[b] == speakers[a]:
                b = rng.integers(len(speakers))
            trials.append((0, a, b))
    return np.asarray(trials, dtype=np.int64)


@dataclass
class EvalSet:
    """Files of one evaluation split; for verification also its trials (indices into ``paths``)."""

    paths: list[str]
    labels: np.ndarray
    trials: np.ndarray | None = None  # (n, 3): label, index_a, index_b


class VoxCeleb1DataModule(CorpusDataModule):
    """VoxCeleb1 for speaker identification or verification (see the module docstring).

    Parameters
    ----------
    root : path
        Corpus root (``wav/`` below it).
    protocol : {"identification", "verification"}
    iden_split, trial_list, meta : path, optional
        Default to the files under ``root`` (``trial_list``: ``veri_test.txt``, else
        ``veri_test2.txt``).
    crop_seconds : float
        Training crop length (the paper: random 3-s crops).
    noise_prob, snr_db_min, snr_db_max : float
        Random noise injection on training crops (the paper gives no type or SNR: white
        Gaussian noise at a uniform SNR, ours).
    max_eval_seconds : float, optional
        Cap on evaluation utterance length (default: whole utterances).
    max_seconds, resample, silence_db, validate, skip_bad_files
        What prepare checks and what a bad file does (:class:`audioexp.data.validate.AudioChecks`;
        the data config documents each).
    val_utterances_per_speaker, num_val_trials : int
        Verification: files held out per training speaker and trials drawn among them.
    batch_size, eval_batch_size : int
    """

    def __init__(
        self,
        root: str,
        protocol: str = "identification",
        iden_split: str | None = None,
        trial_list: str | None = None,
        meta: str | None = None,
        cache_dir: str | None = None,
        sample_rate: int = 16000,
        crop_seconds: float = 3.0, min_seconds: float = 0.5, max_eval_seconds: float | None = None,
        max_seconds: float | None = None, resample: str = "any", silence_db: float | None = -60.0,
        validate: str = "header",
        noise_prob: float = 0.5, snr_db_min: float = 5.0, snr_db_max: float = 30.0,
        val_utterances_per_speaker: int = 2, num_val_trials: int = 2000, split_seed: int = 0,
        batch_size: int = 64, eval_batch_size: int = 16, num_workers: int = 4,
        skip_bad_files: bool = False,
        shuffle_labels: bool = False,
        prepare: Callable[[Path], object] | None = None,
        num_classes: int | None = None,
        class_names: list[str] | None = None,
    ) -> None:
        super().__init__()
        if protocol not in PROTOCOLS:
            raise ValueError(f"protocol must be one of {PROTOCOLS}, got {protocol!r}")
        self.root = Path(root)
        self.protocol = protocol
        self.iden_split_file = Path(iden_split) if iden_split else None
        self.trial_list_file = Path(trial_list) if trial_list else None
        self.meta_file = Path(meta) if meta else None
        self.cache_dir = default_cache_dir(self.root, cache_dir)
        self.sample_rate = sample_rate
        self.crop_samples = int(round(crop_seconds * sample_rate))
        self.min_seconds = min_seconds
        self.max_eval_samples = int(round(max_eval_seconds * sample_rate)) if max_eval_seconds else None
        self.noise_prob, self.snr_db_min, self.snr_db_max = noise_prob, snr_db_min, snr_db_max
        self.val_utterances_per_speaker = val_utterances_per_speaker
        self.num_val_trials = num_val_trials
        self.split_seed = split_seed
        self.batch_size, self.eval_batch_size = batch_size, eval_batch_size
        self.num_workers = num_workers
        self.configure_checks(sample_rate, min_seconds, max_seconds, resample, silence_db, validate, skip_bad_files)
        self.shuffle_labels = shuffle_labels
        self.prepare = prepare
        self.expected_num_classes = num_classes
        self.expected_class_names = list(class_names) if class_names else None
        self.class_names: list[str] = []
        self.train_paths: list[str] = []
        self.train_labels = np.zeros(0, dtype=np.int64)
        self.eval_sets: dict[str, EvalSet] = {}
        self.meta: dict[str, dict[str, str]] = {}

    # --- files -------------------------------------------------------------------------
    def _iden_split_path(self) -> Path:
        path = self.iden_split_file or _first_existing(self.root / "iden_split.txt", self.root / "meta" / "iden_split.txt")
        if path is None or not path.exists():
            raise CorpusNotFoundError(
                f"no identification split file for {self.root} (give data.iden_split=PATH); " + EXPECTED_LAYOUT.format(root=self.root)
            )
        return path

    def _trial_list_path(self) -> Path:
        path = self.trial_list_file or _first_existing(
            self.root / "veri_test.txt", self.root / "veri_test2.txt", self.root / "meta" / "veri_test.txt", self.root / "meta" / "veri_test2.txt"
        )
        if path is None or not path.exists():
            raise CorpusNotFoundError(
                f"no verification trial list for {self.root} (give data.trial_list=PATH); " + EXPECTED_LAYOUT.format(root=self.root)
            )
        return path

    @property
    def num_classes(self) -> int:
        if not self.class_names:
            self.setup()
        return len(self.class_names)

    @property
    def trials(self) -> dict[str, np.ndarray]:
        return {k: v.trials for k, v in self.eval_sets.items() if v.trials is not None}

    corpus_name = "VoxCeleb1"
    expected_layout = EXPECTED_LAYOUT
    #: subset: train, val, test (identification: iden_split 1, 2, 3; verification: the
    #: trial list's files are test, other files of its speakers and of id10270-id10309 are
    #: excluded, the rest train)
    table_columns = ("path", "speaker", "video", "subset", "line")

    def table_key(self) -> tuple[str, str]:
        return self.protocol, str(self._protocol_path().resolve())

    def _protocol_path(self) -> Path:
        return self._iden_split_path() if self.protocol == "identification" else self._trial_list_path()

    def table_sources(self) -> list[Path]:
        return [self._protocol_path(), *([self.root / "wav"] if self.protocol == "verification" else [])]

    def table_rows(self):
        return self._identification_rows() if self.protocol == "identification" else self._verification_rows()

    def _identification_rows(self) -> list[tuple[str, str, str, str]]:
        path = self._iden_split_path()
        entries = read_list_file(path, _parse_split_line, numbered=True)
        for split, name in ((1, "train"), (2, "validation"), (3, "test")):
            if not any(s == split for _, (s, _) in entries):
                raise ProtocolFileError(f"{path}: no {name} entries (split {split})")
        subset = {1: "train", 2: "val", 3: "test"}
        return [(p, speaker_of(p), video_of(p), subset[s], f"{path.name}:{n}") for n, (s, p) in entries]

    def _verification_rows(self):
        wav_dir = self.root / "wav"
        if not wav_dir.is_dir():
            raise CorpusNotFoundError(f"VoxCeleb1 root {self.root} has no wav/ folder; " + EXPECTED_LAYOUT.format(root=self.root))
        test_files = {p for _, a, b in read_trial_list(self._trial_list_path()) for p in (a, b)}
        test_speakers = {speaker_of(p) for p in test_files}
        n = 0
        for rel in tqdm(scan_audio_files(wav_dir, (".wav",)), desc="scanning VoxCeleb1", unit=" files", mininterval=1.0):
            speaker = speaker_of(rel)
            subset = "test" if rel in test_files else "excluded" if is_test_speaker(speaker) or speaker in test_speakers else "train"
            n += 1
            yield rel, speaker, video_of(rel), subset, ""
        if n == 0:
            raise CorpusNotFoundError(f"VoxCeleb1 root {self.root} has no .wav files under wav/; " + EXPECTED_LAYOUT.format(root=self.root))

    # --- checks at prepare ------------------------------------------------------------------
    def split_files(self) -> dict[str, list[tuple[str, str | None, str]]]:
        """Identification: the three parts of ``iden_split.txt`` (labels: speakers). Verification:
        every training file (labels: speakers; validation files are drawn from them in
        ``setup``) and the trial list's files (no class: test speakers are never trained)."""
        wav = self.root / "wav"
        files: dict[str, list] = {}
        for row in self.read_table():
            if row["subset"] == "excluded":
                continue
            label = None if self.protocol == "verification" and row["subset"] == "test" else row["speaker"]
            files.setdefault(row["subset"], []).append((str(wav / row["path"]), label, row["line"]))
        return files

    def metadata_problems(self, split_files) -> list[str]:
        problems = super().metadata_problems(split_files)
        if self.protocol == "verification":
            path = self._trial_list_path()
            trials = read_list_file(path, _parse_trial_line, numbered=True)
            # the same ordered pair twice (a reversed pair is left alone: it may be deliberate)
            problems += repeated(((a, b), f"{path.name}:{n}") for n, (_, a, b) in trials)
        return problems

    # --- splits ------------------------------------------------------------------------
    def _setup_identification(self) -> None:
        bad = self._bad_relative()
        rows = [row for row in self.read_table() if row["path"] not in bad]
        speakers = sorted({row["speaker"] for row in rows})
        index = {s: i for i, s in enumerate(speakers)}
        by_split: dict[str, list[str]] = {"train": [], "val": [], "test": []}
        for row in rows:
            by_split[row["subset"]].append(row["path"])
        self.class_names = speakers
        self.train_paths = by_split["train"]
        self.train_labels = np.array([index[speaker_of(p)] for p in by_split["train"]], dtype=np.int64)
        for name in ("val", "test"):
            paths = by_split[name]
            self.eval_sets[name] = EvalSet(paths, np.array([index[speaker_of(p)] for p in paths], dtype=np.int64))
        log.info(
            "VoxCeleb1 identification: %d speakers; utterances train %d, val %d, test %d",
            len(speakers), len(by_split["train"]), len(by_split["val"]), len(by_split["test"]),
        )

    def _setup_verification(self) -> None:
        trial_path = self._trial_list_path()
        trials = read_trial_list(trial_path)
        test_files = sorted({p for _, a, b in trials for p in (a, b)})
        test_speakers = {speaker_of(p) for p in test_files}
        outside = sorted(s for s in test_speakers if not is_test_speaker(s))
        if outside:
            log.warning("%d speakers of %s lie outside id10270-id10309 (e.g. %s)", len(outside), trial_path, outside[:3])
        bad = self._bad_relative()
        if bad:
            kept = [t for t in trials if t[1] not in bad and t[2] not in bad]
            log.warning("VoxCeleb1 verification: %d of %d trials name a bad file and are left out "
                        "(data.skip_bad_files=true)", len(trials) - len(kept), len(trials))
            trials = kept
            test_files = sorted({p for _, a, b in trials for p in (a, b)})
            test_speakers = {speaker_of(p) for p in test_files}
        train_files = [row["path"] for row in self.read_table() if row["subset"] == "train" and row["path"] not in bad]
        if not train_files:
            raise CorpusNotFoundError(f"{self.root}/wav has no files of speakers outside the verification test set")
        speakers = sorted({speaker_of(p) for p in train_files})
        index = {s: i for i, s in enumerate(speakers)}
        labels = np.array([index[speaker_of(p)] for p in train_files], dtype=np.int64)
        # hold out a few files per training speaker for checkpoint selection (never the test list)
        rng = np.random.default_rng(self.split_seed)
        held = np.zeros(len(train_files), dtype=bool)
        for s in range(len(speakers)):
            idx = np.flatnonzero(labels == s)
            k = min(self.val_utterances_per_speaker, len(idx) - 1)
            if k > 0:
                held[rng.choice(idx, size=k, replace=False)] = True
        val_paths = [p for p, h in zip(train_files, held) if h]
        val_labels = labels[held]
        self.class_names = speakers
        self.train_paths = [p for p, h in zip(train_files, held) if not h]
        self.train_labels = labels[~held]
        self.eval_sets["val"] = EvalSet(val_paths, val_labels, draw_trials(val_labels, self.num_val_trials, self.split_seed))
        position = {p: i for i, p in enumerate(test_files)}
        test_trials = np.array([(label, position[a], position[b]) for label, a, b in trials], dtype=np.int64)
        test_labels = np.array([-1] * len(test_files), dtype=np.int64)  # not a class of the training speakers
        self.eval_sets["test"] = EvalSet(test_files, test_labels, test_trials)
        log.info(
            "VoxCeleb1 verification: %d training speakers (%d files, %d held out for %d validation trials); "
            "test: %d trials over %d files of %d speakers (%s)",
            len(speakers), len(self.train_paths), len(val_paths), len(self.eval_sets["val"].trials),
            len(trials), len(test_files), len(test_speakers), trial_path.name,
        )

    def _bad_relative(self) -> set[str]:
        """The bad files (``skip_bad_files``), relative to ``wav/`` like the lists."""
        wav = str(self.root / "wav") + os.sep
        return {p[len(wav):].replace(os.sep, "/") for p in self.bad_files() if p.startswith(wav)}

    def setup(self, stage: str | None = None) -> None:
        if self.class_names:
            return
        if self.protocol == "identification":
            self._setup_identification()
        else:
            self._setup_verification()
        meta_path = self.meta_file or _first_existing(self.root / "vox1_meta.csv", self.root / "meta" / "vox1_meta.csv")
        if meta_path is not None and meta_path.exists():
            self.meta = read_meta(meta_path)
        if self.expected_num_classes is not None and self.expected_num_classes != len(self.class_names):
            log.warning(
                "data.num_classes=%d but the %s protocol of %s has %d speakers; using %d",
                self.expected_num_classes, self.protocol, self.root, len(self.class_names), len(self.class_names),
            )
        if self.expected_class_names is not None and self.expected_class_names != self.class_names:
            raise ValueError(
                f"the {self.protocol} speakers of {self.root} differ from data.class_names "
                "(a saved run evaluated on another corpus?)"
            )
        if self.shuffle_labels:
            self.train_labels = np.random.default_rng(self.split_seed + 1).permutation(self.train_labels)

    # --- loaders -----------------------------------------------------------------------
    def _dataset(self, split: str) -> UtteranceDataset:
        self.setup()
        common = dict(root=self.root / "wav", sample_rate=self.sample_rate, min_seconds=self.min_seconds,
                      skip_bad_files=self.skip_bad_files, checks=self.checks)
        if split == "train":
            return UtteranceDataset(
                paths=self.train_paths, labels=self.train_labels, crop_samples=self.crop_samples,
                noise_prob=self.noise_prob, snr_db_min=self.snr_db_min, snr_db_max=self.snr_db_max, **common,
            )
        ev = self.eval_sets[split]
        return UtteranceDataset(paths=ev.paths, labels=ev.labels, max_samples=self.max_eval_samples, **common)

    def _loader(self, split: str) -> DataLoader:
        dataset = self._dataset(split)
        common = dict(num_workers=self.num_workers, collate_fn=collate_skipping_bad, persistent_workers=self.num_workers > 0)
        if split == "train":
            return self.training_loader(dataset, self.batch_size, drop_last=len(dataset) > self.batch_size, **common)
        return self.evaluation_loader(dataset, self.eval_batch_size, **common)

