"""Read an offline W&B run directory without syncing it.

W&B (0.2x+) writes each run's records to ``run-<id>.wandb``: a 7-byte header
(``:W&B``, magic ``0xBEE1``, version) followed by LevelDB-log framed records in 32 KiB
blocks (4-byte checksum, 2-byte length, 1-byte type: full, first, middle, last), each
record a ``wandb_internal_pb2.Record`` protobuf. This reader lets tests and users check
what an offline run holds (metrics, config, group) before ``wandb sync``.
"""

from __future__ import annotations

import glob
import json
import os
import struct
from collections.abc import Iterator
from pathlib import Path

_BLOCK = 32768
_HEADER = 7
_FULL, _FIRST, _MIDDLE, _LAST = 1, 2, 3, 4


def iter_record_bytes(path: str | os.PathLike) -> Iterator[bytes]:
    """Yield the raw protobuf bytes of every record in a ``.wandb`` file."""
    data = Path(path).read_bytes()
    if data[:4] != b":W&B":
        raise ValueError(f"{path} is not a W&B transaction log (bad header {data[:4]!r})")
    pos = _HEADER
    pending = bytearray()
    while pos + _HEADER <= len(data):
        left_in_block = _BLOCK - pos % _BLOCK
        if left_in_block < _HEADER:  # block trailer: zero padding
            pos += left_in_block
            continue
        _checksum, length, kind = struct.unpack_from("<IHB", data, pos)
        pos += _HEADER
        chunk = data[pos : pos + length]
        pos += length
        if kind == _FULL:
            yield bytes(chunk)
        elif kind == _FIRST:
            pending = bytearray(chunk)
        elif kind == _MIDDLE:
            pending += chunk
        elif kind == _LAST:
            pending += chunk
            yield bytes(pending)
            pending = bytearray()
        elif kind == 0 and length == 0:  # pre-allocated zeros at the end of a block
            pos += _BLOCK - pos % _BLOCK if pos % _BLOCK else 0
        else:
            raise ValueError(f"{path}: corrupt record framing at byte {pos - length - _HEADER}")


def _key(item) -> str:
    return item.key or "/".join(item.nested_key)


def read_offline_run(run_dir: str | os.PathLike) -> dict:
    """Summarise an offline run dir (``.../wandb/offline-run-*``) or its ``.wandb`` file.

    Returns
    -------
    dict with ``history`` (list of dicts, one per logged step), ``summary`` (last value of
    each key, as W&B's run summary), ``config`` (dict), ``group``, ``name`` (display name),
    ``run_id`` and ``media``
    (files under ``files/media``).
    """
    from wandb.proto import wandb_internal_pb2 as pb

    run_dir = Path(run_dir)
    files = [run_dir] if run_dir.suffix == ".wandb" else sorted(run_dir.glob("run-*.wandb"))
    if not files:
        raise FileNotFoundError(f"no run-*.wandb file in {run_dir}")
    out: dict = {"history": [], "summary": {}, "config": {}, "group": None, "name": None, "run_id": None}
    for raw in iter_record_bytes(files[0]):
        record = pb.Record()
        record.ParseFromString(raw)
        kind = record.WhichOneof("record_type")
        if kind == "history":
            row = {_key(i): json.loads(i.value_json) for i in record.history.item}
            out["history"].append(row)
            out["summary"].update({k: v for k, v in row.items() if not k.startswith("_")})
        elif kind == "summary":
            out["summary"].update({_key(i): json.loads(i.value_json) for i in record.summary.update})
        elif kind == "config":
            out["config"].update({_key(i): json.loads(i.value_json) for i in record.config.update})
        elif kind == "run":
            out["group"] = record.run.run_group or None
            out["name"] = record.run.display_name or None
            out["run_id"] = record.run.run_id
    media_root = files[0].parent / "files" / "media"
    out["media"] = sorted(os.path.relpath(p, media_root) for p in glob.glob(f"{media_root}/**/*", recursive=True) if os.path.isfile(p))
    return out


def find_offline_runs(save_dir: str | os.PathLike) -> list[Path]:
    """Offline run dirs under ``save_dir/wandb``."""
    return sorted(Path(save_dir).glob("wandb/offline-run-*"))
