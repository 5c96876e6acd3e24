"""ASVspoof 2017 (replay spoofing detection), versions 1.0 and 2.0.

What: genuine utterances of RedDots pass-phrases and their replays through many playback
and recording devices in several environments, 16 kHz mono WAV. Train 3,014 (1,507
genuine / 1,507 spoof), dev 1,710 (760 / 950), eval 13,306 utterances (version 2.0, which
corrected version 1.0's data and protocols: Delgado et al., Odyssey 2018).
Licence: Open Data Commons Attribution License (ODC-By) 1.0, from the University of
Edinburgh DataShare (https://doi.org/10.7488/ds/2332).
Protocol: train countermeasures on train, develop on dev; for eval, train on train + dev.
Metric: EER of a score where higher means genuine.

On-disk layout read here (version 2.0)::

    ROOT/ASVspoof2017_V2_train/T_1000001.wav ...
    ROOT/ASVspoof2017_V2_dev/D_1000001.wav ...
    ROOT/ASVspoof2017_V2_eval/E_1000001.wav ...
    ROOT/protocol_V2/ASVspoof2017_V2_train.trn.txt
    ROOT/protocol_V2/ASVspoof2017_V2_dev.trl.txt
    ROOT/protocol_V2/ASVspoof2017_V2_eval.trl.txt

Protocol lines have seven columns, ``file key speaker phrase environment playback
recorder`` (key ``genuine`` or ``spoof``; ``-`` in the last three for genuine). Version
1.0 named its folders ``ASVspoof2017_train`` ... and lists ``protocol/ASVspoof2017_train.trn``,
``ASVspoof2017_dev.trl`` (seven columns) and ``ASVspoof2017_eval.trl``, which has two
columns, ``file phrase`` (no key: version 1.0 released eval keys separately).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from collections.abc import Callable
from pathlib import Path

import numpy as np

from audioexp.data.manifest import CorpusNotFoundError, cache_key, corpus_table
from audioexp.data.datamodule import CheckedCorpus, read_or_rebuild_table
from audioexp.data.protocols import ProtocolFileError, read_list_file, repeated
from audioexp.data.validate import format_problems
from audioexp.data.splits import first_per_group

__all__ = ["ASVspoof2017", "KEYS", "ProtocolEntry", "ProtocolFileError", "SPLITS", "read_protocol", "trim_silence"]

SPLITS = ("train", "dev", "eval")
KEYS = ("genuine", "spoof")
CLASS_NAMES = ("spoof", "genuine")  # label 0, 1
_FILE = re.compile(r"^[TDE]_\d{7}\.wav$")
_PHRASE = re.compile(r"^S\d{2}$")

LAYOUTS = {
    2: {"audio": "ASVspoof2017_V2_{split}", "protocol_dir": "protocol_V2",
        "protocol": {"train": "ASVspoof2017_V2_train.trn.txt", "dev": "ASVspoof2017_V2_dev.trl.txt",
                     "eval": "ASVspoof2017_V2_eval.trl.txt"}},
    1: {"audio": "ASVspoof2017_{split}", "protocol_dir": "protocol",
        "protocol": {"train": "ASVspoof2017_train.trn", "dev": "ASVspoof2017_dev.trl",
                     "eval": "ASVspoof2017_eval.trl"}},
}

EXPECTED_LAYOUT = """\
expected the ASVspoof 2017 version {version} layout:
  {root}/{audio}/*.wav  for split in train, dev, eval
  {root}/{protocol_dir}/{train} | {dev} | {eval}
    lines 'T_1000001.wav genuine M0002 S05 - - -' (file key speaker phrase environment playback recorder)
To try the recipes without the corpus, write a miniature one:
  python -m audioexp.minicorpus asvspoof2017 {root}"""


@dataclass(frozen=True)
class ProtocolEntry:
    """One protocol line. ``key`` is None for version 1.0's unlabelled eval list."""

    file: str
    key: str | None
    speaker: str | None
    phrase: str
    environment: str | None = None
    playback: str | None = None
    recorder: str | None = None

    @property
    def label(self) -> int:
        """1 genuine, 0 spoof (the detection target is genuine speech)."""
        if self.key is None:
            raise ValueError(f"{self.file} has no key (version 1.0 eval list)")
        return int(self.key == "genuine")


def _parse_protocol_line(line: str) -> ProtocolEntry:
    fields = line.split()
    if len(fields) not in (2, 7):
        raise ValueError(f"expected 7 columns 'file key speaker phrase environment playback recorder' "
                         f"or 2 columns 'file phrase', found {len(fields)}")
    if not _FILE.match(fields[0]):
        raise ValueError("expected a file name like 'T_1000001.wav'")
    if len(fields) == 2:
        if not _PHRASE.match(fields[1]):
            raise ValueError("expected a phrase id like 'S01' in column 2")
        return ProtocolEntry(fields[0], None, None, fields[1])
    file, key, speaker, phrase, env, play, rec = fields
    if key not in KEYS:
        raise ValueError(f"key must be one of {KEYS}")
    if not _PHRASE.match(phrase):
        raise ValueError("expected a phrase id like 'S01' in column 4")
    if key == "genuine" and (env, play, rec) != ("-", "-", "-"):
        raise ValueError("a genuine line has '-' as environment, playback and recorder")
    if key == "spoof" and "-" in (env, play, rec):
        raise ValueError("a spoof line names its environment, playback and recorder")
    dash = lambda v: None if v == "-" else v  # noqa: E731
    return ProtocolEntry(file, key, speaker, phrase, dash(env), dash(play), dash(rec))


def read_protocol(path: str | os.PathLike, numbered: bool = False) -> list[ProtocolEntry]:
    """Parse an ASVspoof 2017 protocol list (version 1.0 or 2.0, 7 or 2 columns).

    With ``numbered``, ``(line number, entry)`` pairs.

    Raises
    ------
    ProtocolFileError
        Naming the file and line of every malformed line (column count, file name, key,
        phrase id, or genuine lines with device fields), of a file listed twice (with one
        key or with two), or an empty list.
    """
    entries = read_list_file(path, _parse_protocol_line, numbered=True)
    twice = repeated((e.file, f"{Path(path).name}:{n}") for n, e in entries)
    if twice:
        raise ProtocolFileError(f"{path}: {len(twice)} file(s) listed more than once (a file has one key):\n"
                                + format_problems(twice))
    return entries if numbered else [e for _, e in entries]


class ASVspoof2017(CheckedCorpus):
    """An ASVspoof 2017 corpus root: protocol entries and audio paths per split.

    Parameters
    ----------
    root : path
    version : {1, 2}
    protocol_dir : path, optional
        Where the protocol lists are (default ``ROOT/protocol_V2`` or ``ROOT/protocol``).
    prepare : callable, optional
        Called with ``root`` in ``prepare_data`` before anything is read: a ``*_mini`` data
        config injects :func:`audioexp.minicorpus.prepare` here, which writes a miniature
        corpus on first use. This module does not know what it does.
    max_files_per_class : int, optional
        Keep only the first files of each class in every split (a quick run of the whole
        path, set by ``+debug=...``); None: the whole protocol.
    cache_dir : path, optional
        Where each split's table (its protocol entries, checked against the audio folder) is
        written in :meth:`prepare_data` (default ``ROOT/.audioexp``).
    max_seconds, silence_db, validate, skip_bad_files
        What prepare checks and what a bad file does (:class:`audioexp.data.validate.AudioChecks`;
        the data config documents each). A bad file left out is neither trained on nor scored.
    resample : {"never", "down", "any"}
        Files at another rate: refused by default (the corpus is 16 kHz throughout, and replay
        cues lie in the upper band that a conversion would change: ours).
    trim_silence_db : float, optional
        Cut leading and trailing audio quieter than this many dB below the file's loudest
        frame when a file is loaded (``librosa.effects.trim``, 25 ms frames, 10 ms hop), so
        that silence at the ends, which in ASVspoof 2017 differs between genuine and replayed
        files, is no cue. ``None`` (default): no trimming; the paper does not trim (it does not
        say so, and describes no voice activity detection).
    """

    corpus_name = "ASVspoof 2017"

    #: Columns of a split's table ('' for version 1.0 eval's missing fields and genuine
    #: lines' '-').
    table_columns = ("file", "key", "speaker", "phrase", "environment", "playback", "recorder", "line")

    def __init__(
        self,
        root: str | os.PathLike,
        version: int = 2,
        protocol_dir: str | None = None,
        sample_rate: int = 16000,
        min_seconds: float = 0.1,
        prepare: Callable[[Path], object] | None = None,
        num_classes: int = 2,
        class_names: list[str] | None = None,
        max_files_per_class: int | None = None,
        cache_dir: str | None = None,
        max_seconds: float | None = None,
        resample: str = "never",
        silence_db: float | None = -60.0,
        validate: str = "header",
        skip_bad_files: bool = False,
        trim_silence_db: float | None = None,
    ) -> None:
        if version not in LAYOUTS:
            raise ValueError(f"version must be 1 or 2, got {version!r}")
        if num_classes != 2 or (class_names is not None and list(class_names) != list(CLASS_NAMES)):
            raise ValueError(f"ASVspoof 2017 has the classes {CLASS_NAMES}, got {num_classes}, {class_names}")
        self.root = Path(root)
        self.sample_rate = sample_rate
        self.min_seconds = min_seconds
        self.num_classes = 2
        self.class_names = list(CLASS_NAMES)
        self.version = version
        self.layout = LAYOUTS[version]
        self.protocol_dir = Path(protocol_dir) if protocol_dir else self.root / self.layout["protocol_dir"]
        self.max_files_per_class = max_files_per_class
        self.prepare = prepare
        self.cache_dir = Path(cache_dir) if cache_dir else self.root / ".audioexp"
        self.configure_checks(sample_rate, min_seconds, max_seconds, resample, silence_db, validate, skip_bad_files)
        self.splits_checked: tuple[str, ...] = SPLITS
        if trim_silence_db is not None and trim_silence_db <= 0:
            raise ValueError(f"trim_silence_db must be positive (dB below the loudest frame) or null, got {trim_silence_db}")
        self.trim_silence_db = trim_silence_db

    def prepare_data(self, splits: tuple[str, ...] | list[str] = SPLITS) -> None:
        """Run the injected ``prepare`` (if any); fail with the expected layout when the root is
        missing; read and check the protocol of each split (version 1.0's eval list only when
        present) into its table."""
        if self.prepare is not None:
            self.prepare(self.root)
        if not self.root.is_dir():
            raise CorpusNotFoundError(f"ASVspoof 2017 root {self.root} does not exist; " + self._expected())
        for split in splits:
            self.table_path(split)
        self.splits_checked = tuple(splits)
        self.check_files()

    def table_key(self) -> tuple:
        return self.version, str(self.protocol_dir.resolve()), *self.splits_checked

    def split_files(self) -> dict[str, list[tuple[str, str | None, str]]]:
        """Each prepared split's files, labelled by key (none for version 1.0's eval list)."""
        files = {}
        for split in self.splits_checked:
            audio, name = self.audio_dir(split), self.protocol_file(split).name
            files[split] = [(str(audio / r["file"]), r["key"] or None, f"{name}:{r['line']}") for r in self.read_table(split)]
        return files
    def _expected(self) -> str:
        return EXPECTED_LAYOUT.format(version=self.version, root=self.root, audio=self.layout["audio"],
                                      protocol_dir=self.protocol_dir, **self.layout["protocol"])

    def protocol_file(self, split: str) -> Path:
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
        return self.protocol_dir / self.layout["protocol"][split]

    def audio_dir(self, split: str) -> Path:
        return self.root / self.layout["audio"].format(split=split)

    def _entry_rows(self, split: str):
        proto = self.protocol_file(split)
        if not proto.is_file():
            raise CorpusNotFoundError(f"no protocol list {proto}; " + self._expected())
        audio = self.audio_dir(split)
        if not audio.is_dir():
            raise CorpusNotFoundError(f"no audio folder {audio}; " + self._expected())
        entries = read_protocol(proto, numbered=True)
        present = set(os.listdir(audio))
        missing = [f"{proto.name}:{n}: {e.file}" for n, e in entries if e.file not in present]
        if missing:
            raise CorpusNotFoundError(
                f"{len(missing)} file(s) listed in {proto} are missing from {audio}:\n" + format_problems(missing)
            )
        return [(e.file, e.key, e.speaker, e.phrase, e.environment, e.playback, e.recorder, n) for n, e in entries]

    def table_path(self, split: str, rebuild: bool = False) -> Path:
        """Build (or reuse) the table of a split from its protocol list and audio folder."""
        proto, audio = self.protocol_file(split), self.audio_dir(split)
        name = f"asvspoof2017-{split}-{cache_key(self.root.resolve(), proto.resolve(), self.version)}.csv"
        return corpus_table(self.cache_dir / name, self.table_columns, lambda: self._entry_rows(split), [proto, audio],
                            rebuild=rebuild)

    def read_table(self, split: str) -> list[dict[str, str]]:
        """A split's table rows (a truncated or edited table is rebuilt with one warning)."""
        return read_or_rebuild_table(lambda rebuild=False: self.table_path(split, rebuild), self.table_columns)

    def entries(self, split: str) -> list[ProtocolEntry]:
        """Protocol entries of a split (from its table); the audio folder must hold every file."""
        none = lambda v: v or None  # noqa: E731
        return [ProtocolEntry(r["file"], none(r["key"]), none(r["speaker"]), r["phrase"], none(r["environment"]),
                              none(r["playback"]), none(r["recorder"]))
                for r in self.read_table(split)]

    def utterances(self, split: str) -> tuple[list[Path], np.ndarray]:
        """Audio paths and labels (1 genuine, 0 spoof) of a split."""
        entries = self.entries(split)
        if any(e.key is None for e in entries):
            raise ProtocolFileError(f"{self.protocol_file(split)} has no keys (version 1.0 eval list): "
                                    "it cannot be scored")
        audio = self.audio_dir(split)
        bad = self.bad_files()
        if bad:
            entries = [e for e in entries if str(audio / e.file) not in bad]
        if self.max_files_per_class is not None:
            entries = [entries[i] for i in first_per_group([e.label for e in entries], self.max_files_per_class)]
        return [audio / e.file for e in entries], np.array([e.label for e in entries], dtype=np.int64)

    def load(self, path: str | os.PathLike) -> np.ndarray:
        """One utterance as float64 at ``sample_rate`` (errors name the file), its silent ends cut
        when ``trim_silence_db`` is set."""
        from audioexp.data.audio import load_audio

        y = load_audio(path, self.sample_rate, self.min_seconds, self.checks).numpy().astype(np.float64)
        if self.trim_silence_db is None:
            return y
        return trim_silence(y, self.sample_rate, self.trim_silence_db, min_seconds=self.min_seconds)

    def feature_settings(self) -> dict:
        """What the corpus does to audio beyond reading it (keys cached features)."""
        return {"trim_silence_db": self.trim_silence_db}


def trim_silence(waveform: np.ndarray, sample_rate: int, top_db: float, min_seconds: float = 0.0) -> np.ndarray:
    """``waveform`` without its leading and trailing frames quieter than ``top_db`` below the
    loudest (``librosa.effects.trim``, 25 ms frames, 10 ms hop). A file that would be cut below
    ``min_seconds`` is returned whole.

    Examples
    --------
    >>> x = np.concatenate([np.zeros(8000), np.sin(np.arange(16000) / 3.0), np.zeros(8000)])
    >>> len(trim_silence(x, 16000, 40.0)) < 17000
    True
    """
    import librosa

    frame, hop = int(round(0.025 * sample_rate)), int(round(0.010 * sample_rate))
    trimmed, _ = librosa.effects.trim(waveform, top_db=top_db, frame_length=frame, hop_length=hop)
    if len(trimmed) < max(min_seconds * sample_rate, frame):
        return waveform
    return trimmed
