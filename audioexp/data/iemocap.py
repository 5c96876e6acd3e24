"""IEMOCAP (Busso et al., Language Resources and Evaluation 2008) for speech emotion recognition.

What: about 12 hours of dyadic sessions by 10 actors (5 sessions, one female and one male
actor each), improvised and scripted, cut into utterances (16 kHz WAV) that annotators
labelled with categorical emotions (``neu hap ang sad exc fru fea sur dis oth xxx``).
Licence: released by USC SAIL on request under its own licence agreement (research use, no
redistribution; https://sail.usc.edu/iemocap/).

Protocol of Xi et al. (ICASSP 2022), the common one: improvised dialogs only, four classes
(neutral, happy, angry, sad), speaker-independent cross-validation where "8 speakers are
used as training data, one of the remaining speakers is used as verification data and the
final speaker as the test data". Chosen with ``protocol`` and ``fold``:

- ``leave_one_speaker_out``, folds 0-9: fold ``k`` tests one actor of session
  ``k % 5 + 1`` (the female one for k < 5, the male one for k >= 5) and validates on its
  session partner; the other 8 actors train. Folds 0-4 test each session once: the
  paper's "5-fold cross-validation" (which actor it tested is unstated: ours, female);
  folds 0-9 test every speaker exactly once.
- ``leave_one_session_out``, folds 0-4: both actors of session ``k + 1`` are the test
  set; a stratified ``val_fraction`` of the 8 training speakers' utterances (ours: 10 %)
  selects checkpoints, so validation and training share speakers here.

Options (both off by default, as the paper): ``include_scripted`` adds the scripted
dialogs; ``merge_excited`` labels ``exc`` as happy (common in the literature).

On-disk layout read here (the released one)::

    ROOT/Session{1..5}/sentences/wav/<dialog>/<utterance>.wav
    ROOT/Session{1..5}/dialog/EmoEvaluation/<dialog>.txt

with EmoEvaluation lines ``[6.2901 - 8.2357]<TAB>Ses01F_impro01_F000<TAB>neu<TAB>[2.5000,
2.5000, 2.5000]`` (start, end, utterance, majority label, valence/activation/dominance);
the annotators' lines below each (``C-E2:`` ...) are ignored. The speaker of
``Ses01F_impro01_M005`` is session 1's male actor (the last part's letter; the dialog's
letter says who wore the motion-capture markers), written ``Ses01M`` here.
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass
from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader

from audioexp.data.datamodule import CorpusDataModule, default_cache_dir
from audioexp.data.datasets import UtteranceDataset, collate_skipping_bad
from audioexp.data.manifest import CorpusNotFoundError
from audioexp.data.protocols import ProtocolFileError, read_list_file, repeated

log = logging.getLogger(__name__)

__all__ = [
    "CLASSES",
    "EXPECTED_COUNTS",
    "EmoEvaluationError",
    "IEMOCAPDataModule",
    "PROTOCOLS",
    "Utterance",
    "fold_speakers",
    "read_emo_evaluation",
    "read_iemocap",
    "select_utterances",
    "speaker_of",
]

CLASSES: tuple[str, ...] = ("neutral", "happy", "angry", "sad")
_CLASS_OF_CODE = {"neu": 0, "hap": 1, "ang": 2, "sad": 3}
#: every categorical label of the release (majority vote; ``xxx``: no agreement)
EMOTION_CODES = frozenset({"neu", "hap", "ang", "sad", "exc", "fru", "fea", "sur", "dis", "oth", "xxx"})
PROTOCOLS = ("leave_one_speaker_out", "leave_one_session_out")
NUM_FOLDS = {"leave_one_speaker_out": 10, "leave_one_session_out": 5}
#: utterances of the four classes in the full release, by (include_scripted, merge_excited)
EXPECTED_COUNTS = {(False, False): 2280, (False, True): 2943, (True, False): 4490, (True, True): 5531}
SESSIONS = (1, 2, 3, 4, 5)

EXPECTED_LAYOUT = """\
expected the IEMOCAP layout:
  {root}/Session{{1..5}}/sentences/wav/<dialog>/<utterance>.wav
  {root}/Session{{1..5}}/dialog/EmoEvaluation/<dialog>.txt   lines '[6.2901 - 8.2357]<TAB>Ses01F_impro01_F000<TAB>neu<TAB>[2.5, 2.5, 2.5]'
