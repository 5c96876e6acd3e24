"""A paper's table from a run or a multirun: ours beside the paper's numbers, in its layout.

    python -m audioexp -m +experiment=asvspoof17_table1 data.root=/data/ASVspoof2017
    python -m audioexp +experiment=asvspoof17_table2 data.root=/data/ASVspoof2017

An experiment that reproduces a table holds a ``paper_table`` block (what the rows and
columns are, which metric fills a cell, the paper's numbers) and registers
:class:`PaperTableCallback` under ``hydra.callbacks``. When the run (``on_run_end``) or
the whole multirun (``on_multirun_end``) ends, the callback reads ``metrics.json`` and the
saved config of every job, fills each cell from the job whose config matches the row's and
the column's ``match``, and writes ``paper_table.file`` (markdown) into the run's or the
sweep's dir. A cell whose job failed or is missing reads "-" (the table is written anyway,
with a warning); a row without a metric (a system not built here) shows the paper's number
only.

The block (see ``conf/experiment/asvspoof17_table1.yaml``)::

    paper_table:
      file: table1.md
      title: ...
      metric: "{split}/sdfb/eer"     # the default metric of every row
      splits: [dev, eval]            # the splits shown in each cell
      scale: 100                      # metric x scale (EER as a fraction -> %)
      paper_split: eval               # the split the paper's numbers are on
      rows:                           # row id -> label, match (config key: value), metric, paper, splits
        cf: {label: "CF + D + DD", match: {table1_row: cf}, paper: {0: 20.67, 2: 14.31}}
      columns:                        # column id -> label, match (omitted: one column)
        0: {label: "no SD", match: {frontends.sdfb.num_differentiations: 0}}

``paper`` is a number (one column) or a mapping column id -> number.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from audioexp.utils.files import atomic_write_text

log = logging.getLogger(__name__)

__all__ = ["PaperTableCallback", "fill_table", "read_jobs", "render_table", "write_paper_table"]

ONE_COLUMN = "_"


def read_jobs(run_dirs: Sequence[Path]) -> list[tuple[DictConfig, dict[str, float] | None]]:
    """``(config, metrics or None)`` of each run dir (its ``.hydra/config.yaml`` and ``metrics.json``).

    The config is not resolved: only the plain values a table matches on are read (``OmegaConf.select``)."""
    jobs = []
    for d in run_dirs:
        cfg_path = Path(d) / ".hydra" / "config.yaml"
        if not cfg_path.exists():
            continue
        cfg = OmegaConf.load(cfg_path)
        metrics_path = Path(d) / "metrics.json"
        metrics = json.loads(metrics_path.read_text()) if metrics_path.exists() else None
        jobs.append((cfg, metrics))
    return jobs


def _matches(cfg: DictConfig, match: Mapping | None) -> bool:
    return all(str(OmegaConf.select(cfg, k, default=None)) == str(v) for k, v in (match or {}).items())


def fill_table(spec: Mapping, jobs: Sequence[tuple[Mapping, Mapping | None]]) -> dict[tuple[str, str], dict[str, float | None]]:
    """``(row id, column id) -> {split: value x scale or None}`` for every cell with a metric.

    Raises
    ------
    ValueError
        Two jobs match one cell (the table would silently show one of them).
    """
    columns = spec.get("columns") or {ONE_COLUMN: {}}
    splits = list(spec.get("splits") or ["eval"])
    scale = float(spec.get("scale", 1.0))
    cells: dict[tuple[str, str], dict[str, float | None]] = {}
    for rid, row in spec["rows"].items():
        metric = row.get("metric", spec.get("metric"))
        if not metric:
            continue
        for cid, col in columns.items():
            match = {**(row.get("match") or {}), **((col or {}).get("match") or {})}
            found = [m for cfg, m in jobs if _matches(cfg, match)]
            if len(found) > 1:
                raise ValueError(f"{len(found)} jobs match the cell ({rid}, {cid}) of {spec.get('file')}: {match}")
            metrics = found[0] if found else None
            values = {}
            for split in row.get("splits") or splits:  # a row may have fewer (a fusion trained on dev)
                name = str(metric).format(split=split)
                value = None if metrics is None else metrics.get(name)
                values[split] = None if value is None else scale * float(value)
            cells[(str(rid), str(cid))] = values
    return cells


def _fmt(value: float | None, digits: int) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def render_table(spec: Mapping, cells: Mapping[tuple[str, str], Mapping[str, float | None]], source: str = "") -> str:
    """Markdown: the paper's rows and columns, each cell "ours per split (paper)"."""
    columns = spec.get("columns") or {ONE_COLUMN: {"label": spec.get("column_label", "value")}}
    splits = list(spec.get("splits") or ["eval"])
    digits = int(spec.get("digits", 2))
    paper_split = spec.get("paper_split", splits[-1])
    head = " / ".join(splits)
    lines = [f"# {spec.get('title', spec.get('file', 'table'))}", ""]
    if source:
        lines += [f"Ours: {head} ({source}); the paper's {paper_split} figure in brackets.", ""]
    lines.append("| " + " | ".join([spec.get("row_label", "system")] + [str((c or {}).get("label", cid)) for cid, c in columns.items()]) + " |")
    lines.append("| --- " * (len(columns) + 1) + "|")
    for rid, row in spec["rows"].items():
        paper = row.get("paper")
        out = [str(row.get("label", rid))]
        for cid in columns:
            p = paper.get(cid, paper.get(str(cid))) if isinstance(paper, Mapping) else paper
            paper_text = f" ({_fmt(float(p), digits)})" if p is not None else ""
            values = cells.get((str(rid), str(cid)))
            if values is None:
                ours = "not built here" if not row.get("metric", spec.get("metric")) else "-"
            else:
                ours = " / ".join(_fmt(values.get(s), digits) for s in splits)
            out.append(ours + paper_text)
        lines.append("| " + " | ".join(out) + " |")
    notes = spec.get("notes")
    if notes:
        lines += ["", str(notes).strip()]
    return "\n".join(lines) + "\n"


