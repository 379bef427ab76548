from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from optiwise.cli import main


def test_list_text(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    assert "NAME" in out and "BEST FOR" in out
    line = next(ln for ln in out.splitlines() if ln.startswith("adamw "))
    assert "1e-05..0.01" in line and "8" in line and "sqrt" in line
    schedule_free = next(x for x in out.splitlines() if x.startswith("schedule_free_adamw "))
    assert "2.5e-03 @ 256" in schedule_free  # not rounded to 3e-03


def test_list_json_for_a_task(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["list", "--task", "language_transformer", "--format", "json"]) == 0
    data = json.loads(capsys.readouterr().out)
    adamw = next(r for r in data["optimizers"] if r["name"] == "adamw")
    assert adamw["default_lr"] == 1e-4 and adamw["state_bytes_per_param"] == 8


def test_schedule_preview_and_plot(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    png = tmp_path / "s.png"
    assert (
        main(
            [
                "schedule",
                "warmup_cosine",
                "--total-steps",
                "100",
                "--warmup",
                "0.1",
                "--lr",
                "0.5",
                "--min-lr-ratio",
                "0.1",
                "--plot",
                str(png),
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "peak 0.5" in out and "final 0.05" in out and "step 0: 0.05" in out
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_schedule_wsd_options(capsys: pytest.CaptureFixture[str]) -> None:
    assert (
        main(["schedule", "wsd", "--total-steps", "100", "--decay", "20", "--cooldown", "1-sqrt"])
        == 0
    )
    assert "step 50: 1" in capsys.readouterr().out


def test_schedule_of_a_huge_run_is_sampled(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    png = tmp_path / "big.png"
    argv = ["schedule", "warmup_cosine", "--total-steps", "100000000000", "--warmup", "0.05"]
    assert main([*argv, "--min-lr-ratio", "0.1", "--plot", str(png)]) == 0
    out = capsys.readouterr().out
    assert "100000000000 steps, peak 1, final 0.1 (sampled at" in out
    assert "step 50000000000: 0.5872" in out and png.stat().st_size > 0
    assert main(["schedule", "cosine", "--total-steps", "100000000000"]) == 2
    assert "total_steps=100000000000 is too many" in capsys.readouterr().err


@pytest.mark.parametrize(
    "argv, match",
    [
        (["schedule", "nope", "--total-steps", "10"], "Unknown schedule 'nope'"),
        (
            ["schedule", "warmup_cosine", "--total-steps", "10", "--warmup", "20"],
            "warmup of 20 steps does not fit",
        ),
        (
            ["schedule", "warmup_cosine", "--total-steps", "10", "--plot", "x.jpg"],
            "must end in .png",
        ),
    ],
)
def test_errors_are_one_line_exit_2(
    argv: list[str], match: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert match in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_argparse_errors_exit_2() -> None:
    with pytest.raises(SystemExit) as exc:
        main(["list", "--task", "cooking"])
    assert exc.value.code == 2


def test_console_script_runs() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "optiwise.cli", "--version"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0 and proc.stdout.startswith("optiwise ")