To try the recipes without the corpus, write a miniature one:
  python -m audioexp.minicorpus iemocap {root}"""

_LINE_RE = re.compile(r"^\[(\d+(?:\.\d+)?)\s*-\s*(\d+(?:\.\d+)?)\]\t(\S+)\t(\S+)\t\[([^\]]*)\]\s*$")
_UTTERANCE_RE = re.compile(r"^Ses0([1-5])[FM]_(\w+?)_([FM])\d{3}$")


class EmoEvaluationError(ProtocolFileError):
    """A malformed EmoEvaluation line: names the file and line."""


@dataclass(frozen=True)
class Utterance:
    """One labelled utterance of an EmoEvaluation file."""

    utterance_id: str
    dialog: str
    session: int
    speaker: str
    emotion: str  # the release's code: neu, hap, ...
    start: float
    end: float

    @property
    def improvised(self) -> bool:
        return "_impro" in self.dialog

    @property
    def path(self) -> str:
        """Relative to the corpus root."""
        return f"Session{self.session}/sentences/wav/{self.dialog}/{self.utterance_id}.wav"


def speaker_of(utterance_id: str) -> str:
    """``Ses01F_impro01_M005`` -> ``Ses01M`` (session 1's male actor).

    >>> speaker_of("Ses01F_impro01_M005"), speaker_of("Ses05M_script01_1b_F012")
    ('Ses01M', 'Ses05F')
    """
    m = _UTTERANCE_RE.match(utterance_id)
    if m is None:
        raise ValueError(f"not an IEMOCAP utterance id: {utterance_id!r} (expected like 'Ses01F_impro01_M005')")
    return f"Ses0{m.group(1)}{m.group(3)}"


def read_emo_evaluation(path: str | os.PathLike, session: int | None = None, numbered: bool = False) -> list[Utterance]:
    """Parse one ``EmoEvaluation/<dialog>.txt``: its utterance lines, in file order.

    Lines starting with ``[`` are utterance lines and must be well formed; the header
    (``%``), blank lines and the annotators' lines are skipped.

    Raises
    ------
    EmoEvaluationError
        ``file:line: what is wrong`` for a malformed line, an unknown label, an utterance
        of another dialog or session, or a file without utterances.
    """
    path = Path(path)
    dialog = path.stem

    def parse(line: str) -> Utterance:
        m = _LINE_RE.match(line)
        if m is None:
            raise ValueError("expected '[start - end]<TAB>utterance<TAB>label<TAB>[v, a, d]'")
        start, end, utt, code = float(m.group(1)), float(m.group(2)), m.group(3), m.group(4)
        if code not in EMOTION_CODES:
            raise ValueError(f"unknown emotion label {code!r}; expected one of {sorted(EMOTION_CODES)}")
        if not utt.startswith(dialog + "_"):
            raise ValueError(f"utterance {utt!r} does not belong to dialog {dialog!r}")
        speaker = speaker_of(utt)
        if session is not None and int(speaker[4]) != session:
            raise ValueError(f"utterance {utt!r} is filed under Session{session}")
        if not end > start:
            raise ValueError(f"end time {end} is not after start time {start}")
        return Utterance(utt, dialog, int(speaker[4]), speaker, code, start, end)

    return read_list_file(path, parse, select=lambda line: line.startswith("["), errors="replace",
                          empty="no utterance lines ('[start - end]<TAB>utterance<TAB>label<TAB>[v, a, d]')",
                          error=EmoEvaluationError, numbered=numbered)


def read_iemocap(root: str | os.PathLike, numbered: bool = False) -> list[Utterance]:
    """Every labelled utterance of the five sessions' EmoEvaluation files (with ``numbered``,
    ``(file name:line, utterance)`` pairs)."""
    root = Path(root)
    if not root.is_dir():
        raise CorpusNotFoundError(f"IEMOCAP root {root} does not exist; " + EXPECTED_LAYOUT.format(root=root))
    utterances = []
    for s in SESSIONS:
        folder = root / f"Session{s}" / "dialog" / "EmoEvaluation"
        if not folder.is_dir():
            raise CorpusNotFoundError(f"IEMOCAP root {root}: {folder} is missing; " + EXPECTED_LAYOUT.format(root=root))
        files = sorted(p for p in folder.glob("*.txt") if not p.name.startswith("."))
        if not files:
            raise CorpusNotFoundError(f"IEMOCAP root {root}: no <dialog>.txt in {folder}; " + EXPECTED_LAYOUT.format(root=root))
        for f in files:
            entries = read_emo_evaluation(f, session=s, numbered=numbered)
            utterances.extend((f"{f.name}:{n}", u) for n, u in entries) if numbered else utterances.extend(entries)
    return utterances


def select_utterances(
    utterances: list[Utterance], include_scripted: bool = False, merge_excited: bool = False
) -> list[tuple[Utterance, int]]:
    """The four-class subset: ``(utterance, class index into CLASSES)``.

    >>> u = [Utterance("Ses01F_impro01_F000", "Ses01F_impro01", 1, "Ses01F", c, 0.0, 1.0) for c in ("neu", "exc", "fru")]
    >>> [c for _, c in select_utterances(u)], [c for _, c in select_utterances(u, merge_excited=True)]
    ([0], [0, 1])
    """
    chosen = []
    for u in utterances:
        if not include_scripted and not u.improvised:
            continue
        code = "hap" if merge_excited and u.emotion == "exc" else u.emotion
        if code in _CLASS_OF_CODE:
            chosen.append((u, _CLASS_OF_CODE[code]))
    return chosen


def all_speakers() -> list[str]:
    """``Ses01F, Ses01M, ..., Ses05M``."""
    return [f"Ses0{s}{g}" for s in SESSIONS for g in "FM"]


def fold_speakers(protocol: str, fold: int) -> tuple[list[str], list[str], list[str]]:
    """Training, validation and test speakers of a fold.

    ``leave_one_session_out`` has no validation speakers (validation utterances are held
    out from the training speakers).

    >>> fold_speakers("leave_one_speaker_out", 6)
    (['Ses01F', 'Ses01M', 'Ses03F', 'Ses03M', 'Ses04F', 'Ses04M', 'Ses05F', 'Ses05M'], ['Ses02F'], ['Ses02M'])
    """
    if protocol not in PROTOCOLS:
        raise ValueError(f"protocol must be one of {PROTOCOLS}, got {protocol!r}")
    if not 0 <= fold < NUM_FOLDS[protocol]:
        raise ValueError(f"{protocol} has folds 0-{NUM_FOLDS[protocol] - 1}, got fold={fold}")
    session = fold % 5 + 1
    pair = [f"Ses0{session}F", f"Ses0{session}M"]
    train = [s for s in all_speakers() if s not in pair]
    if protocol == "leave_one_session_out":
        return train, [], pair
    test = pair[0] if fold < 5 else pair[1]
    val = pair[1] if fold < 5 else pair[0]
    return train, [val], [test]


def _stratified_holdout(labels: np.ndarray, groups: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """Boolean mask holding out ``fraction`` (rounded, at least 1) of each (group, label) cell."""
    rng = np.random.default_rng(seed)
    held = np.zeros(len(labels), dtype=bool)
    for g in np.unique(groups):
        for c in np.unique(labels):
            idx = np.flatnonzero((groups == g) & (labels == c))
            k = min(len(idx) - 1, max(1, int(round(fraction * len(idx))))) if len(idx) > 1 else 0
            if k > 0:
                held[rng.choice(idx, size=k, replace=False)] = True
    return held


class EmotionUtteranceDataset(UtteranceDataset):
    """:class:`UtteranceDataset` items plus ``speaker`` (index into the training speakers,
    -1 for others) and ``speaker_id`` (index into all ten speakers)."""

    def __init__(self, *args, speakers: np.ndarray, speaker_ids: np.ndarray, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.speakers = np.asarray(speakers, dtype=np.int64)
        self.speaker_ids = np.asarray(speaker_ids, dtype=np.int64)

    def make_item(self, i: int, waveform: torch.Tensor | None) -> dict | None:
        item = super().make_item(i, waveform)
        if item is not None:
            item["speaker"] = int(self.speakers[i])
            item["speaker_id"] = int(self.speaker_ids[i])
        return item


def collate_with_speakers(items: list[dict | None]) -> dict | None:
    """:func:`collate_skipping_bad` plus ``speaker`` and ``speaker_id`` tensors."""
    batch = collate_skipping_bad(items)
    if batch is not None:
        good = [item for item in items if item is not None]
        batch["speaker"] = torch.tensor([item["speaker"] for item in good], dtype=torch.long)
        batch["speaker_id"] = torch.tensor([item["speaker_id"] for item in good], dtype=torch.long)
    return batch


@dataclass
class Split:
    paths: list[str]
    labels: np.ndarray
    speakers: np.ndarray  # index into train_speakers, -1 outside
    speaker_ids: np.ndarray  # index into all speakers


def _utterances(rows: list[dict[str, str]]) -> list[Utterance]:
    """The utterances of corpus-table rows."""
    return [Utterance(r["utterance_id"], r["dialog"], int(r["session"]), r["speaker"], r["emotion"],
                      float(r["start"]), float(r["end"])) for r in rows]


class IEMOCAPDataModule(CorpusDataModule):
    """IEMOCAP four-class emotion recognition, one cross-validation fold (module docstring).

    Parameters
    ----------
    root : path
        Corpus root (``Session1`` ... ``Session5`` below it).
    protocol : {"leave_one_speaker_out", "leave_one_session_out"}
    fold : int
        0-9 or 0-4.
    include_scripted, merge_excited : bool
    val_fraction : float
        ``leave_one_session_out`` only: utterances of each training speaker and class held
        out for validation.
    crop_seconds : float
        Training crops (ours: 3 s; shorter utterances are repeated to fill them).
        Validation and test use whole utterances.
    batch_size, eval_batch_size : int
        128 in the paper (training); evaluation one utterance at a time by default, so
        whole utterances need no padding (ours).
    num_train_speakers : int
        Speakers of the training part (8 under both protocols): the speaker head of the
        dual-space loss is this wide. Checked at setup.
    check_counts : bool
        Warn when the utterance count differs from the release's (2,280 improvised; 2,943
        with ``exc`` merged); the miniature corpus's config turns it off.
    shuffle_labels : bool
        Permute the training labels (a control: test scores should fall to chance).
    prepare : callable, optional
        Called with ``root`` in ``prepare_data`` before anything is read: a ``*_mini`` data
        config injects :func:`audioexp.minicorpus.prepare` here, which writes a miniature
        corpus on first use. This module does not know what it does.
    cache_dir : path, optional
        Where the corpus table (every labelled utterance of the EmoEvaluation files) is
        written in ``prepare_data`` (default ``ROOT/.audioexp``).
    max_seconds, resample, silence_db, validate, skip_bad_files
        What prepare checks and what a bad file does (:class:`audioexp.data.validate.AudioChecks`;
        the data config documents each).
    """

    def __init__(
        self,
        root: str,
        protocol: str = "leave_one_speaker_out",
        fold: int = 0,
        include_scripted: bool = False,
        merge_excited: bool = False,
        val_fraction: float = 0.1,
        split_seed: int = 0,
        sample_rate: int = 16000,
        crop_seconds: float = 3.0, min_seconds: float = 0.1, max_eval_seconds: float | None = None,
        max_seconds: float | None = None, resample: str = "any", silence_db: float | None = -60.0,
        validate: str = "header",
        batch_size: int = 128, eval_batch_size: int = 1, num_workers: int = 4,
        skip_bad_files: bool = False, shuffle_labels: bool = False, check_counts: bool = True,
        prepare: Callable[[Path], object] | None = None,
        num_classes: int = 4,
        class_names: list[str] | None = None,
        num_train_speakers: int = 8,
        cache_dir: str | None = None,
        format: str = "files",
        shards: Mapping | None = None,
    ) -> None:
        super().__init__()
        self.configure_format(format, shards)
        fold_speakers(protocol, fold)  # validates protocol and fold now
        if num_classes != len(CLASSES) or (class_names is not None and list(class_names) != list(CLASSES)):
            raise ValueError(f"IEMOCAP has the 4 classes {list(CLASSES)}; got num_classes={num_classes}, class_names={class_names}")
        if not 0 < val_fraction < 1:
            raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction}")
        self.root = Path(root)
        self.protocol, self.fold = protocol, fold
        self.include_scripted, self.merge_excited = include_scripted, merge_excited
        self.val_fraction, self.split_seed = val_fraction, split_seed
        self.sample_rate = sample_rate
        self.crop_samples = int(round(crop_seconds * sample_rate))
        self.min_seconds = min_seconds
        self.max_eval_samples = int(round(max_eval_seconds * sample_rate)) if max_eval_seconds else None
        self.batch_size, self.eval_batch_size = batch_size, eval_batch_size
        self.num_workers, self.shuffle_labels = num_workers, shuffle_labels
        self.configure_checks(sample_rate, min_seconds, max_seconds, resample, silence_db, validate, skip_bad_files)
        self.check_counts, self.prepare = check_counts, prepare
        self.expected_train_speakers = num_train_speakers
        self.cache_dir = default_cache_dir(self.root, cache_dir)
        self.class_names = list(CLASSES)
        self.speakers = all_speakers()
        self.train_speakers: list[str] = []
        self.splits: dict[str, Split] = {}

    corpus_name = "IEMOCAP"
    expected_layout = EXPECTED_LAYOUT
    table_columns = ("path", "utterance_id", "dialog", "session", "speaker", "emotion", "start", "end", "line")

    def table_sources(self) -> list[Path]:
        folders = [self.root / f"Session{s}" / "dialog" / "EmoEvaluation" for s in SESSIONS]
        return [*folders, *sorted(p for f in folders if f.is_dir() for p in f.glob("*.txt"))]

    def table_rows(self):
        for line, u in read_iemocap(self.root, numbered=True):
            yield u.path, u.utterance_id, u.dialog, u.session, u.speaker, u.emotion, u.start, u.end, line

    def utterances(self) -> list[Utterance]:
        """Every labelled utterance of the corpus table, in EmoEvaluation order."""
        return _utterances(self.read_table())

    def split_files(self) -> dict[str, list[tuple[str, str, str]]]:
        """The fold's parts (training includes the utterances held out for validation under
        ``leave_one_session_out``, drawn in ``setup``), labelled by class."""
        train_spk, val_spk, test_spk = fold_speakers(self.protocol, self.fold)
        part = {**{s: "train" for s in train_spk}, **{s: "val" for s in val_spk}, **{s: "test" for s in test_spk}}
        rows = self.read_table()
        lines = {r["utterance_id"]: r["line"] for r in rows}
        files: dict[str, list] = {"train": [], "val": [], "test": []}
        for u, c in select_utterances(_utterances(rows), self.include_scripted, self.merge_excited):
            if u.speaker in part:
                files[part[u.speaker]].append((str(self.root / u.path), CLASSES[c], lines[u.utterance_id]))
        return {k: v for k, v in files.items() if v}

    def metadata_problems(self, split_files) -> list[str]:
        problems = super().metadata_problems(split_files)
        rows = self.read_table()
        problems += repeated((r["utterance_id"], r["line"]) for r in rows)
        return problems

    def _check_count(self, n: int) -> None:
        if not self.check_counts:
            return
        expected = EXPECTED_COUNTS[(self.include_scripted, self.merge_excited)]
        if n != expected:
            log.warning(
                "IEMOCAP at %s has %d utterances of the four classes (include_scripted=%s, merge_excited=%s); "
                "the full release has %d: an incomplete or modified copy?",
                self.root, n, self.include_scripted, self.merge_excited, expected,
            )

    def setup(self, stage: str | None = None) -> None:
        if self.splits:
            return
        chosen = select_utterances(self.utterances(), self.include_scripted, self.merge_excited)
        self._check_count(len(chosen))
        bad = self.bad_files()
        if bad:
            chosen = [(u, c) for u, c in chosen if str(self.root / u.path) not in bad]
        # (with data.format=shards the audio is in the shards; the lists name what they hold)
        missing = [u.path for u, _ in chosen if self.data_format == "files" and not (self.root / u.path).is_file()]
        if missing:
            raise CorpusNotFoundError(
                f"{len(missing)} labelled utterances of {self.root} have no WAV file (first: {self.root / missing[0]}); "
                + EXPECTED_LAYOUT.format(root=self.root)
            )
        train_spk, val_spk, test_spk = fold_speakers(self.protocol, self.fold)
        present = {u.speaker for u, _ in chosen}
        absent = [s for s in train_spk + val_spk + test_spk if s not in present]
        if absent:
            raise CorpusNotFoundError(f"IEMOCAP root {self.root}: no selected utterances of speakers {absent}")
        if len(train_spk) != self.expected_train_speakers:
            raise ValueError(f"data.num_train_speakers={self.expected_train_speakers} but fold {self.fold} trains on {len(train_spk)}")
        self.train_speakers = train_spk
        spk_index = {s: i for i, s in enumerate(train_spk)}
        all_index = {s: i for i, s in enumerate(self.speakers)}
        paths = np.array([u.path for u, _ in chosen])
        labels = np.array([c for _, c in chosen], dtype=np.int64)
        speakers = np.array([u.speaker for u, _ in chosen])
        train = np.isin(speakers, train_spk)
        test = np.isin(speakers, test_spk)
        if val_spk:
            val = np.isin(speakers, val_spk)
        else:
            held = _stratified_holdout(labels[train], speakers[train], self.val_fraction, self.split_seed)
            val = np.zeros(len(labels), dtype=bool)
            val[np.flatnonzero(train)[held]] = True
            train &= ~val
        for name, mask in (("train", train), ("val", val), ("test", test)):
            self.splits[name] = Split(
                paths=list(paths[mask]),
                labels=labels[mask],
                speakers=np.array([spk_index.get(s, -1) for s in speakers[mask]], dtype=np.int64),
                speaker_ids=np.array([all_index[s] for s in speakers[mask]], dtype=np.int64),
            )
        if self.shuffle_labels:
            self.splits["train"].labels = np.random.default_rng(self.split_seed + 1).permutation(self.splits["train"].labels)
        counts = {k: np.bincount(v.labels, minlength=4).tolist() for k, v in self.splits.items()}
        log.info(
            "IEMOCAP %s fold %d: test %s, validation %s; utterances per class %s %s",
            self.protocol, self.fold, test_spk, val_spk or "held-out training utterances", self.class_names, counts,
        )

    def _dataset(self, split: str) -> EmotionUtteranceDataset:
        self.setup()
        s = self.splits[split]
        common = dict(
            root=self.root, paths=s.paths, labels=s.labels, sample_rate=self.sample_rate, min_seconds=self.min_seconds,
            skip_bad_files=self.skip_bad_files, checks=self.checks, speakers=s.speakers, speaker_ids=s.speaker_ids,
        )
        if split == "train":
            return EmotionUtteranceDataset(crop_samples=self.crop_samples, **common)
        return EmotionUtteranceDataset(max_samples=self.max_eval_samples, **common)

    def split_groups(self, split: str) -> list[str]:
        """Each utterance's speaker (``Ses01F``)."""
        self.setup()
        return [self.speakers[i] for i in self.splits[split].speaker_ids]

    def _loader(self, split: str) -> DataLoader:
        dataset = self._dataset(split)
        common = dict(num_workers=self.num_workers, collate_fn=collate_with_speakers, persistent_workers=self.num_workers > 0)
        if split == "train":
            # a last batch of one would break BatchNorm's training statistics
            n, b = len(dataset), self.batch_size
            return self.training_loader(dataset, b, split, drop_last=n % b == 1 and n > b, **common)
        return self.evaluation_loader(dataset, self.eval_batch_size, split, **common)

