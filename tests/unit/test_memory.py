"""``agent.memory``: the glibc malloc tuning of ``serve`` applies where glibc is, and is a no-op
elsewhere; the allocation report is off unless asked for. (What it saves is measured by
``evals/perf/bench_serve_memory.py``, not here.)"""

from __future__ import annotations

import platform
import sys
import tracemalloc
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent import memory
from tools.ledger.db import make_engine


@pytest.fixture(autouse=True)
def fresh_libc_lookup() -> Iterator[None]:
    memory.glibc.cache_clear()
    yield
    memory.glibc.cache_clear()


def test_not_linux_means_no_glibc_and_no_ops(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "platform", "darwin")
    monkeypatch.delenv("MALLOC_ARENA_MAX", raising=False)
    assert memory.glibc() is None
    assert memory.limit_malloc_arenas() is False
    assert memory.release_free_memory() is False


def test_another_libc_means_no_ops(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(platform, "libc_ver", lambda *args, **kwargs: ("", ""))  # musl reports no name
    monkeypatch.delenv("MALLOC_ARENA_MAX", raising=False)
    assert memory.glibc() is None
    assert memory.limit_malloc_arenas() is False
    assert memory.release_free_memory() is False


def test_a_libc_that_cannot_be_loaded_is_no_glibc(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "platform", "linux")
    monkeypatch.setattr(platform, "libc_ver", lambda *args, **kwargs: ("glibc", "2.36"))

    def refuse(*_args: object, **_kwargs: object) -> None:
        raise OSError("no such library")

    monkeypatch.setattr(memory.ctypes, "CDLL", refuse)
    assert memory.glibc() is None
    assert memory.release_free_memory() is False


@pytest.mark.skipif(not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc",
                    reason="glibc only")
def test_on_glibc_the_arena_cap_applies_unless_the_operator_set_one(monkeypatch: pytest.MonkeyPatch) -> None:
    assert memory.glibc() is not None
    monkeypatch.setenv("MALLOC_ARENA_MAX", "4")
    assert memory.limit_malloc_arenas() is False  # glibc already read the operator's own
    monkeypatch.delenv("MALLOC_ARENA_MAX")
    # This test process gets the same cap as serve: harmless, it only bounds future arenas.
    assert memory.limit_malloc_arenas() is True
    memory.release_free_memory()  # trims or finds nothing to trim; either way no error


def test_allocation_report_is_off_unless_asked(caplog: pytest.LogCaptureFixture) -> None:
    was_tracing = tracemalloc.is_tracing()
    memory.start_tracing(0)
    assert tracemalloc.is_tracing() == was_tracing
    assert memory.log_top_allocations(0, "a round") == []
    if not was_tracing:
        assert memory.log_top_allocations(5, "a round") == []


def test_allocation_report_lists_the_biggest_sites(caplog: pytest.LogCaptureFixture) -> None:
    was_tracing = tracemalloc.is_tracing()
    memory.start_tracing(3)
    try:
        held = [bytearray(200_000) for _ in range(5)]
        with caplog.at_level("INFO", logger="agent.memory"):
            lines = memory.log_top_allocations(3, "a round")
        assert len(lines) == 3
        assert any("test_memory.py" in line for line in lines)
        assert "tracemalloc after a round" in caplog.text
        del held
    finally:
        if not was_tracing:
            tracemalloc.stop()


def test_sqlite_heap_limit_applies_to_a_sqlite_ledger_only(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'ledger.db'}")
    try:
        assert memory.limit_sqlite_heap(engine, 0) is False  # 0: no limit
        assert memory.limit_sqlite_heap(engine, 16) is True
        with engine.connect() as connection:  # process-wide: any connection sees it
            assert connection.exec_driver_sql("PRAGMA soft_heap_limit").scalar() == 16 << 20
    finally:
        with engine.connect() as connection:  # the limit is the whole process's: lift it again
            connection.exec_driver_sql("PRAGMA soft_heap_limit=0")
        engine.dispose()
    postgres = make_engine("postgresql+psycopg://nobody@127.0.0.1:1/none")  # never connected to
    assert memory.limit_sqlite_heap(postgres, 16) is False


def test_resident_figures_are_bytes() -> None:
    figures = memory.resident()
    if sys.platform.startswith("linux"):
        assert figures["VmRSS"] > 1 << 20 and figures["VmHWM"] >= figures["VmRSS"]
    assert all(isinstance(value, int) and value >= 0 for value in figures.values())
