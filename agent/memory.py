"""Keeping ``capi-agent serve``'s resident memory down, and seeing what holds it.

glibc's malloc gives each thread that allocates its own arena (up to 8 per core), and an arena's
freed pages mostly stay mapped: ``serve`` runs the relay, uvicorn's thread pool, the background
loops and a Meta prefetch of 24 threads, so a round of many pixels spreads its short-lived
allocations over a dozen arenas that each keep their high-water mark. ``limit_malloc_arenas`` caps
them (as ``MALLOC_ARENA_MAX`` would, but set by the process itself, so an operator need not know),
and ``release_free_memory`` hands the free pages back to the kernel after each scheduler round.
Both are no-ops where the C library is not glibc (musl, macOS, Windows): nothing there to tune.

On a SQLite ledger, ``limit_sqlite_heap`` bounds the page caches of all the process's connections
together (``CAPI_SQLITE_HEAP_MIB``). After each round that audited something, ``log_resident`` logs
the resident memory and SQLite's heap (now and at their peaks).

``CAPI_TRACEMALLOC=N`` makes ``serve`` trace Python's allocations from the start and log the N
biggest allocation sites after every round (slow: for finding what holds memory, not production).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import logging
import platform
import sys
import tracemalloc
from functools import cache
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

log = logging.getLogger(__name__)

# mallopt parameter numbers from glibc's <malloc.h>.
M_ARENA_MAX = -8
# Arenas for a threaded server: few enough that freed memory is found again by the next allocation
# of another thread, enough that the relay's and the loops' threads rarely wait on one another.
SERVE_ARENAS = 2


@cache
def glibc() -> ctypes.CDLL | None:
    """The process's C library when it is glibc with ``mallopt`` and ``malloc_trim``; else None."""
    if not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc":
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return None
    if not (hasattr(libc, "mallopt") and hasattr(libc, "malloc_trim")):
        return None
    libc.mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    libc.mallopt.restype = ctypes.c_int
    libc.malloc_trim.argtypes = [ctypes.c_size_t]
    libc.malloc_trim.restype = ctypes.c_int
    return libc


def limit_malloc_arenas(arenas: int = SERVE_ARENAS) -> bool:
    """Cap glibc's malloc arenas (before the threads start); True when applied. An operator's own
    ``MALLOC_ARENA_MAX`` was read by glibc at start and is left as it is."""
    import os

    libc = glibc()
    if libc is None or os.environ.get("MALLOC_ARENA_MAX"):
        return False
    return bool(libc.mallopt(M_ARENA_MAX, arenas))


def release_free_memory() -> bool:
    """Collect garbage, then return the C heap's free pages to the kernel; True when glibc trimmed
    something (False also where there is no glibc: the collection alone is done)."""
    gc.collect()
    libc = glibc()
    if libc is None:
        return False
    return bool(libc.malloc_trim(0))


def limit_sqlite_heap(engine: Engine, mib: int) -> bool:
    """Set SQLite's process-wide soft heap limit to ``mib`` MiB on a SQLite ledger (True when set;
    0 leaves it unlimited). The page caches of all connections then share it: near the limit a
    connection reuses its own least recently used pages instead of growing. Without it each pooled
    connection may grow its cache to the 64 MiB that ingest wants (``tools.ledger.db``), and a
    round's reads across the whole ledger fill several."""
    if engine.dialect.name != "sqlite" or mib <= 0:
        return False
    with engine.connect() as connection:
        connection.exec_driver_sql(f"PRAGMA soft_heap_limit={int(mib) << 20}")
    return True


@cache
def sqlite_library() -> ctypes.CDLL | None:
    """The shared SQLite library Python's ``sqlite3`` uses, when it is one (for its heap figures)."""
    name = ctypes.util.find_library("sqlite3")
    if name is None:
        return None
    try:
        lib = ctypes.CDLL(name)
    except OSError:
        return None
    if not hasattr(lib, "sqlite3_memory_used"):
        return None
    lib.sqlite3_memory_used.restype = ctypes.c_int64
    lib.sqlite3_memory_highwater.restype = ctypes.c_int64
    lib.sqlite3_memory_highwater.argtypes = [ctypes.c_int]
    return lib


def resident() -> dict[str, int]:
    """This process's resident memory now and at its peak (VmRSS, VmHWM), and SQLite's heap now and
    at its peak, in bytes; whatever this platform does not tell is left out."""
    out: dict[str, int] = {}
    try:
        with open("/proc/self/status") as status:
            for line in status:
                key, _, value = line.partition(":")
                if key in ("VmRSS", "VmHWM"):
                    out[key] = int(value.split()[0]) * 1024
    except OSError:
        pass
    lib = sqlite_library()
    if lib is not None:
        out["sqlite"] = int(lib.sqlite3_memory_used())
        out["sqlite_peak"] = int(lib.sqlite3_memory_highwater(0))
    return out


def log_resident(label: str) -> dict[str, int]:
    """One INFO line with ``resident()`` in MiB (after a round: what it left behind)."""
    figures = resident()
    if figures:
        log.info("memory after %s: %s", label, ", ".join(f"{key} {value / 2**20:.1f} MiB"
                                                           for key, value in figures.items()))
    return figures


def start_tracing(top: int) -> None:
    """Trace Python allocations (``top`` > 0) so that ``log_top_allocations`` can report them."""
    if top > 0 and not tracemalloc.is_tracing():
        tracemalloc.start(1)


def log_top_allocations(top: int, label: str) -> list[str]:
    """Log (and return) the ``top`` biggest live allocation sites by line, when tracing."""
    if top <= 0 or not tracemalloc.is_tracing():
        return []
    snapshot = tracemalloc.take_snapshot().filter_traces((
        tracemalloc.Filter(False, tracemalloc.__file__),
        tracemalloc.Filter(False, "<frozen importlib._bootstrap>"),
        tracemalloc.Filter(False, "<frozen importlib._bootstrap_external>")))
    stats = snapshot.statistics("lineno")
    traced, peak = tracemalloc.get_traced_memory()
    lines = [f"{stat.size / 1024:9.0f} KiB {stat.count:8d} blocks  {stat.traceback}" for stat in stats[:top]]
    log.info("tracemalloc after %s: %.1f MiB traced (peak %.1f MiB); top %d sites:\n%s", label,
             traced / 2**20, peak / 2**20, top, "\n".join(lines))
    return lines
