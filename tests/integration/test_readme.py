"""Every command in the README's code blocks runs, as written, from a fresh working directory.

The README is the interface: each ``python -m audioexp ...``, ``audioexp ...`` and
``make ...`` line of its ``bash`` blocks is a test case (adding a line adds a test), run in
README order in one temporary working directory (so ``DATE`` can name a run made by an
earlier line). A ``yaml`` block whose second line is ``# saved as PATH`` is written to PATH
there first. What is changed, and only this:

- a line that trains gets ``+debug=fdr`` appended (one batch of each stage; the same code
  path), or ``+debug=limit`` with DDP (``fdr`` uses one device), except a line that continues
  a run (``ckpt_path=``), which runs as written; an Optuna sweep also
  ``hydra.sweeper.n_trials=2``;
- ``DATE`` becomes the newest run folder there with a checkpoint, ``/data/fm`` a generated
  FM corpus;
- ``make X`` runs as ``make -C <checkout> X``; a line with ``make test`` is this suite itself
  (not run again); ``make lock`` (needs the package index) and ``make clean`` (would delete
  the venv this suite runs in) are checked with ``make -n``;
- ``python -m audioexp`` lines that start no processes of their own (no DDP, no submitit)
  call the module's entry point, ``audioexp.__main__.main``, in this process (the same
  function ``python -m`` calls, without 6-8 s of imports per line);
- a line that needs more GPUs than this machine has, or SLURM where ``sbatch`` is absent, is
  composed and resolved instead (``--cfg all --resolve``, sweep lists cut to one value).

``make demo`` must also print a test accuracy of at least 0.9, and the sweep, Optuna,
submitit and DDP lines must leave the job dirs, study and single run dir they promise.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from tests.conftest import ROOT

README = ROOT / "README.md"
VENV_BIN = Path(sys.executable).parent
TRAIN_TIMEOUT_S = 600
# make targets checked with `make -n`: `lock` needs the package index, `clean` would delete
# the venv this suite runs in
DRY_RUN_TARGETS = {"lock", "clean"}


@dataclass(frozen=True)
class ReadmeCommand:
    number: int
    line: str       # as written (without its trailing comment)

    @property
    def words(self) -> list[str]:
        return shlex.split(self.line)

    @property
    def is_make(self) -> bool:
        return self.words[0] == "make"

    @property
    def runs_audioexp(self) -> bool:
        """``python -m audioexp`` or the console script (not ``audioexp.minicorpus``)."""
        w = self.words
        return w[0] == "audioexp" or w[:3] == ["python", "-m", "audioexp"]

    @property
    def args(self) -> list[str]:
        """The words after ``python -m audioexp`` / ``audioexp``."""
        return self.words[1:] if self.words[0] == "audioexp" else self.words[3:]

    @property
    def is_multirun(self) -> bool:
        return self.runs_audioexp and any(a in ("-m", "--multirun") for a in self.args)

    @property
    def trains(self) -> bool:
        w = self.words
        return self.runs_audioexp and not any(a.startswith(("--cfg", "--help", "--info")) for a in w) and not any(
            a in ("task=evaluate", "task=embed", "task=predict", "task=shards") for a in w)

    def gpus_needed(self) -> int:
        args = dict(a.split("=", 1) for a in self.words if "=" in a and not a.startswith("-"))
        trainer = args.get("trainer")
        if trainer == "gpu":
            return int(args.get("trainer.devices", 1))
        if trainer == "ddp":
            return int(args.get("trainer.devices", 2)) * int(args.get("trainer.num_nodes", 1))
        return 0


def _strip_comment(line: str) -> str:
    """The command without its trailing ``# ...`` comment (shell rules: quotes protect ``#``)."""
    lexer = shlex.shlex(line, posix=True, punctuation_chars=False)
    lexer.whitespace_split = True
    lexer.commenters = "#"
    return " ".join(shlex.quote(w) if re.search(r"[^\w@%+=:,./-]", w) else w for w in lexer)


