"""A paper's table from a multirun: cells from the jobs whose configs match, beside the paper's numbers."""

from __future__ import annotations

import json

import numpy as np
import pytest
from omegaconf import OmegaConf

from audioexp.tasks.paper_table import fill_table, render_table, write_paper_table

SPEC = {
    "file": "t.md",
    "title": "Table 1",
    "metric": "{split}/sdfb/eer",
    "splits": ["dev", "eval"],
    "scale": 100,
    "rows": {
        "cf": {"label": "CF", "match": {"row": "cf"}, "paper": {0: 20.67, 6: 10.84}},
        "cm": {"label": "CM", "match": {"row": "cm"}, "paper": {0: 20.24, 6: 10.93}},
        "tc": {"label": "TC (B2)", "metric": None, "paper": {0: 14.89}},
    },
    "columns": {0: {"label": "no SD", "match": {"fe.k": 0}}, 6: {"label": "6 SD", "match": {"fe.k": 6}}},
}


def _jobs(tmp_path, rng):
    dirs, truth = [], {}
    for n, (row, k) in enumerate([("cf", 0), ("cf", 6), ("cm", 0)]):  # (cm, 6) failed: no metrics
        d = tmp_path / str(n)
        (d / ".hydra").mkdir(parents=True)
        OmegaConf.save(OmegaConf.create({"row": row, "fe": {"k": k}, "x": "${now:%Y}"}), d / ".hydra" / "config.yaml")
        m = {"dev/sdfb/eer": float(rng.uniform()), "eval/sdfb/eer": float(rng.uniform())}
        (d / "metrics.json").write_text(json.dumps(m))
        truth[(row, str(k))] = m
        dirs.append(d)
    d = tmp_path / "3"
    (d / ".hydra").mkdir(parents=True)
    OmegaConf.save(OmegaConf.create({"row": "cm", "fe": {"k": 6}}), d / ".hydra" / "config.yaml")
    dirs.append(d)
    return dirs, truth


def test_cells_are_the_matching_jobs_metrics_and_missing_ones_are_marked(tmp_path):
    rng = np.random.default_rng(0)
    dirs, truth = _jobs(tmp_path, rng)
    path = write_paper_table(SPEC, dirs, tmp_path, source="generated")
    text = path.read_text()
    from audioexp.tasks.paper_table import read_jobs

    cells = fill_table(SPEC, read_jobs(dirs))
    for (row, col), m in truth.items():
        assert cells[(row, col)]["dev"] == pytest.approx(100 * m["dev/sdfb/eer"], abs=1e-12)
        assert cells[(row, col)]["eval"] == pytest.approx(100 * m["eval/sdfb/eer"], abs=1e-12)
    assert cells[("cm", "6")] == {"dev": None, "eval": None}
    lines = [ln for ln in text.splitlines() if ln.startswith("| ")]
    assert lines[0] == "| system | no SD | 6 SD |"
    cf = truth[("cf", "0")]
    assert lines[2] == (f"| CF | {100 * cf['dev/sdfb/eer']:.2f} / {100 * cf['eval/sdfb/eer']:.2f} (20.67) | "
                        f"{100 * truth[('cf', '6')]['dev/sdfb/eer']:.2f} / {100 * truth[('cf', '6')]['eval/sdfb/eer']:.2f} (10.84) |")
    assert lines[3].endswith("| - / - (10.93) |")
    assert lines[4] == "| TC (B2) | not built here (14.89) | not built here |"
    assert "generated" in text


def test_two_jobs_for_one_cell_is_an_error(tmp_path):
    rng = np.random.default_rng(1)
    dirs, _ = _jobs(tmp_path, rng)
    from audioexp.tasks.paper_table import read_jobs

    jobs = read_jobs(dirs)
    with pytest.raises(ValueError, match=r"2 jobs match the cell \(cf, 0\)"):
        fill_table(SPEC, jobs + jobs[:1])
    one_column = {**SPEC, "columns": None, "rows": {"cf": {"match": {"row": "cf", "fe.k": 6}, "paper": 10.84}}}
    text = render_table(one_column, fill_table(one_column, jobs))
    assert text.endswith("| system | value |\n| --- | --- |\n| cf | " + " / ".join(
        f"{100 * jobs[1][1][f'{s}/sdfb/eer']:.2f}" for s in ("dev", "eval")) + " (10.84) |\n")
