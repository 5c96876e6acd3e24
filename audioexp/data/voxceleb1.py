"""VoxCeleb1 (Nagrani, Chung & Zisserman, Interspeech 2017).

What: 153,516 utterances (4-20 s, 16 kHz) of 1,251 celebrities cut from YouTube videos.
Licence: CC BY 4.0 (audio URLs and metadata; https://www.robots.ox.ac.uk/~vgg/data/voxceleb/).
Protocols (both chosen with ``protocol=``):

- ``identification``: 1,251-way classification. ``iden_split.txt`` (``1|2|3 path``) puts
  one video of each speaker in test (3), one in validation (2) and the rest in training (1);
  report on 3. By default the training splits are 1 and 2 (``iden_train_splits``), the
  development set of Yadav & Rai's and Nagrani et al.'s Table 2 (17.0 videos per speaker),
  and checkpoints are selected on whole videos held out of it (``iden_val_by="video"``:
  about ``iden_val_fraction`` of each speaker's videos, drawn per speaker from
  ``split_seed`` and the speaker id; :func:`held_out_for_validation`), so that validation,
  like the test, is judged on recording sessions never trained on. The official
  train 1 / validate 2 is ``iden_train_splits=[1], iden_val_by="split"``.
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
import hashlib
import logging
import os
from dataclasses import dataclass
from collections.abc import Callable, Mapping, Sequence
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
#: How the identification validation set is chosen (``iden_val_by``).
IDEN_VAL_BY = ("video", "utterance", "split")
#: ``iden_split.txt``'s numbers and the names the corpus table keeps them under.
IDEN_SPLIT_NAMES = {1: "train", 2: "val", 3: "test"}

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


def _unit_of(path: str, by: str) -> str:
    """What is held out whole: ``speaker/video`` (``by="video"``) or the utterance's path."""
    return path.rsplit("/", 1)[0] if by == "video" else path


def _speaker_rng(seed: int, speaker: str) -> np.random.Generator:
    """A generator of one speaker's draw: the same whatever else the list holds."""
    digest = hashlib.sha256(speaker.encode("utf-8")).digest()
    return np.random.default_rng([int(seed), int.from_bytes(digest[:8], "little")])


def held_out_for_validation(paths: Sequence[str], by: str = "video", fraction: float = 0.02, seed: int = 0) -> set[str]:
    """The paths of the training splits held out to select checkpoints on (identification).

    Per speaker, whole videos (``by="video"``: a video is never in both parts, so validation
    is judged on sessions not trained on, as the test is) or single utterances
    (``by="utterance"``) are held out: ``fraction`` of the speaker's ``n`` videos
    (utterances), rounded down or up at random with the probabilities that make the
    expected count ``fraction * n``, at most ``n - 1`` (every speaker keeps one to train
    on), chosen at random. Each speaker's draw comes from ``seed`` and its id alone, so it
    does not change when other speakers or files come and go (e.g. bad files left out).
    When no speaker draws any (a corpus too small for the fraction), the speaker whose
    rounding draw came closest gives one, so the set is never empty while a speaker has two.

    Parameters
    ----------
    paths : sequence of str
        ``<speaker>/<video>/<utterance>.wav`` of the training splits.
    by : {"video", "utterance"}
    fraction : float
        In (0, 1).
    seed : int

    Returns
    -------
    set of str
        A subset of ``paths`` (empty only when no speaker has two videos or utterances).

    Examples
    --------
    >>> paths = [f"id1/v{v}/0000{u}.wav" for v in range(4) for u in range(3)]
    >>> held = held_out_for_validation(paths, "video", fraction=0.25, seed=0)
    >>> len(held), len({p.split("/")[1] for p in held})
    (3, 1)
    """
    if by not in ("video", "utterance"):
        raise ValueError(f"by must be 'video' or 'utterance', got {by!r}")
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"fraction must lie in (0, 1), got {fraction}")
    units: dict[str, set[str]] = {}
    for p in paths:
        units.setdefault(speaker_of(p), set()).add(_unit_of(p, by))
    chosen: set[str] = set()
    closest: tuple[float, str, list[str]] | None = None  # (distance to rounding up, speaker, order)
    for speaker in sorted(units):
        own = sorted(units[speaker])
        if len(own) < 2:
            continue
        rng = _speaker_rng(seed, speaker)
        expected = fraction * len(own)
        draw = rng.random()
        order = [own[i] for i in rng.permutation(len(own))]
        count = min(int(np.floor(expected)) + int(draw < expected - np.floor(expected)), len(own) - 1)
        chosen.update(order[:count])
        distance = draw - (expected - np.floor(expected))
        if closest is None or distance < closest[0]:
            closest = (distance, speaker, order)
    if not chosen and closest is not None:
        chosen.add(closest[2][0])
    return {p for p in paths if _unit_of(p, by) in chosen}


