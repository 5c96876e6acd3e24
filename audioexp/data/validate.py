"""Checking a corpus's audio before anything trains on it.

Every corpus's ``prepare_data`` hands its files, split by split, to :func:`check_corpus_audio`:

1. *Facts* of each file are read without decoding it (:func:`probe_audio`: soundfile's
   ``info`` plus the WAV ``data`` chunk's declared size, so a truncated file shows) and cached
   beside the corpus table, keyed by the file's size and modification time; only new or
   changed files are read again. ``data.validate=full`` also decodes every file once
   (NaN/Inf samples, digital silence, near-silence, a FLAC that stops early).
2. The facts are judged by the corpus's :class:`AudioChecks` (minimum and maximum length,
   sample rate policy, silence threshold): the judgement is not cached, so changing a
   threshold needs no new scan.
3. One summary table per split is logged; bad files stop the run before training with the
   list (written in full to a file beside the cache), or, with ``data.skip_bad_files=true``,
   are left out of every split and counted.

At read time, :func:`check_waveform` applies the same checks to what was decoded, whatever
the mode, so that a file that changed after ``prepare`` still raises with its name.
"""

from __future__ import annotations

import csv
import logging
import math
import os
import struct
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import soundfile as sf

from audioexp.utils.files import atomic_open, atomic_write_json

log = logging.getLogger(__name__)

__all__ = [
    "AudioChecks",
    "AudioFacts",
    "BadAudioError",
    "CorpusCheck",
    "MetadataError",
    "PROBLEM_KINDS",
    "VALIDATE_MODES",
    "audit_audio",
    "check_corpus_audio",
    "check_waveform",
    "format_problems",
    "metadata_problems",
    "probe_audio",
    "signal_facts",
    "wav_data_frames",
]

#: ``data.validate``: read each file's header at prepare, or also decode every file once.
VALIDATE_MODES = ("header", "full")
#: What can be wrong with an audio file, in the order the summary table lists them.
PROBLEM_KINDS = ("missing", "unreadable", "empty", "truncated", "too_short", "too_long", "sample_rate",
                 "nonfinite", "silent")
#: How many problems an error message lists before pointing at the full list.
MAX_LISTED = 20


class BadAudioError(ValueError):
    """Audio files that cannot be used, found at prepare: the message lists them."""


class MetadataError(ValueError):
    """Inconsistent corpus metadata (duplicates, a file in two splits or with two labels,
    classes never trained on), found at prepare: the message lists every case."""


# --- facts of one file ---------------------------------------------------------------------
@dataclass
class AudioFacts:
    """What a file is, read from its header (and, when ``scanned``, from its samples).

    ``frames`` is what the header declares; ``data_frames`` what the file's bytes hold (fewer
    when it was truncated). ``peak`` and ``rms_db`` (dB re full scale, over all channels)
    and ``nonfinite`` (NaN/Inf samples) are known only after a decode (``scanned``).
    ``error`` is why the file could not be read ("" when it could).
    """

    path: str
    size: int = -1
    mtime_ns: int = -1
    format: str = ""
    subtype: str = ""
    rate: int = 0
    channels: int = 0
    frames: int = 0
    data_frames: int = 0
    scanned: bool = False
    peak: float = math.nan
    rms_db: float = math.nan
    nonfinite: int = 0
    error: str = ""

    @property
    def seconds(self) -> float:
        return self.frames / self.rate if self.rate else 0.0


FACT_COLUMNS = tuple(AudioFacts.__dataclass_fields__)


#: WAVE format tags read without soundfile, and the subtype name of each sample width.
_WAV_SUBTYPES = {1: {8: "PCM_U8", 16: "PCM_16", 24: "PCM_24", 32: "PCM_32"}, 3: {32: "FLOAT", 64: "DOUBLE"}}


@dataclass(frozen=True)
class WavHeader:
    """What a plain PCM or float RIFF/WAVE header says (see :func:`read_wav_header`)."""

    subtype: str
    channels: int
    rate: int
    declared_frames: int
    present_frames: int


