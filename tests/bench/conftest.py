"""The benchmark tests train tiny models: one intra-op thread is faster for them, and much
faster on a busy machine."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.bench.helpers import one_thread


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    with one_thread():
        yield
