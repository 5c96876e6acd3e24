"""Berlin Database of Emotional Speech, EmoDB (Burkhardt et al., Interspeech 2005).

What: 535 utterances of 10 actors (5 female, 5 male; speakers 03, 08-16) each saying up to
10 German sentences (text codes a01, a02, a04, a05, a07, b01, b02, b03, b09, b10) in seven
emotions, recorded at 48 kHz and distributed at 16 kHz. Per emotion: anger 127, boredom 81,
disgust 46, fear 69, happiness 71, sadness 62, neutral 79 (the notebook this recipe comes
from says "800 recordings": that is the number recorded before the perception test, not
the released corpus).
Licence: free for research (http://emodb.bilderbar.info); not redistributed here.
Protocol: none is official. Emotion recognition on EmoDB is judged speaker-independently:
leave-one-speaker-out, or a split of the speakers (see :mod:`audioexp.probes`).

On-disk layout read here::

    ROOT/wav/03a01Fa.wav     speaker 03, text a01, emotion F (happiness), version a

File names: 2 digits speaker, 3 characters text, 1 letter emotion (German initials:
W Wut = anger, L Langeweile = boredom, E Ekel = disgust, A Angst = fear, F Freude =
happiness, T Trauer = sadness, N neutral), 1 letter version.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np
from torch.utils.data import DataLoader

from audioexp.data.datamodule import CorpusDataModule, default_cache_dir
from audioexp.data.datasets import UtteranceDataset, collate_skipping_bad
from audioexp.data.manifest import CorpusNotFoundError
from audioexp.data.splits import first_per_group

log = logging.getLogger(__name__)

#: Emotion letters in the file names, and the English names used as class names.
EMOTIONS: dict[str, str] = {
    "W": "anger",
    "L": "boredom",
    "E": "disgust",
    "A": "fear",
    "F": "happiness",
    "T": "sadness",
    "N": "neutral",
}
CLASS_NAMES: list[str] = list(EMOTIONS.values())
#: The released corpus.
SPEAKERS: tuple[str, ...] = ("03", "08", "09", "10", "11", "12", "13", "14", "15", "16")
FEMALE_SPEAKERS: tuple[str, ...] = ("08", "09", "13", "14", "16")
TEXTS: tuple[str, ...] = ("a01", "a02", "a04", "a05", "a07", "b01", "b02", "b03", "b09", "b10")
EXPECTED_NUM_FILES = 535
EXPECTED_COUNTS: dict[str, int] = {"W": 127, "L": 81, "E": 46, "A": 69, "F": 71, "T": 62, "N": 79}

_NAME_RE = re.compile(r"^(?P<speaker>\d{2})(?P<text>[a-z]\d{2})(?P<emotion>[A-Z])(?P<version>[a-z])\.wav$")

EXPECTED_LAYOUT = """\
expected the EmoDB layout:
  {root}/wav/<speaker:2 digits><text:3><emotion letter><version letter>.wav   e.g. 03a01Fa.wav
  emotion letters: W anger, L boredom, E disgust, A fear, F happiness, T sadness, N neutral