def read_wav_header(path: str | os.PathLike, size: int | None = None) -> WavHeader | None:
    """The ``fmt `` and ``data`` chunks of a RIFF/WAVE file, from its first bytes.

    ``declared_frames`` is what the ``data`` chunk header says, ``present_frames`` what the
    file holds after the chunk start: a truncated file has fewer present than declared
    (soundfile reports only the frames present, so a cut WAV is invisible to it). None for
    anything but plain integer PCM or float WAVE (including WAVE_FORMAT_EXTENSIBLE of
    those), a header that does not add up, or a streaming placeholder size (0 or
    0xFFFFFFFF): such files are left to soundfile.
    """
    size = os.path.getsize(path) if size is None else size
    with open(path, "rb") as handle:
        head = handle.read(4096)
        if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
            return None
        fmt = None
        offset = 12
        while offset + 8 <= size:
            if offset + 8 > len(head):
                handle.seek(offset)
                head = head[:offset] + handle.read(8 + 40)  # a chunk beyond the first block
            ident, length = head[offset:offset + 4], struct.unpack("<I", head[offset + 4:offset + 8])[0]
            if ident == b"fmt ":
                fmt = head[offset + 8:offset + 8 + min(length, 40)]
            elif ident == b"data":
                if fmt is None or len(fmt) < 16 or length in (0, 0xFFFFFFFF):
                    return None
                tag, channels, rate, _, block_align, bits = struct.unpack("<HHIIHH", fmt[:16])
                if tag == 0xFFFE and len(fmt) >= 26:  # extensible: the sub-format GUID starts with the tag
                    tag = struct.unpack("<H", fmt[24:26])[0]
                subtype = _WAV_SUBTYPES.get(tag, {}).get(bits)
                if subtype is None or not channels or not rate or block_align != channels * bits // 8:
                    return None
                present = min(max(size - offset - 8, 0), length)
                return WavHeader(subtype, channels, rate, length // block_align, present // block_align)
            offset += 8 + length + (length & 1)
    return None


def wav_data_frames(path: str | os.PathLike) -> tuple[int, int] | None:
    """``(declared, present)`` frames of a plain WAV's ``data`` chunk (:func:`read_wav_header`)."""
    header = read_wav_header(path)
    return None if header is None else (header.declared_frames, header.present_frames)


def signal_facts(data: np.ndarray) -> tuple[float, float, int]:
    """``(peak, rms_db, nonfinite)`` of decoded samples (any shape), over the finite samples.

    ``rms_db`` is ``20 log10(rms)`` re full scale (-inf for digital silence).

    >>> signal_facts(np.array([0.5, -0.5, np.nan]))
    (0.5, -6.020599913279624, 1)
    """
    finite = np.isfinite(data)
    nonfinite = int(data.size - np.count_nonzero(finite))
    values = data[finite] if nonfinite else data
    if values.size == 0:
        return 0.0, -math.inf, nonfinite
    values = values.astype(np.float64, copy=False)
    peak = float(np.max(np.abs(values)))
    rms = math.sqrt(float(np.mean(np.square(values))))
    return peak, (20.0 * math.log10(rms) if rms > 0 else -math.inf), nonfinite


def probe_audio(path: str | os.PathLike, full: bool = False) -> AudioFacts:
    """The :class:`AudioFacts` of one file; never raises (a failure is kept in ``error``).

    Without ``full`` nothing is decoded: a plain PCM or float WAV's header is parsed here
    (:func:`read_wav_header`: its declared size shows a truncated file); other files are
    opened with soundfile and sought to their last frame (a truncated FLAC cannot seek
    there). With ``full`` every sample is decoded once (soundfile).
    """
    facts = AudioFacts(os.fspath(path))
    try:
        st = os.stat(path)
    except OSError as err:
        facts.error = f"missing ({err.strerror})"
        return facts
    facts.size, facts.mtime_ns = st.st_size, st.st_mtime_ns
    try:
        header = read_wav_header(path, st.st_size)
    except OSError as err:
        facts.error = f"cannot be read ({err})"
        return facts
    if header is not None and not full:
        facts.format, facts.subtype, facts.rate, facts.channels = "WAV", header.subtype, header.rate, header.channels
        facts.frames, facts.data_frames = header.declared_frames, header.present_frames
        return facts
    try:
        with sf.SoundFile(os.fspath(path)) as f:
            facts.format, facts.subtype = f.format, f.subtype
            facts.rate, facts.channels, facts.frames = f.samplerate, f.channels, f.frames
            facts.data_frames = f.frames
            if header is not None:
                facts.frames, facts.data_frames = max(header.declared_frames, f.frames), min(header.present_frames, f.frames)
            elif f.frames > 0 and not full:
                f.seek(f.frames - 1)
                if len(f.read(1)) < 1:
                    facts.data_frames = f.frames - 1
            if full:
                data = f.read(dtype="float32", always_2d=True) if f.seekable() else f.read(always_2d=True)
                facts.data_frames = min(facts.data_frames, data.shape[0])
                facts.peak, facts.rms_db, facts.nonfinite = signal_facts(data)
                facts.scanned = True
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError, OSError) as err:
        facts.error = f"cannot be decoded as audio ({err})"
    return facts


