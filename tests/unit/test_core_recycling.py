"""The words of a recycling by memory: the figure and the limit, as a person reads them."""

from __future__ import annotations

import pytest

from prefork.core.recycling import describe_memory


@pytest.mark.parametrize(("mib", "limit", "words"), [
    (212.4, 200, "uses 212 MiB USS, over max_memory 200 MiB"),
    # rounded, the figure would read as the limit itself: a decimal more says it is over
    (200.4, 200, "uses 200.4 MiB USS, over max_memory 200 MiB"),
    (201.0, 200, "uses 201 MiB USS, over max_memory 200 MiB"),
])
def test_the_figure_reads_as_over_the_limit(mib: float, limit: int, words: str) -> None:
    assert describe_memory(mib, limit) == words