def write_paper_table(spec: Mapping, run_dirs: Sequence[Path], out_dir: Path, source: str = "") -> Path:
    """Fill ``spec`` from ``run_dirs`` and write ``out_dir / spec.file``; warns on missing cells."""
    jobs = read_jobs(run_dirs)
    cells = fill_table(spec, jobs)
    missing = sorted(k for k, v in cells.items() if any(x is None for x in v.values()))
    if missing:
        log.warning("%s: %d cells have no result (a job failed, is missing, or lacks the metric): %s",
                    spec.get("file"), len(missing), missing)
    path = Path(out_dir) / str(spec.get("file", "paper_table.md"))
    atomic_write_text(path, render_table(spec, cells, source))
    log.info("%s written:\n%s", path, path.read_text())
    return path


def _source(config: DictConfig) -> str:
    data = config.get("data") or {}
    target = str(data.get("_target_", "")).rsplit(".", 1)[-1]
    root = str(data.get("root", ""))
    generated = "minicorpus" in root or data.get("prepare") is not None
    return f"{target} at {root}: {'generated miniature corpus, not a reproduction' if generated else 'the corpus at that root'}"


try:  # Hydra >= 1.1
    from hydra.experimental.callback import Callback as _HydraCallback
except ImportError:  # pragma: no cover
    _HydraCallback = object


class PaperTableCallback(_HydraCallback):
    """Writes the experiment's ``paper_table`` when a run or a multirun ends."""

    def on_run_end(self, config: DictConfig, **kwargs: Any) -> None:
        spec = config.get("paper_table")
        if spec:
            out = Path(config.hydra.runtime.output_dir)
            write_paper_table(OmegaConf.to_container(spec, resolve=True), [out], out, _source(config))

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        spec = config.get("paper_table")
        if not spec:
            return
        sweep = Path(config.hydra.sweep.dir)
        jobs = sorted(p for p in sweep.iterdir() if (p / ".hydra").is_dir()) if sweep.is_dir() else []
        write_paper_table(OmegaConf.to_container(spec, resolve=True), jobs, sweep, _source(config))