# --- judging facts -------------------------------------------------------------------------
@dataclass(frozen=True)
class AudioChecks:
    """What a corpus accepts. One instance per corpus, used at prepare and at read time.

    Parameters
    ----------
    sample_rate : int
        The experiment's rate (Hz).
    min_seconds, max_seconds : float
        Shorter or longer files are bad (``max_seconds`` None: no limit).
    resample : {"any", "down", "never"}
        Files at another rate: resampled (said once) whatever the rate; resampled only from
        higher rates (a lower rate is refused: upsampling invents no bandwidth, the upper
        band of every feature would be empty); or refused.
    silence_db : float, optional
        Audio whose RMS over the whole file is below this (dB re full scale) is near-silent
        and bad; digital silence (all zeros) always is. None: only digital silence.
    """

    sample_rate: int
    min_seconds: float = 0.0
    max_seconds: float | None = None
    resample: str = "any"
    silence_db: float | None = -60.0

    def __post_init__(self) -> None:
        if self.resample not in ("any", "down", "never"):
            raise ValueError(f"resample must be 'any', 'down' or 'never', got {self.resample!r}")
        if self.max_seconds is not None and self.max_seconds <= self.min_seconds:
            raise ValueError(f"max_seconds={self.max_seconds} must exceed min_seconds={self.min_seconds}")

    def rate_problem(self, rate: int) -> str | None:
        if rate == self.sample_rate or self.resample == "any" or (self.resample == "down" and rate > self.sample_rate):
            return None
        why = "lower than" if rate < self.sample_rate else "not"
        return (f"is at {rate} Hz, {why} the experiment's {self.sample_rate} Hz (data.resample={self.resample}: "
                "converting it would change the experiment)")

    def length_problem(self, frames: int, rate: int) -> tuple[str, str] | None:
        seconds = frames / rate if rate else 0.0
        if seconds < self.min_seconds:
            return "too_short", f"is {seconds:.3f} s long, shorter than the minimum {self.min_seconds} s"
        if self.max_seconds is not None and seconds > self.max_seconds:
            return "too_long", f"is {seconds:.1f} s long, longer than data.max_seconds={self.max_seconds}"
        return None

    def signal_problem(self, peak: float, rms_db: float, nonfinite: int) -> tuple[str, str] | None:
        if nonfinite:
            return "nonfinite", f"contains {nonfinite} NaN or infinite samples"
        if peak == 0.0:
            return "silent", "is digitally silent (every sample is 0)"
        if self.silence_db is not None and rms_db < self.silence_db:
            return "silent", f"is near-silent (RMS {rms_db:.1f} dBFS, below data.silence_db={self.silence_db})"
        return None

    def judge(self, facts: AudioFacts) -> tuple[str, str] | None:
        """``(kind, what is wrong)`` for a bad file, None for a good one."""
        if facts.error:
            return ("missing" if facts.error.startswith("missing") else "unreadable"), facts.error
        if facts.frames == 0 or facts.channels == 0:
            return "empty", "has no samples (empty audio)"
        if facts.data_frames < facts.frames:
            return "truncated", (f"is truncated: its header declares {facts.frames} frames "
                                 f"({facts.frames / facts.rate:.2f} s), the file holds {facts.data_frames}")
        rate = self.rate_problem(facts.rate)
        if rate:
            return "sample_rate", rate
        length = self.length_problem(facts.frames, facts.rate)
        if length:
            return length
        if facts.scanned:
            return self.signal_problem(facts.peak, facts.rms_db, facts.nonfinite)
        return None