def identification_parts(
    entries: Sequence[tuple[int, str]],
    train_splits: Sequence[int] = (1, 2),
    val_by: str = "video",
    val_fraction: float = 0.02,
    seed: int = 0,
) -> dict[str, list[str]]:
    """Train, validation and test paths of the identification protocol.

    Parameters
    ----------
    entries : sequence of (int, str)
        ``iden_split.txt``'s ``(split, path)`` lines (1 train, 2 validation, 3 test).
    train_splits : sequence of int
        The splits trained on, among 1 and 2 (the paper: both, its development set).
    val_by : {"video", "utterance", "split"}
        Checkpoints are selected on videos or utterances held out of the training splits
        (:func:`held_out_for_validation`), or on the official validation split 2
        (``"split"``, which then must not be a training split).
    val_fraction : float
        ``"video"``/``"utterance"``: the fraction held out.
    seed : int

    Returns
    -------
    dict
        ``{"train": [...], "val": [...], "test": [...]}``, paths in the order of ``entries``;
        test is split 3; splits neither trained on nor validated on are left out.

    Examples
    --------
    >>> entries = [(1, "id1/a/1.wav"), (1, "id1/b/1.wav"), (2, "id1/c/1.wav"), (3, "id1/d/1.wav")]
    >>> identification_parts(entries, train_splits=[1], val_by="split")
    {'train': ['id1/a/1.wav', 'id1/b/1.wav'], 'val': ['id1/c/1.wav'], 'test': ['id1/d/1.wav']}
    >>> parts = identification_parts(entries)
    >>> len(parts["train"]), len(parts["val"]), parts["test"]
    (2, 1, ['id1/d/1.wav'])
    """
    train_splits = check_iden_train_splits(train_splits, val_by)
    pool = [p for s, p in entries if s in train_splits]
    if val_by == "split":
        held: set[str] = set()
        val = [p for s, p in entries if s == 2]
    else:
        held = held_out_for_validation(pool, val_by, val_fraction, seed)
        val = [p for p in pool if p in held]
    return {"train": [p for p in pool if p not in held], "val": val, "test": [p for s, p in entries if s == 3]}


