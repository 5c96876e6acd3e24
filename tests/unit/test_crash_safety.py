"""Run-dir lock, atomic checkpoint writes, OneCycle extension, the resumed-run dir resolver."""

import json
import os
import signal
import socket
import subprocess
import sys
import time

import pytest
import torch

from audioexp.conf import resumed_run_dir, run_dir
from audioexp.systems.classification import stretch_one_cycle_state
from audioexp.utils.checkpoint_io import AtomicCheckpointIO, atomic_torch_save, check_free_space
from audioexp.utils.lock import LOCK_FILE, RunDirLock, RunDirLockedError


def test_a_live_lock_stops_a_second_run_and_a_stale_one_is_taken_over(tmp_path, caplog):
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (tmp_path / LOCK_FILE).write_text(json.dumps({"pid": sleeper.pid, "host": socket.gethostname(), "started": "x"}))
        with pytest.raises(RunDirLockedError, match=f"in use by a running process \\(pid {sleeper.pid}"):
            RunDirLock(tmp_path).acquire()
    finally:
        sleeper.kill()
        sleeper.wait()
    # the same lock, its process gone: stale, taken over with a warning
    with caplog.at_level("WARNING"):
        lock = RunDirLock(tmp_path).acquire()
    assert "stale lock" in caplog.text
    assert json.loads((tmp_path / LOCK_FILE).read_text())["pid"] == os.getpid()
    lock.release()
    assert not (tmp_path / LOCK_FILE).exists()
    (tmp_path / LOCK_FILE).write_text(json.dumps({"pid": 1, "host": "another-node", "started": "x"}))
    with pytest.raises(RunDirLockedError, match="on host another-node"):
        RunDirLock(tmp_path).acquire()


def test_a_failed_save_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    path = tmp_path / "checkpoints" / "last.ckpt"
    AtomicCheckpointIO().save_checkpoint({"step": 1, "w": torch.arange(5)}, path)
    real_save = torch.save

    def dies_half_way(obj, handle, *args, **kwargs):
        handle.write(b"partial bytes")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(torch, "save", dies_half_way)
    with pytest.raises(OSError, match="No space left"):
        AtomicCheckpointIO().save_checkpoint({"step": 2, "w": torch.arange(6)}, path)
    monkeypatch.setattr(torch, "save", real_save)
    assert torch.load(path, weights_only=True)["step"] == 1
    assert sorted(p.name for p in path.parent.iterdir()) == ["last.ckpt"]


def test_a_writer_killed_mid_save_leaves_no_partial_file_under_the_final_name(tmp_path):
    path = tmp_path / "last.ckpt"
    atomic_torch_save({"step": 1, "w": torch.ones(3)}, path)
    script = (
        "import sys, torch; from audioexp.utils.checkpoint_io import atomic_torch_save\n"
        "big = {'step': 2, 'w': torch.ones(64_000_000)}\n"
        "while True: atomic_torch_save(big, sys.argv[1])\n"
    )
    writer = subprocess.Popen([sys.executable, "-c", script, str(path)])
    try:
        deadline = time.time() + 60
        while not any(p.name.endswith(".tmp") for p in tmp_path.iterdir()):  # a save is under way
            assert time.time() < deadline and writer.poll() is None
            time.sleep(0.005)
        writer.send_signal(signal.SIGKILL)
    finally:
        writer.wait()
    state = torch.load(path, weights_only=True)  # the final name always holds a whole checkpoint
    assert state["step"] in (1, 2) and state["w"].numel() in (3, 64_000_000)


def test_free_space_check_warns_when_two_checkpoints_do_not_fit(tmp_path, caplog):
    assert check_free_space(tmp_path / "checkpoints", 1)
    with caplog.at_level("WARNING"):
        assert not check_free_space(tmp_path / "checkpoints", 10**18)
    assert "free" in caplog.text


@pytest.mark.parametrize("old_total, new_total", [(9, 17), (40, 41), (12, 30)])
def test_one_cycle_stretched_on_resume_continues_on_the_new_schedule(old_total, new_total):
    """After the stretch, each further step has the learning rate a fresh OneCycle of the new
    length would have at that step (torch's own schedule is the reference)."""
    def scheduler(total):
        opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1, momentum=0.9)
        return torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=0.3, total_steps=total, pct_start=0.3)

    done = old_total - 1
    old = scheduler(old_total)
    for _ in range(done):
        old.optimizer.step()
        old.step()
    resumed = scheduler(new_total)
    plan = (resumed.total_steps, [dict(p) for p in resumed._schedule_phases])
    resumed.load_state_dict(old.state_dict())  # what Lightning restores
    assert stretch_one_cycle_state(resumed.__dict__, *plan)
    reference = scheduler(new_total)
    for _ in range(done):
        reference.optimizer.step()
        reference.step()
    for _ in range(new_total - 1 - done):
        resumed.optimizer.step()
        resumed.step()
        reference.optimizer.step()
        reference.step()
        assert resumed.get_last_lr() == pytest.approx(reference.get_last_lr(), rel=1e-12)
    assert not stretch_one_cycle_state(resumed.__dict__, *plan)  # already fitted
    with pytest.raises(ValueError, match="raise trainer.max_epochs"):
        stretch_one_cycle_state(dict(old.state_dict()), 3, plan[1])


def test_run_dir_of_a_resumed_run(tmp_path):
    runs = tmp_path / "runs"
    assert run_dir(None, str(runs), "2026-01-01") == f"{runs}/2026-01-01"
    assert run_dir("last", str(runs), "now") == f"{runs}/now"  # nothing to resume yet
    for name in ("a", "b"):
        (runs / name / "checkpoints").mkdir(parents=True)
        (runs / name / "resolved_config.yaml").write_text("{}")
        (runs / name / "checkpoints" / "last.ckpt").write_bytes(b"x")
        time.sleep(0.02)
    assert resumed_run_dir("last", str(runs)) == runs / "b"
    assert run_dir(str(runs / "a" / "checkpoints" / "last.ckpt"), str(runs), "now") == str(runs / "a")
    assert resumed_run_dir(str(tmp_path / "elsewhere.ckpt"), str(runs)) is None  # not a run's checkpoint


def test_stop_signals_wait_until_the_checkpoint_is_written(tmp_path):
    """A requeue handler that exits from inside the handler (as submitit's does) runs only once
    the checkpoint is complete, so the job exits as asked and the file is whole."""
    import threading

    from audioexp.utils.checkpoint_io import deferred_signals

    calls = []
    previous = signal.signal(signal.SIGUSR2, lambda signum, frame: calls.append(signum))
    try:
        with deferred_signals():
            os.kill(os.getpid(), signal.SIGUSR2)
            time.sleep(0.05)
            assert calls == []  # held back
        assert calls == [signal.SIGUSR2]  # delivered once, to the handler installed before

        def exit_now(signum, frame):
            raise SystemExit(144)  # submitit: requeue, then exit with this code

        signal.signal(signal.SIGUSR2, exit_now)
        path = tmp_path / "last.ckpt"
        big = {"w": torch.ones(32_000_000)}
        timer = threading.Timer(0.05, lambda: os.kill(os.getpid(), signal.SIGUSR2))
        timer.start()
        with pytest.raises(SystemExit):
            for _ in range(20):  # the signal lands during one of these saves
                atomic_torch_save(big, path)
        timer.join()
        assert torch.load(path, weights_only=True)["w"].numel() == 32_000_000
        assert [p.name for p in tmp_path.iterdir()] == ["last.ckpt"]
    finally:
        signal.signal(signal.SIGUSR2, previous)