def check_waveform(checks: AudioChecks, path: str | os.PathLike, data: np.ndarray, rate: int,
                   declared_frames: int | None = None) -> tuple[str, str] | None:
    """The read-time checks on decoded samples ``data`` (frames, channels) of ``path``."""
    if data.shape[0] == 0:
        return "empty", "has no samples (empty audio)"
    if declared_frames is not None and data.shape[0] < declared_frames:
        return "truncated", (f"is truncated: its header declares {declared_frames} frames "
                             f"({declared_frames / rate:.2f} s), the file holds {data.shape[0]}")
    problem = checks.rate_problem(rate)
    if problem:
        return "sample_rate", problem
    return checks.length_problem(data.shape[0], rate) or checks.signal_problem(*signal_facts(data))


# --- the cached facts of a corpus ------------------------------------------------------------
def _read_facts_cache(path: Path) -> dict[str, AudioFacts]:
    facts: dict[str, AudioFacts] = {}
    if not path.exists():
        return facts
    types = {name: f.type for name, f in AudioFacts.__dataclass_fields__.items()}
    try:
        with open(path, newline="", encoding="utf-8") as handle:
            reader = csv.reader(handle)
            if next(reader, None) != list(FACT_COLUMNS):
                raise ValueError("unexpected header")
            for lineno, row in enumerate(reader, start=2):
                if len(row) != len(FACT_COLUMNS):
                    raise ValueError(f"line {lineno} has {len(row)} fields")
                values = {}
                for name, value in zip(FACT_COLUMNS, row):
                    kind = types[name]
                    values[name] = (int(value) if kind == "int" else float(value) if kind == "float"
                                    else value == "1" if kind == "bool" else value)
                facts[values["path"]] = AudioFacts(**values)
    except (ValueError, UnicodeDecodeError, csv.Error) as err:
        log.warning("the audio facts cache %s is unreadable (%s): reading every file again", path, err)
        return {}
    return facts


