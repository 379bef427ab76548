"""A training run killed with SIGKILL resumes from its last checkpoint and finishes with
parameters bit-identical to an uninterrupted run (tests/resume_run.py is the run)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest
import torch

from optiwise.checkpoint import read_checkpoint
from tests.test_checkpoint import states_equal

SCRIPT = Path(__file__).with_name("resume_run.py")
TIMEOUT = 180

pytestmark = pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs POSIX SIGKILL")


def command(workdir: Path, *flags: str) -> list[str]:
    return [sys.executable, str(SCRIPT), str(workdir), *flags]


def run_to_end(workdir: Path) -> list[str]:
    proc = subprocess.run(command(workdir), capture_output=True, text=True, timeout=TIMEOUT)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.split("\n")


def kill_when_paused(workdir: Path, *flags: str) -> list[str]:
    """Start the run, SIGKILL it as soon as it reports that it paused; its output lines."""
    proc = subprocess.Popen(
        command(workdir, *flags), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    watchdog = threading.Timer(TIMEOUT, proc.kill)
    watchdog.start()
    lines = []
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line.strip())
            if lines[-1] == "paused":
                os.kill(proc.pid, signal.SIGKILL)
                break
        proc.wait(timeout=TIMEOUT)
    finally:
        watchdog.cancel()
    stderr = proc.stderr.read() if proc.stderr is not None else ""
    assert proc.returncode == -signal.SIGKILL, (lines, stderr)
    assert lines[-1] == "paused", (lines, stderr)
    return lines


def final_state(workdir: Path) -> dict[str, Any]:
    return torch.load(workdir / "final.pt", weights_only=True)


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    workdir = tmp_path_factory.mktemp("uninterrupted")
    lines = run_to_end(workdir)
    assert "step 9" in lines and "done" in lines
    return final_state(workdir)


def test_sigkill_between_checkpoints_then_resume_is_bit_identical(
    tmp_path: Path, uninterrupted: dict[str, Any]
) -> None:
    lines = kill_when_paused(tmp_path, "--pause-after-step", "5")
    assert "saved 4" in lines and "step 5" in lines and "saved 6" not in lines
    assert not (tmp_path / "final.pt").exists()
    assert read_checkpoint(tmp_path / "ckpt.pt")["stepper"]["step_count"] == 4

    lines = run_to_end(tmp_path)
    assert lines[0] == "resumed at step 4" and "step 5" in lines and "done" in lines
    resumed = final_state(tmp_path)
    assert states_equal(uninterrupted, resumed)
    assert not states_equal(uninterrupted["model"], read_checkpoint(tmp_path / "ckpt.pt")["model"])


def test_sigkill_during_a_save_keeps_the_previous_checkpoint(
    tmp_path: Path, uninterrupted: dict[str, Any]
) -> None:
    # The third save (after step 6) is killed with half of its bytes written.
    lines = kill_when_paused(tmp_path, "--pause-in-save", "3")
    assert "saved 4" in lines and "step 6" in lines and "saved 6" not in lines
    leftovers = [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    assert len(leftovers) == 1 and leftovers[0].stat().st_size > 0
    assert read_checkpoint(tmp_path / "ckpt.pt")["stepper"]["step_count"] == 4

    lines = run_to_end(tmp_path)
    assert lines[0] == "resumed at step 4" and "done" in lines
    assert states_equal(uninterrupted, final_state(tmp_path))
    assert not leftovers[0].exists()  # the next save removed the killed one's temporary