def readme_blocks(text: str) -> list[tuple[str, list[str]]]:
    """``(language, lines)`` of every fenced code block."""
    blocks, lang, lines = [], None, []
    for raw in text.splitlines():
        fence = re.match(r"^```(\w*)\s*$", raw)
        if fence and lang is None:
            lang, lines = fence.group(1), []
        elif fence:
            blocks.append((lang, lines))
            lang = None
        elif lang is not None:
            lines.append(raw)
    return blocks


def readme_commands(text: str) -> list[ReadmeCommand]:
    commands = []
    for lang, lines in readme_blocks(text):
        if lang not in ("bash", "sh", "shell"):
            continue
        for raw in lines:
            line = _strip_comment(raw.strip())
            if re.match(r"^(python -m audioexp|audioexp|make)\b", line):
                commands.append(ReadmeCommand(len(commands), line))
    return commands


def readme_files(text: str) -> dict[str, str]:
    """``yaml`` blocks that say where they are saved (second line ``# saved as PATH``)."""
    files = {}
    for lang, lines in readme_blocks(text):
        if lang == "yaml" and len(lines) > 1 and (m := re.match(r"^# saved as (\S+)$", lines[1])):
            files[m.group(1)] = "\n".join(lines) + "\n"
    return files


COMMANDS = readme_commands(README.read_text())

# (the lines run in order, on one worker under `pytest -n 2 --dist loadfile`: a line continues
# the run an earlier one made)


def test_readme_lists_the_documented_commands():
    lines = [c.line for c in COMMANDS]
    assert "make demo" in lines and "make test" in lines
    for needed in ("-m +experiment=demo seed=1,2", "+hparams_search=demo_optuna", "hydra/launcher=submitit_local",
                   "trainer=ddp_cpu", "+launcher=slurm", "--config-dir", "task=evaluate", "ckpt_path="):
        assert any(needed in line for line in lines), needed


def test_comment_stripping_keeps_quoted_hashes():
    assert _strip_comment("make demo   # installs") == "make demo"
    assert _strip_comment("python -m audioexp name='a#b'  # c") == "python -m audioexp 'name=a#b'"


@pytest.fixture(scope="module")
def workdir(tmp_path_factory, fm_corpus) -> Path:
    """An empty working directory outside the checkout, with the README's config files."""
    work = tmp_path_factory.mktemp("readme")
    for path, content in readme_files(README.read_text()).items():
        (work / path).parent.mkdir(parents=True, exist_ok=True)
        (work / path).write_text(content)
    return work


