"""Progress bars: shown on a terminal, silent in logs and pipes."""

from __future__ import annotations

import io
import sys
from pathlib import Path

import pytest

from optiwise._progress import Progress, want_progress
from optiwise.cli import main


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_want_progress_follows_the_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "stderr", io.StringIO())
    assert want_progress() is False
    monkeypatch.setattr(sys, "stderr", _Terminal())
    assert want_progress() is True and want_progress(disabled=True) is False
    monkeypatch.setattr(sys, "stderr", None)
    assert want_progress() is False


def test_progress_counts_grows_labels_and_lets_lines_through(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    err = _Terminal()
    monkeypatch.setattr(sys, "stderr", err)
    with Progress(10, "work", unit="run") as bar:
        assert bar.active
        bar.update(4)
        bar.grow(20)
        bar.grow(5)  # never lowers the total
        bar.label("now: b")
        with bar.paused():
            print("a line of its own", file=sys.stderr)
        bar.update(16)
    assert not bar.active
    text = err.getvalue()
    assert "work" in text and "20/20" in text and "now: b" in text and "run" in text
    assert "a line of its own\n" in text
    quiet = Progress(10, "work", enabled=False)
    quiet.update(3), quiet.grow(50), quiet.label("x"), quiet.close()
    with quiet.paused():
        pass
    assert not quiet.active and err.getvalue() == text


FIND_LR = ["find-lr", "--data", "digits-mlp", "--data-kwargs", '{"batches": 12}']
FIND_LR += ["--num-steps", "12", "--confirm", "1", "--confirm-steps", "3", "--plot", ""]
BENCH = ["bench", "--workload", "toy-beale", "--optimizers", "sgd", "--seeds", "1"]
BENCH += ["--lr-grid", "1", "--budget", "20", "--storage", "sqlite:///b.db", "--out", "r"]


@pytest.mark.parametrize(
    "argv, terminal, shown",
    [
        (FIND_LR, True, True),
        (FIND_LR, False, False),
        ([*FIND_LR, "--no-progress"], True, False),
    ],
    ids=["terminal", "pipe", "no-progress"],
)
def test_find_lr_shows_a_bar_only_on_a_terminal(
    argv: list[str],
    terminal: bool,
    shown: bool,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    pytest.importorskip("sklearn")
    err = _Terminal() if terminal else io.StringIO()
    monkeypatch.setattr(sys, "stderr", err)
    assert main(argv) == 0
    capsys.readouterr()
    text = err.getvalue()
    assert ("LR range test" in text and "%|" in text) is shown
    if not shown:
        assert "\r" not in text


@pytest.mark.parametrize(
    "extra, terminal, shown",
    [([], True, True), ([], False, False), (["--no-progress"], True, False)],
    ids=["terminal", "pipe", "no-progress"],
)
def test_bench_and_demo_ask_for_a_bar_only_on_a_terminal(
    extra: list[str],
    terminal: bool,
    shown: bool,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    pytest.importorskip("sqlalchemy")
    import optiwise.bench
    import optiwise.bench.demo

    asked: list[bool] = []

    def record(*args: object, progress: bool = False, **kwargs: object) -> None:
        asked.append(progress)
        raise KeyboardInterrupt  # stop before anything trains

    monkeypatch.setattr(optiwise.bench, "run_sweep", record)
    monkeypatch.setattr(optiwise.bench.demo, "run_demo", record)
    monkeypatch.setattr(sys, "stderr", _Terminal() if terminal else io.StringIO())
    bench = ["bench", "--workload", "toy-beale", "--optimizers", "sgd"]
    bench += ["--storage", f"sqlite:///{tmp_path / 'b.db'}", "--out", str(tmp_path / "r")]
    assert main([*bench, *extra]) == 130
    assert main(["demo", "--out", str(tmp_path / "d"), *extra]) == 130
    assert asked == [shown, shown]