def check_iden_train_splits(train_splits: Sequence[int], val_by: str) -> tuple[int, ...]:
    """``train_splits`` as a sorted tuple; raises if they cannot go with ``val_by``."""
    if val_by not in IDEN_VAL_BY:
        raise ValueError(f"iden_val_by must be one of {IDEN_VAL_BY}, got {val_by!r}")
    splits = tuple(sorted({int(s) for s in train_splits}))
    if not splits or not set(splits) <= {1, 2}:
        raise ValueError(f"iden_train_splits must be among 1 and 2 (3 is the test split), got {list(train_splits)}")
    if val_by == "split" and 2 in splits:
        raise ValueError(f"iden_val_by='split' validates on split 2, which iden_train_splits={list(splits)} trains on; "
                         "use iden_train_splits=[1] or iden_val_by=video")
    return splits


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
    iden_train_splits : sequence of int
        Identification: the ``iden_split.txt`` splits trained on, ``(1, 2)`` by default (the
        papers' development set), or ``(1,)`` (the official training split).
    iden_val_by : {"video", "utterance", "split"}
        Identification: what checkpoints are selected on: whole videos held out of the
        training splits (default; no session in both parts), utterances held out of them,
        or the official validation split 2 (with ``iden_train_splits=(1,)``: the official
        protocol).
    iden_val_fraction : float
        ``video``/``utterance``: about this fraction of each speaker's videos (utterances)
        is held out (:func:`held_out_for_validation`; seeded by ``split_seed``).
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
        iden_train_splits: Sequence[int] = (1, 2), iden_val_by: str = "video", iden_val_fraction: float = 0.02,
        val_utterances_per_speaker: int = 2, num_val_trials: int = 2000, split_seed: int = 0,
        batch_size: int = 64, eval_batch_size: int = 16, num_workers: int = 4,
        skip_bad_files: bool = False,
        shuffle_labels: bool = False,
        prepare: Callable[[Path], object] | None = None,
        num_classes: int | None = None,
        class_names: list[str] | None = None,
        format: str = "files",
        shards: Mapping | None = None,
    ) -> None:
        super().__init__()
        self.configure_format(format, shards)
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
        self.iden_train_splits = check_iden_train_splits(iden_train_splits, iden_val_by)
        if iden_val_by != "split" and not 0.0 < iden_val_fraction < 1.0:
            raise ValueError(f"iden_val_fraction must lie in (0, 1) with iden_val_by={iden_val_by!r}, got {iden_val_fraction}")
        self.iden_val_by, self.iden_val_fraction = iden_val_by, iden_val_fraction
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
    #: subset: train, val, test (identification: iden_split 1, 2, 3, whatever the run trains
    #: on; verification: the trial list's files are test, other files of its speakers and of
    #: id10270-id10309 are excluded, the rest train)
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
        return [(p, speaker_of(p), video_of(p), IDEN_SPLIT_NAMES[s], f"{path.name}:{n}") for n, (s, p) in entries]

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
    def _identification_part(self, subset: str) -> str | None:
        """Where a file of ``iden_split.txt``'s ``subset`` goes at prepare: ``train`` for the
        training splits (validation files are held out of them in ``setup``, after bad files
        are left out), ``val`` for split 2 with ``iden_val_by="split"``, ``test`` for split 3,
        None for a split the run does not read."""
        split = {name: number for number, name in IDEN_SPLIT_NAMES.items()}[subset]
        if split in self.iden_train_splits:
            return "train"
        if split == 3 or (split == 2 and self.iden_val_by == "split"):
            return subset
        return None

    def split_files(self) -> dict[str, list[tuple[str, str | None, str]]]:
        """Identification: the training splits, as one ``train`` part (the held-out validation
        files are drawn from it in ``setup``), split 3 as ``test`` (and split 2 as ``val``
        with ``iden_val_by="split"``); labels: speakers. Verification: every training file
        (labels: speakers; validation files are drawn from them in ``setup``) and the trial
        list's files (no class: test speakers are never trained)."""
        wav = self.root / "wav"
        files: dict[str, list] = {}
        for row in self.read_table():
            part = self._identification_part(row["subset"]) if self.protocol == "identification" else row["subset"]
            if part is None or part == "excluded":
                continue
            label = None if self.protocol == "verification" and part == "test" else row["speaker"]
            files.setdefault(part, []).append((str(wav / row["path"]), label, row["line"]))
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
        split_of = {name: number for number, name in IDEN_SPLIT_NAMES.items()}
        entries = [(split_of[row["subset"]], row["path"]) for row in self.read_table() if row["path"] not in bad]
        parts = identification_parts(entries, self.iden_train_splits, self.iden_val_by, self.iden_val_fraction,
                                     self.split_seed)
        if not parts["val"]:
            raise ValueError(
                f"VoxCeleb1 identification at {self.root}: no speaker has two {self.iden_val_by}s in splits "
                f"{list(self.iden_train_splits)}, so none can be held out for validation; use data.iden_val_by=utterance, "
                "or data.iden_val_by=split with data.iden_train_splits=[1]"
            )
        speakers = sorted({speaker_of(p) for paths in parts.values() for p in paths})
        index = {s: i for i, s in enumerate(speakers)}
        self.class_names = speakers
        self.train_paths = parts["train"]
        self.train_labels = np.array([index[speaker_of(p)] for p in parts["train"]], dtype=np.int64)
        for name in ("val", "test"):
            paths = parts[name]
            self.eval_sets[name] = EvalSet(paths, np.array([index[speaker_of(p)] for p in paths], dtype=np.int64))
        videos = {name: len({video_of(p) for p in paths}) for name, paths in parts.items()}
        held = "split 2" if self.iden_val_by == "split" else (
            f"{self.iden_val_by}s held out of them (fraction {self.iden_val_fraction:g}, seed {self.split_seed})")
        log.info(
            "VoxCeleb1 identification: %d speakers; train on splits %s, validate on %s; "
            "utterances (videos) train %d (%d), val %d (%d), test %d (%d)",
            len(speakers), "+".join(map(str, self.iden_train_splits)), held,
            len(parts["train"]), videos["train"], len(parts["val"]), videos["val"], len(parts["test"]), videos["test"],
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

    def split_groups(self, split: str) -> list[str]:
        """Each utterance's speaker (``id10001`` of ``id10001/<video>/<n>.wav``)."""
        return [p.split("/")[0] for p in (self.train_paths if split == "train" else self.eval_sets[split].paths)]

    def _loader(self, split: str) -> DataLoader:
        dataset = self._dataset(split)
        common = dict(num_workers=self.num_workers, collate_fn=collate_skipping_bad, persistent_workers=self.num_workers > 0)
        if split == "train":
            return self.training_loader(dataset, self.batch_size, split, drop_last=len(dataset) > self.batch_size, **common)
        return self.evaluation_loader(dataset, self.eval_batch_size, split, **common)