def _env(root: Path | None = None) -> dict[str, str]:
    """The user's environment with no AUDIOEXP_* settings (``root``: AUDIOEXP_ROOT, for make)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AUDIOEXP_")}
    env.update(PATH=f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}", WANDB_MODE="offline", WANDB_SILENT="true",
               HYDRA_FULL_ERROR="1")
    if root is not None:
        env["AUDIOEXP_ROOT"] = str(root)
    return env


#: What a finished run dir holds, by task: a checkpoint (train), fitted systems (fit_gmm), a probe.
RUN_MARKERS = ("checkpoints/last.ckpt", "countermeasure/systems.json", "probe/probe.json")


def _newest(pattern_dir: Path) -> Path:
    """The newest finished run dir there (what `DATE` stands for): one with a checkpoint, or
    a fit_gmm run's fitted systems, or a probe run's saved probe."""
    dirs = sorted({p.parent.parent for m in RUN_MARKERS for p in pattern_dir.glob(f"*/{m}")}) if pattern_dir.is_dir() else []
    if not dirs:
        pytest.skip(f"DATE: no finished run under {pattern_dir} (an earlier README line makes it; "
                    "run the whole module)")
    return dirs[-1]


def _substitute(words: list[str], workdir: Path, fm_corpus: Path) -> list[str]:
    out = []
    for word in words:
        if "DATE" in word and "=" not in word:  # a bare run dir (python -m audioexp.predict RUN_DIR ...)
            before, after = word.split("DATE", 1)
            word = f"{_newest(workdir / before)}{after}"
        elif "DATE" in word:
            key, _, value = word.partition("=")
            before, after = value.split("DATE", 1)
            newest = _newest(workdir / before)
            word = f"{key}={newest}{after}"
        out.append(word.replace("/data/fm", str(fm_corpus)))
    return out


def _compose_only(command: ReadmeCommand) -> str | None:
    """Why the line cannot run here (then it is composed instead), or None."""
    gpus = command.gpus_needed()
    if gpus > torch.cuda.device_count():
        return f"needs {gpus} GPU(s), this machine has {torch.cuda.device_count()}"
    if "+launcher=slurm" in command.words and shutil.which("sbatch") is None:
        return "needs SLURM (no sbatch here)"
    return None


def _as_composition(words: list[str], command: ReadmeCommand) -> list[str]:
    """The same overrides composed and resolved, not run: no ``-m``, one value per sweep list."""
    out = words[: len(words) - len(command.args)]
    for word in words[len(out):]:
        if word in ("-m", "--multirun"):
            continue
        key, eq, value = word.partition("=")
        if eq and "," in value and not value.startswith(("[", "'", '"')):
            value = value.split(",")[0]
        out.append(f"{key}{eq}{value}" if eq else word)
    return [*out, "--cfg", "all", "--resolve"]


def _run(argv: list[str], workdir: Path, timeout: int = TRAIN_TIMEOUT_S, root: Path | None = None) -> str:
    """Run in ``workdir``; ``root`` sets AUDIOEXP_ROOT (make runs in the checkout, its outputs go to workdir)."""
    proc = subprocess.Popen(argv, cwd=workdir, env=_env(root), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, start_new_session=True)
    try:
        output, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # the command's children too (make, DDP ranks, sweep jobs)
        proc.communicate()
        pytest.fail(f"`{' '.join(argv)}` ran longer than {timeout} s")
    assert proc.returncode == 0, f"`{' '.join(argv)}` exited with {proc.returncode}:\n{output[-6000:]}"
    assert "Traceback (most recent call last)" not in output, output[-6000:]
    return output


def _runs_in_this_process(command: ReadmeCommand, words: list[str]) -> bool:
    """``python -m audioexp`` lines that start no process of their own run through the same
    entry point (``audioexp.__main__.main``) in this process, sparing the 6-8 s import of
    Lightning per line; DDP, submitit, make and the console script run as subprocesses."""
    spawns = any(w.startswith(("trainer=ddp", "hydra/launcher=", "+launcher=")) for w in words)
    return words[:3] == ["python", "-m", "audioexp"] and not spawns


def _run_in_process(args: list[str], workdir: Path, monkeypatch) -> None:
    from hydra.core.global_hydra import GlobalHydra

    from audioexp.__main__ import main

    for key in [k for k in os.environ if k.startswith("AUDIOEXP_")]:
        monkeypatch.delenv(key)  # restored after the test
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.chdir(workdir)
    monkeypatch.setattr(sys, "argv", ["audioexp", *args])
    GlobalHydra.instance().clear()
    try:
        main()
    except SystemExit as exit_:  # Hydra reports a failed job and exits 1
        if exit_.code not in (0, None):
            pytest.fail(f"`python -m audioexp {' '.join(args)}` exited with {exit_.code} (its error is printed above)")
    finally:
        GlobalHydra.instance().clear()
        os.environ.pop("AUDIOEXP_ROOT", None)  # main() sets it to the working dir


def _sweep_dirs(workdir: Path, since: set[Path]) -> list[Path]:
    return sorted(set((workdir / "logs").glob("*/multiruns/*/*")) - since)


@pytest.mark.slow
@pytest.mark.parametrize("command", COMMANDS, ids=[f"{c.number:02d} {c.line[:70]}" for c in COMMANDS])
def test_readme_command(command: ReadmeCommand, workdir: Path, fm_corpus: Path, monkeypatch):
    words = command.words
    if command.is_make:
        targets = [w for w in words[1:] if not w.startswith("-") and "=" not in w]
        if "test" in targets:
            pytest.skip("`make test` is the command that runs this suite")
        if not (ROOT / ".venv" / ".installed-stamp").exists() or subprocess.run(
                ["make", "-q", "-C", str(ROOT), "install"], capture_output=True).returncode != 0:
            pytest.skip("the checkout's .venv is missing or older than the lock file: `make install` first")
        if set(targets) & DRY_RUN_TARGETS:
            output = _run(["make", "-n", "-C", str(ROOT), *words[1:]], workdir, root=workdir)
            assert "uv pip compile" in output or "lock" not in targets
            return
        output = _run(["make", "-C", str(ROOT), *words[1:]], workdir, root=workdir)
        if "demo" in targets:
            accuracy = [float(v) for v in re.findall(r"test/acc = ([0-9.]+)", output)]
            assert accuracy and accuracy[-1] >= 0.9, f"make demo printed test/acc {accuracy}"
        return

    words = _substitute(words, workdir, fm_corpus)
    reason = _compose_only(command)
    if reason:
        output = _run(_as_composition(words, command), workdir, timeout=120)
        assert "_target_: lightning.pytorch.Trainer" in output
        return
    if command.trains and not any(w.startswith(("+debug=", "ckpt_path=")) for w in words):
        # (a line that continues a run as written: the run it continues is a short one already)
        # fdr forces one CPU device; DDP lines get two short epochs instead
        words.append("+debug=limit" if any(w.startswith("trainer=ddp") for w in words) else "+debug=fdr")
    if "+hparams_search=demo_optuna" in words:
        words.append("hydra.sweeper.n_trials=2")
    if command.trains and "+launcher=slurm" in words:
        words.append("hydra.launcher.timeout_min=20")

    before_sweeps = set(_sweep_dirs(workdir, set()))
    before_runs = set((workdir / "logs").glob("train/runs/*/*"))
    if _runs_in_this_process(command, words):
        _run_in_process(words[3:], workdir, monkeypatch)
    else:
        _run(words, workdir)
    new_sweeps = _sweep_dirs(workdir, before_sweeps)
    new_runs = sorted(set((workdir / "logs").glob("train/runs/*/*")) - before_runs)

    if command.is_multirun and "+hparams_search=demo_optuna" not in words:
        expected_jobs = max(len(w.split("=", 1)[1].split(",")) for w in words if "=" in w and "," in w)
        assert len(new_sweeps) == 1, new_sweeps
        jobs = sorted(p for p in new_sweeps[0].iterdir() if p.is_dir() and p.name.isdigit())
        assert len(jobs) == expected_jobs and all((j / "metrics.json").exists() for j in jobs), jobs
    if "+hparams_search=demo_optuna" in words:
        import optuna

        db = workdir / "logs" / "train" / "optuna" / "demo" / "optuna.db"
        study = optuna.load_study(study_name="demo", storage=f"sqlite:///{db}")
        assert sum(t.state.name == "COMPLETE" for t in study.trials) >= 2
    if words[:3] == ["python", "-m", "audioexp.predict"]:
        import csv

        out = workdir / words[words.index("--out") + 1]
        rows = list(csv.DictReader(out.open()))
        assert rows and all(r["error"] == "" for r in rows), rows[:3]
        # a classifier's class, a replay countermeasure's decision, a probe's emotion
        assert all(r.get("top_class") or r.get("decision") for r in rows), rows[:3]
    if "trainer=ddp_cpu" in words:
        assert len(new_runs) == 1, f"DDP made {len(new_runs)} run dirs: {new_runs}"
        assert (new_runs[0] / "ddp_rank1.log").exists() and (new_runs[0] / "metrics.json").exists()
        assert json.loads((new_runs[0] / "metrics.json").read_text())["test/acc"] >= 0