def _write_facts_cache(path: Path, facts: Iterable[AudioFacts]) -> None:
    with atomic_open(path, newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(FACT_COLUMNS)
        for f in facts:
            writer.writerow([int(v) if isinstance(v, bool) else v for v in (getattr(f, c) for c in FACT_COLUMNS)])


def audit_audio(paths: Sequence[str], cache_file: str | os.PathLike | None = None, full: bool = False,
                workers: int = 1, progress: bool = True) -> dict[str, AudioFacts]:
    """The facts of every file in ``paths``, from ``cache_file`` where the file is unchanged.

    A cached row is reused when the file's size and modification time (ns) are the ones
    recorded (and, with ``full``, when it was decoded); every other file is probed again,
    ``workers`` at a time (reading headers is I/O-bound). A changed, truncated or unreadable
    cache is rebuilt with one warning.
    """
    cache_file = Path(cache_file) if cache_file else None
    cached = _read_facts_cache(cache_file) if cache_file else {}
    result: dict[str, AudioFacts] = {}
    todo = []
    for p in dict.fromkeys(paths):
        old = cached.get(p)
        if old is not None and not old.error and (old.scanned or not full):
            try:
                st = os.stat(p)
            except OSError:
                st = None
            if st is not None and st.st_size == old.size and st.st_mtime_ns == old.mtime_ns:
                result[p] = old
                continue
        todo.append(p)
    if todo:
        if progress and len(todo) > 1000:
            log.info("reading the %s of %d audio files", "samples" if full else "headers", len(todo))
        if workers <= 1 or len(todo) < 256:
            probed = map(lambda p: probe_audio(p, full), todo)
        else:  # for file systems where each open waits on the network
            pool = ThreadPoolExecutor(max_workers=workers)
            probed = pool.map(lambda p: probe_audio(p, full), todo, chunksize=256)
        for facts in probed:
            result[facts.path] = facts
        if workers > 1 and len(todo) >= 256:
            pool.shutdown()
    if cache_file is not None and (todo or len(cached) != len(result)):
        _write_facts_cache(cache_file, (result[p] for p in dict.fromkeys(paths)))
    return result


# --- metadata --------------------------------------------------------------------------------
def metadata_problems(split_files: Mapping[str, Sequence[tuple]], *, train_split: str | None = "train") -> list[str]:
    """What is inconsistent in a corpus's file lists: one message per case.

    ``split_files`` maps each split to ``(path, label[, where])`` entries: label None where
    the split has no class labels (e.g. verification test files), ``where`` the list file and
    line that named the file (quoted in the messages). Found: a file listed twice in a split,
    a file in two splits, a file with two labels, and (when ``train_split`` is given) a class
    that evaluation splits hold but the training split does not.

    >>> metadata_problems({"train": [("a", "x"), ("a", "x")], "test": [("a", "x"), ("b", "y")]})[:2]
    ["'a' is listed 2 times in train", "'a' is in more than one split: train, test"]
    """
    problems = []
    where: dict[str, list[str]] = {}
    labels: dict[str, dict[str, list[str]]] = {}
    for split, files in split_files.items():
        seen: dict[str, list[str]] = {}
        for entry in files:
            p, label, line = entry[0], entry[1], (entry[2] if len(entry) > 2 else "")
            seen.setdefault(p, []).append(line)
            if split not in where.setdefault(p, []):
                where[p].append(split)
            if label is not None:
                labels.setdefault(p, {}).setdefault(str(label), []).append(line)
        for p, lines in seen.items():
            if len(lines) > 1:
                at = f" ({', '.join(lines)})" if any(lines) else ""
                problems.append(f"{p!r} is listed {len(lines)} times in {split}{at}")
    problems += [f"{p!r} is in more than one split: {', '.join(s)}" for p, s in where.items() if len(s) > 1]
    for p, by_label in labels.items():
        if len(by_label) > 1:
            named = ", ".join(f"{label}" + (f" ({', '.join(filter(None, lines))})" if any(lines) else "")
                              for label, lines in sorted(by_label.items()))
            problems.append(f"{p!r} has more than one label: {named}")
    if train_split is not None and train_split in split_files:
        trained = {str(e[1]) for e in split_files[train_split] if e[1] is not None}
        for split, files in split_files.items():
            unseen = sorted({str(e[1]) for e in files if e[1] is not None and str(e[1]) not in trained})
            if split != train_split and unseen:
                problems.append(f"classes {unseen} of {split} have no {train_split} files: a model cannot learn them")
    return problems


def format_problems(problems: Sequence[str], list_file: Path | None = None, limit: int = MAX_LISTED) -> str:
    """The first ``limit`` problems, one per line, and where the full list is."""
    lines = [f"  {p}" for p in problems[:limit]]
    if len(problems) > limit:
        lines.append(f"  ... and {len(problems) - limit} more" + (f" (all in {list_file})" if list_file else ""))
    return "\n".join(lines)


# --- one corpus, every split -------------------------------------------------------------------
@dataclass
class CorpusCheck:
    """The outcome of :func:`check_corpus_audio`: per split, how many files and what was wrong.

    ``bad`` maps each bad path to ``(kind, message)``; ``converted`` counts files that are
    resampled or down-mixed at read time (said once in the log, not bad).
    """

    files: dict[str, int] = field(default_factory=dict)
    problems: dict[str, Counter] = field(default_factory=dict)
    converted: dict[str, Counter] = field(default_factory=dict)
    bad: dict[str, tuple[str, str]] = field(default_factory=dict)

    def skipped(self, split: str) -> int:
        return sum(self.problems.get(split, Counter()).values())

    def table(self) -> str:
        """The summary: a row per split, a column per problem kind found (and conversions)."""
        kinds = [k for k in PROBLEM_KINDS if any(c[k] for c in self.problems.values())]
        conv = sorted({k for c in self.converted.values() for k in c})
        header = ["split", "files", "ok", *kinds, *conv]
        rows = [[split, n, n - self.skipped(split), *(self.problems[split][k] for k in kinds),
                 *(self.converted[split][k] for k in conv)] for split, n in self.files.items()]
        widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
        return "\n".join("  " + "  ".join(str(v).rjust(w) for v, w in zip(r, widths)) for r in [header, *rows])

    def summary(self) -> dict[str, int]:
        """``{split}/files`` and ``{split}/skipped_files`` (what the run's metrics record)."""
        out = {}
        for split, n in self.files.items():
            out[f"{split}/files"] = n
            out[f"{split}/skipped_files"] = self.skipped(split)
        return out


def check_corpus_audio(
    name: str,
    split_files: Mapping[str, Sequence[str]],
    checks: AudioChecks,
    cache_file: str | os.PathLike | None,
    mode: str = "header",
    skip_bad_files: bool = False,
    workers: int | None = None,
) -> CorpusCheck:
    """Read and judge every file of every split; log the summary; stop on bad files.

    Parameters
    ----------
    name : str
        The corpus, for messages.
    split_files : mapping
        Split -> absolute paths.
    checks : AudioChecks
    cache_file : path, optional
        Where the facts are cached (``.csv``); the full list of bad files is written beside
        it (``.bad.txt``) when there are any.
    mode : {"header", "full"}
    skip_bad_files : bool
        Return the bad files (to be left out and counted) instead of raising.
    workers : int, optional
        Threads reading headers (default ``AUDIOEXP_SCAN_WORKERS``, else 1: on a local disk
        one thread is fastest, bench/bench_header_scan.py; on a network file system, where
        each open waits, 8-32 help).

    Raises
    ------
    BadAudioError
        Bad files and ``skip_bad_files`` off: the first ones, with what is wrong, and the
        summary table.
    """
    if mode not in VALIDATE_MODES:
        raise ValueError(f"data.validate must be one of {VALIDATE_MODES}, got {mode!r}")
    all_paths = [p for files in split_files.values() for p in files]
    workers = workers or int(os.environ.get("AUDIOEXP_SCAN_WORKERS", "1"))
    facts = audit_audio(all_paths, cache_file, full=mode == "full", workers=workers)
    report = CorpusCheck()
    for split, files in split_files.items():
        problems, converted = Counter(), Counter()
        for p in files:
            f = facts[p]
            verdict = checks.judge(f)
            if verdict is not None:
                problems[verdict[0]] += 1
                report.bad[p] = verdict
                continue
            if f.rate != checks.sample_rate:
                converted[f"resampled_from_{f.rate}"] += 1
            if f.channels > 1:
                converted[f"downmixed_{f.channels}ch"] += 1
        report.files[split] = len(files)
        report.problems[split] = problems
        report.converted[split] = converted
    log.info("%s audio (data.validate=%s):\n%s", name, mode, report.table())
    if report.bad:
        lines = [f"{p}: {message}" for p, (_, message) in report.bad.items()]
        list_file = Path(cache_file).with_suffix(".bad.txt") if cache_file else None
        if list_file is not None:
            with atomic_open(list_file) as handle:
                handle.write("\n".join(lines) + "\n")
        if not skip_bad_files:
            raise BadAudioError(
                f"{name}: {len(report.bad)} bad audio file(s), found before training:\n"
                f"{format_problems(lines, list_file)}\n{report.table()}\n"
                "Fix or remove them, or set data.skip_bad_files=true to leave them out (they are counted "
                "in the summary and in the run's metrics).")
        log.warning("%s: leaving out %d bad audio file(s) (data.skip_bad_files=true); first: %s",
                    name, len(report.bad), lines[0])
    return report


def write_check_summary(path: str | os.PathLike, report: CorpusCheck) -> None:
    """The per-split counts of a check as JSON (read back by ``setup`` on every rank)."""
    atomic_write_json(path, {"summary": report.summary(), "bad": sorted(report.bad)})
