"""Progress bars for work that runs longer than a few seconds: a tqdm bar on stderr, or
nothing at all.

Library functions take ``progress=False`` by default; the command line shows a bar only
when stderr is a terminal (:func:`want_progress`), so logs and pipes get no bar frames.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from types import TracebackType
from typing import Any

__all__ = ["Progress", "want_progress"]


def want_progress(disabled: bool = False) -> bool:
    """Whether a command shows a progress bar: not ``disabled`` (``--no-progress``) and
    stderr is a terminal."""
    if disabled:
        return False
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):  # replaced or closed stderr
        return False


class Progress:
    """A progress bar over ``total`` units on stderr; every method does nothing when it is
    not ``enabled``.

    Parameters
    ----------
    total:
        Units of work (steps, runs...); :meth:`grow` raises it later.
    desc:
        The bar's label.
    enabled:
        Show the bar.
    initial:
        Units already done (a resumed run).
    unit:
        What is counted.
    leave:
        Keep the finished bar on screen.
    """

    def __init__(
        self,
        total: int,
        desc: str,
        *,
        enabled: bool = True,
        initial: int = 0,
        unit: str = "step",
        leave: bool = True,
    ) -> None:
        self._bar: Any = None
        if not enabled:
            return
        try:
            from tqdm.auto import tqdm
        except ImportError:  # a bar is a convenience, never a requirement
            return
        self._bar = tqdm(
            total=total,
            initial=initial,
            desc=desc,
            unit=unit,
            leave=leave,
            dynamic_ncols=True,
            file=sys.stderr,
        )

    @property
    def active(self) -> bool:
        """Whether a bar is shown."""
        return self._bar is not None

    def update(self, n: int = 1) -> None:
        """Count ``n`` more units done."""
        if self._bar is not None and n:
            self._bar.update(n)

    def grow(self, total: int) -> None:
        """Raise the total to ``total`` (never lowers it)."""
        if self._bar is not None and total > self._bar.total:
            self._bar.total = total
            self._bar.refresh()

    def label(self, text: str) -> None:
        """Show ``text`` after the counts (what is running now)."""
        if self._bar is not None:
            self._bar.set_postfix_str(text, refresh=True)

    @contextlib.contextmanager
    def paused(self) -> Iterator[None]:
        """Lift the bar while the block writes its own lines to the terminal."""
        if self._bar is None:
            yield
            return
        from tqdm.auto import tqdm

        with tqdm.external_write_mode(file=sys.stderr):
            yield

    def close(self) -> None:
        """Finish the bar."""
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def __enter__(self) -> Progress:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
