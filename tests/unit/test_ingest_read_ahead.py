"""The import's read-ahead thread hands over the batches in order, raises its own failure after the
batches before it, and stops when the consumer stops (no thread left reading the file)."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from tools.ledger.ingest import _read_ahead, _ReadBatch


def _batch(number: int) -> _ReadBatch:
    return _ReadBatch(items=[], prepared=[], lines=number, skipped=[], position=number, full=True)


def _threads() -> set[str]:
    return {thread.name for thread in threading.enumerate()}


@pytest.mark.parametrize("depth", [0, 1, 2])
def test_batches_come_out_in_order(depth: int) -> None:
    assert [b.lines for b in _read_ahead(iter([_batch(n) for n in range(10)]), depth)] == list(range(10))


def test_a_failure_of_the_thread_is_raised_after_the_batches_before_it() -> None:
    def batches() -> Iterator[_ReadBatch]:
        yield _batch(1)
        yield _batch(2)
        raise ValueError("bad file")

    seen = []
    with pytest.raises(ValueError, match="bad file"):
        for batch in _read_ahead(batches(), 2):
            seen.append(batch.lines)
    assert seen == [1, 2]
    assert "ingest-read-ahead" not in _threads()


def test_the_thread_stops_when_the_consumer_stops() -> None:
    produced = []

    def endless() -> Iterator[_ReadBatch]:
        number = 0
        while True:
            produced.append(number)
            yield _batch(number)
            number += 1

    reader = _read_ahead(endless(), 2)
    assert next(reader).lines == 0
    reader.close()  # what a failing store does to the loop over it
    assert "ingest-read-ahead" not in _threads()
    assert len(produced) <= 5  # at most the queue's depth beyond what was taken, then it stopped