To try the recipe without the corpus, write a miniature one:
  python -m audioexp.minicorpus emodb {root}"""


class EmoDBNameError(ValueError):
    """A file in ``wav/`` whose name does not follow the EmoDB convention."""


@dataclass(frozen=True)
class EmoDBUtterance:
    """One file of EmoDB: its name and what the name says."""

    name: str
    speaker: str
    text: str
    emotion: str  # the letter, e.g. "W"
    version: str

    @property
    def label(self) -> int:
        """Index into :data:`CLASS_NAMES`."""
        return list(EMOTIONS).index(self.emotion)


def parse_emodb_name(name: str) -> EmoDBUtterance:
    """Split an EmoDB file name into speaker, text, emotion and version.

    >>> parse_emodb_name("03a01Fa.wav")
    EmoDBUtterance(name='03a01Fa.wav', speaker='03', text='a01', emotion='F', version='a')

    Raises
    ------
    EmoDBNameError
        The name does not match ``SSTTTEV.wav`` or its emotion letter is not one of EmoDB's.
    """
    match = _NAME_RE.match(name)
    if match is None:
        raise EmoDBNameError(
            f"{name!r} is not an EmoDB file name: expected 2 digits (speaker), 3 characters (text, "
            "e.g. a01), an emotion letter and a version letter, e.g. '03a01Fa.wav'"
        )
    if match["emotion"] not in EMOTIONS:
        raise EmoDBNameError(
            f"{name!r}: unknown emotion letter {match['emotion']!r}; expected one of {', '.join(f'{k} ({v})' for k, v in EMOTIONS.items())}"
        )
    return EmoDBUtterance(name, match["speaker"], match["text"], match["emotion"], match["version"])


def list_emodb(root: str | Path) -> list[EmoDBUtterance]:
    """Every ``wav/*.wav`` of an EmoDB root, parsed and sorted by name.

    Raises
    ------
    CorpusNotFoundError
        No ``wav/`` folder or no ``.wav`` file in it; the message gives the expected layout.
    EmoDBNameError
        ``.wav`` files whose names are not EmoDB names (the message names every one).
    """
    root = Path(root)
    wav = root / "wav"
    if not wav.is_dir():
        raise CorpusNotFoundError(f"EmoDB root {root} has no wav/ folder; " + EXPECTED_LAYOUT.format(root=root))
    names = sorted(p.name for p in wav.iterdir() if p.suffix.lower() == ".wav" and not p.name.startswith("."))
    if not names:
        raise CorpusNotFoundError(f"EmoDB root {root} has no .wav files in wav/; " + EXPECTED_LAYOUT.format(root=root))
    utterances, problems = [], []
    for name in names:
        try:
            utterances.append(parse_emodb_name(name))
        except EmoDBNameError as err:
            problems.append(f"{wav / name}: {err}")
    if problems:
        more = f"\n... and {len(problems) - 20} more" if len(problems) > 20 else ""
        raise EmoDBNameError(f"{len(problems)} file(s) in {wav} are not EmoDB names:\n" + "\n".join(problems[:20]) + more)
    return utterances


def count_differences(utterances: list[EmoDBUtterance]) -> list[str]:
    """How a file list differs from the released corpus (empty when it matches).

    >>> count_differences([parse_emodb_name("03a01Fa.wav")])[0]
    '1 files instead of 535'
    """
    found = {e: 0 for e in EMOTIONS}
    for u in utterances:
        found[u.emotion] += 1
    differences = []
    if len(utterances) != EXPECTED_NUM_FILES:
        differences.append(f"{len(utterances)} files instead of {EXPECTED_NUM_FILES}")
    for letter, expected in EXPECTED_COUNTS.items():
        if found[letter] != expected:
            differences.append(f"{EMOTIONS[letter]} ({letter}): {found[letter]} instead of {expected}")
    speakers = sorted({u.speaker for u in utterances})
    if speakers != list(SPEAKERS):
        differences.append(f"speakers {speakers} instead of {list(SPEAKERS)}")
    return differences


def check_counts(root: str | Path, utterances: list[EmoDBUtterance]) -> list[str]:
    """Warn when a real EmoDB root differs from the released corpus; return the differences.

    """
    differences = count_differences(utterances)
    if differences:
        log.warning(
            "EmoDB root %s differs from the released corpus (535 files, 10 speakers; W 127, L 81, E 46, "
            "A 69, F 71, T 62, N 79): %s. Results are not comparable with published ones.",
            root, "; ".join(differences),
        )
    return differences


class EmoDBDataModule(CorpusDataModule):
    """EmoDB for embedding probes: every clip, whole, in file-name order (``predict_dataloader``).

    Speaker-independent splits are made by the probe (:mod:`audioexp.probes`) from
    :attr:`speakers`, so that one embedding pass serves every split and classifier.

    Parameters
    ----------
    root : path
        Corpus root (``wav/`` below it).
    sample_rate : int
        Clips are read at this rate (the release is 16 kHz; others are resampled, said once).
    min_seconds : float
        Shorter clips are bad files.
    batch_size, num_workers : int
        Of the prediction loader (padded batches carry ``length``).
    prepare : callable, optional
        Called with ``root`` in ``prepare_data`` before anything is read: a ``*_mini`` data
        config injects :func:`audioexp.minicorpus.prepare` here, which writes a miniature
        corpus on first use. This module does not know what it does.
    check_counts : bool
        Warn when the root differs from the released corpus (535 files, 10 speakers); the
        miniature corpus's config turns it off.
    max_files_per_class : int, optional
        Keep only the first files of each emotion of each speaker (a quick run of the whole
        path, set by ``+debug=...``); None: every file.
    cache_dir : path, optional
        Where the corpus table (file name, speaker, text, emotion, version) is written in
        ``prepare_data`` (default ``ROOT/.audioexp``).
    num_classes, class_names
        For configs; always the seven EmoDB emotions.
    max_seconds, resample, silence_db, validate, skip_bad_files
        What prepare checks and what a bad file does (:class:`audioexp.data.validate.AudioChecks`;
        the data config documents each). Bad files left out are not embedded: the probe
        sees only the others, and the count is in ``data/all/skipped_files``.
    """

    def __init__(
        self,
        root: str,
        sample_rate: int = 16000,
        min_seconds: float = 0.1,
        batch_size: int = 1,
        num_workers: int = 0,
        skip_bad_files: bool = False,
        prepare: Callable[[Path], object] | None = None,
        check_counts: bool = True,
        num_classes: int = 7,
        class_names: list[str] | None = None,
        max_files_per_class: int | None = None,
        cache_dir: str | None = None,
        max_seconds: float | None = None,
        resample: str = "any",
        silence_db: float | None = -60.0,
        validate: str = "header",
        format: str = "files",
        shards: Mapping | None = None,
    ) -> None:
        super().__init__()
        self.configure_format(format, shards)
        if num_classes != len(CLASS_NAMES):
            raise ValueError(f"EmoDB has {len(CLASS_NAMES)} emotions, got num_classes={num_classes}")
        if class_names is not None and list(class_names) != CLASS_NAMES:
            raise ValueError(f"EmoDB's class names are {CLASS_NAMES} (in that order), got {list(class_names)}")
        self.root = Path(root)
        self.sample_rate, self.min_seconds = sample_rate, min_seconds
        self.configure_checks(sample_rate, min_seconds, max_seconds, resample, silence_db, validate, skip_bad_files)
        self.batch_size, self.num_workers = batch_size, num_workers
        self.prepare, self.check_counts = prepare, check_counts
        self.class_names = list(CLASS_NAMES)
        self.max_files_per_class = max_files_per_class
        self.cache_dir = default_cache_dir(self.root, cache_dir)
        self.utterances: list[EmoDBUtterance] = []

    corpus_name = "EmoDB"
    expected_layout = EXPECTED_LAYOUT
    table_columns = ("path", "speaker", "text", "emotion", "version")

    def table_sources(self) -> list[Path]:
        return [self.root / "wav"]

    def table_rows(self):
        for u in list_emodb(self.root):
            yield f"wav/{u.name}", u.speaker, u.text, u.emotion, u.version

    def split_files(self) -> dict[str, list[tuple[str, str, str]]]:
        """Every clip (the probe makes its speaker-independent splits later)."""
        return {"all": [(str(self.root / row["path"]), row["emotion"], "") for row in self.read_table()]}

    def setup(self, stage: str | None = None) -> None:
        if self.utterances:
            return
        bad = self.bad_files()
        self.utterances = [EmoDBUtterance(Path(row["path"]).name, row["speaker"], row["text"], row["emotion"], row["version"])
                           for row in self.read_table() if str(self.root / row["path"]) not in bad]
        if self.check_counts:
            check_counts(self.root, self.utterances)
        if self.max_files_per_class is not None:
            keep = first_per_group([(u.speaker, u.emotion) for u in self.utterances], self.max_files_per_class)
            self.utterances = [self.utterances[i] for i in keep]
        log.info(
            "EmoDB %s: %d files, %d speakers, per emotion %s", self.root, len(self.utterances), len(set(self.speakers)),
            {EMOTIONS[e]: int(c) for e, c in zip(*np.unique([u.emotion for u in self.utterances], return_counts=True))},
        )

    @property
    def files(self) -> list[str]:
        """Paths relative to the root (``wav/03a01Fa.wav``), in the order of every array here."""
        return [f"wav/{u.name}" for u in self.utterances]

    @property
    def labels(self) -> np.ndarray:
        return np.array([u.label for u in self.utterances], dtype=np.int64)

    @property
    def speakers(self) -> np.ndarray:
        return np.array([u.speaker for u in self.utterances])

    #: one set: the probe embeds every utterance once and splits the embeddings itself
    shard_splits = ("all",)

    def _dataset(self, split: str = "all") -> UtteranceDataset:
        self.setup()
        # whole clips, with their position in `files` (the probe reassembles embeddings by it)
        return UtteranceDataset(self.root, self.files, self.labels, self.sample_rate, min_seconds=self.min_seconds,
                                skip_bad_files=self.skip_bad_files, checks=self.checks)

    def split_groups(self, split: str) -> list[str]:
        return [str(s) for s in self.speakers]

    def predict_dataloader(self) -> DataLoader:
        return self.evaluation_loader(self._dataset("all"), self.batch_size, "all", num_workers=self.num_workers,
                                      collate_fn=collate_skipping_bad)
