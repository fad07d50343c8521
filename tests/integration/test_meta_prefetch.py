"""Reading Meta for a whole round at once: snapshots stored for each pixel's audit, which then calls
Meta no more; only what is not stored is read; a throttled or slow pixel is deferred (its audit reports
the failed read) while the others complete; the concurrency bound holds."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from tools.audit.meta_side import prefetch_meta_sides, read_meta_side
from tools.ledger.db import session_factory
from tools.ledger.pixels import PixelConfig
from tools.meta.client import GraphClient
from tools.meta.simulator import RunningSimulator
from tools.meta.usage import UsageGovernor
from tools.timeutil import to_iso

AT = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
SIM_NOW = AT  # the clock of the simulator fixture ``sim``
WINDOW_END = AT
HISTORY_START = WINDOW_END - timedelta(weeks=4)


def seed(sim: RunningSimulator, pixel_id: str, hours: int = 4 * 7 * 24) -> None:
    rows = [{"hour": to_iso(WINDOW_END - timedelta(hours=h + 1)), "event_name": "Purchase", "count": 3}
            for h in range(hours)]
    sim.state.set_browser_hours(pixel_id, rows)
    sim.state.add_server_hours(pixel_id, [{**row, "match_keys": {"em": 3}} for row in rows])


class NoMeta:
    """A client that must not be used: the audit takes the prefetched read."""

    def __init__(self) -> None:
        self.calls = 0

    def __getattr__(self, name: str) -> Any:
        def call(*_args: Any, **_kwargs: Any) -> Any:
            self.calls += 1
            raise AssertionError(f"Meta called ({name}) after the prefetch")
        return call


def clients(sim: RunningSimulator, tokens: dict[str, str] | None = None) -> Callable[[PixelConfig], GraphClient]:
    return lambda pixel: GraphClient(base_url=sim.url, access_token=(tokens or {}).get(pixel.id, "sim-token"),
                                     max_retries=0)


def audit_read(sqlite_engine: Engine, pixel_id: str, client: Any, at: datetime = AT):
    with Session(sqlite_engine, expire_on_commit=False) as session:
        side = read_meta_side(session, client, pixel_id=pixel_id, history_start=HISTORY_START,
                              window_end=WINDOW_END, at=at)
        session.commit()
        return side


def round_services(sqlite_engine: Engine, pixels: list[PixelConfig], client_for: Callable[[PixelConfig], GraphClient],
                   sides: dict[str, Any], *, after_audit: Callable[[], None] = lambda: None,
                   answer: Callable[[PixelConfig], dict[str, Any]] = lambda _p: {}) -> Any:
    """Stand-in services for a round: each audit reads its pixel's stored Meta side with a client that
    counts calls (kept in ``sides``: the side read and the calls made)."""

    class Wiring:
        session = staticmethod(session_factory(sqlite_engine))

        def pixels(self, only: list[str] | None = None) -> list[PixelConfig]:
            return pixels

    class Services:
        wiring = Wiring()

        @staticmethod
        def client_for(pixel: PixelConfig) -> GraphClient:
            return client_for(pixel)

        def audit_pixel(self, pixel: PixelConfig, at: datetime) -> dict[str, Any]:
            no_meta = NoMeta()
            sides[pixel.id] = (audit_read(sqlite_engine, pixel.id, no_meta, at=at), no_meta.calls)
            after_audit()
            return answer(pixel)

    return Services()


def test_prefetched_reads_are_stored_and_the_audit_calls_meta_no_more(sim: RunningSimulator,
                                                                    sqlite_engine: Engine) -> None:
    pixels = [PixelConfig(id=f"10{n}") for n in range(3)]
    for pixel in pixels:
        seed(sim, pixel.id)
    with prefetch_meta_sides(session_factory(sqlite_engine), [(p, AT) for p in pixels], client_for=clients(sim),
                             workers=4) as prefetch:
        assert set(prefetch.reads) == {p.id for p in pixels} and prefetch.deferred == []
        # A new pixel: 4 weeks in 7-day windows, both sources, plus dataset quality, each its own call.
        assert all(read.calls == 1 + 2 * 4 for read in prefetch.reads.values())
        calls_before = sim.state.usage.summary()["calls"]
        for pixel in pixels:
            no_meta = NoMeta()
            side = audit_read(sqlite_engine, pixel.id, no_meta)
            assert no_meta.calls == 0 and side.errors == ()
            assert side.counts is not None and len(side.counts) == 2 * 4 * 7 * 24
            assert {c.source for c in side.counts} == {"browser", "server"}
            assert side.quality is not None and side.quality.fetched_at == AT
        assert sim.state.usage.summary()["calls"] == calls_before
    # Taken once: another audit of the same hour reads Meta again, as without a prefetch.
    again = audit_read(sqlite_engine, pixels[0].id, clients(sim)(pixels[0]))
    assert again.errors == () and sim.state.usage.summary()["calls"] > calls_before


def test_the_next_hour_reads_only_the_last_day(sim: RunningSimulator, sqlite_engine: Engine) -> None:
    pixel = PixelConfig(id="2001")
    seed(sim, pixel.id)
    with prefetch_meta_sides(session_factory(sqlite_engine), [(pixel, AT)], client_for=clients(sim)):
        pass
    later = AT + timedelta(hours=1)
    with prefetch_meta_sides(session_factory(sqlite_engine), [(pixel, later)], client_for=clients(sim)) as prefetch:
        assert prefetch.reads[pixel.id].calls == 3  # browser, server (one window), dataset quality


def test_discard_forgets_reads_no_audit_took(sim: RunningSimulator, sqlite_engine: Engine) -> None:
    pixel = PixelConfig(id="3001")
    seed(sim, pixel.id, hours=24)
    prefetch = prefetch_meta_sides(session_factory(sqlite_engine), [(pixel, AT)], client_for=clients(sim))
    prefetch.discard()
    no_meta = NoMeta()
    side = audit_read(sqlite_engine, pixel.id, no_meta)
    assert no_meta.calls > 0 and side.counts is None  # read Meta itself (here: a client that fails)


def test_a_throttled_pixel_is_deferred_while_the_others_complete(sim: RunningSimulator,
                                                                 sqlite_engine: Engine) -> None:
    sim.state.add_tokens(valid=["token-of-a-busy-business"])
    sim.state.usage.configure({"call_budget": 30})
    busy = GraphClient(base_url=sim.url, access_token="token-of-a-busy-business", max_retries=0)
    for _ in range(30):  # another tool of that business used its whole budget
        busy.dataset_quality("x")
    busy.close()
    pixels = [PixelConfig(id="4001"), PixelConfig(id="4002"), PixelConfig(id="4003")]
    for pixel in pixels:
        seed(sim, pixel.id, hours=48)
    tokens = {"4001": "token-of-a-busy-business"}
    governor = UsageGovernor(max_in_flight=4, max_wait=5, sleep=lambda _s: None)
    with prefetch_meta_sides(session_factory(sqlite_engine), [(p, AT) for p in pixels], client_for=clients(sim, tokens),
                             workers=4, governor=governor) as prefetch:
        assert prefetch.deferred == ["4001"]
        # Only the calls already in flight were refused; the pixel's other parts were never sent.
        refused = sim.state.usage.summary()["throttled"]
        assert 1 <= refused <= 4
        throttled = audit_read(sqlite_engine, "4001", NoMeta())
        assert throttled.counts is None
        assert {e.kind for e in throttled.errors} == {"rate_limited"}  # a finding, as any failed read
        for pixel_id in ("4002", "4003"):
            side = audit_read(sqlite_engine, pixel_id, NoMeta())
            assert side.errors == () and side.counts and side.quality is not None
    assert prefetch.governor["throttled"] == refused


def test_a_slow_pixel_is_deferred_after_the_read_timeout(sim: RunningSimulator, sqlite_engine: Engine) -> None:
    sim.state.usage.configure({"pixel_latency_ms": {"5002": 3000}})
    pixels = [PixelConfig(id=f"500{n}") for n in (1, 2, 3)]
    for pixel in pixels:
        seed(sim, pixel.id, hours=24)
    with prefetch_meta_sides(session_factory(sqlite_engine), [(p, AT) for p in pixels], client_for=clients(sim),
                             workers=4, read_timeout=0.5) as prefetch:
        assert prefetch.deferred == ["5002"]
        slow = audit_read(sqlite_engine, "5002", NoMeta())
        assert slow.counts is None and {e.kind for e in slow.errors} == {"unreachable"}
        assert "deferred" in slow.errors[0].message
        for pixel_id in ("5001", "5003"):
            assert audit_read(sqlite_engine, pixel_id, NoMeta()).errors == ()


def test_concurrency_stays_within_the_bound(sim: RunningSimulator, sqlite_engine: Engine) -> None:
    sim.state.usage.configure({"latency_ms": 20})
    pixels = [PixelConfig(id=f"60{n:02d}") for n in range(12)]
    for pixel in pixels:
        seed(sim, pixel.id, hours=24)
    governor = UsageGovernor(max_in_flight=3)
    with prefetch_meta_sides(session_factory(sqlite_engine), [(p, AT) for p in pixels], client_for=clients(sim),
                             workers=3, governor=governor) as prefetch:
        assert len(prefetch.reads) == 12 and prefetch.deferred == []
    assert 1 <= governor.stats()["peak_in_flight"] <= 3


def test_a_pixel_without_a_token_reports_it(sim: RunningSimulator, sqlite_engine: Engine) -> None:
    pixel = PixelConfig(id="7001")
    with prefetch_meta_sides(session_factory(sqlite_engine), [(pixel, AT)], client_for=lambda _p: None):
        side = audit_read(sqlite_engine, pixel.id, None)
    assert side.counts is None and side.errors[0].kind == "unreachable"


def test_the_scheduler_reads_meta_for_the_round_before_its_audits(sim: RunningSimulator, sqlite_engine: Engine) -> None:
    from agent.scheduler import Scheduler

    pixels = [PixelConfig(id=f"80{n}") for n in range(3)]
    for pixel in pixels:
        seed(sim, pixel.id, hours=48)
    sides: dict[str, Any] = {}
    now = AT + timedelta(minutes=10)
    sched = Scheduler(services_factory=round_services(sqlite_engine, pixels, clients(sim), sides),
                      pixels=lambda: pixels, worker_id="w", clock=lambda: now, max_catch_up=1)
    records = sched.run_once()
    assert [r.status for r in records] == ["done"] * 3
    assert sched.last_prefetch is not None and set(sched.last_prefetch.reads) == {p.id for p in pixels}
    for side, calls in sides.values():
        assert calls == 0 and side.errors == () and side.counts


def test_the_scheduler_audits_a_pixel_while_others_are_still_being_read(sim: RunningSimulator,
                                                                       sqlite_engine: Engine) -> None:
    """Pipelined round: pixel 901's read is held until pixel 900 has been audited, so the round only
    completes with 901's read intact if the audits run while the reads do (and each audit still
    waits for its own pixel's read: 901's audit calls Meta no more)."""
    import threading

    from agent.scheduler import Scheduler

    pixels = [PixelConfig(id="900"), PixelConfig(id="901")]
    for pixel in pixels:
        seed(sim, pixel.id, hours=48)
    first_audited = threading.Event()
    gate_opened: list[bool] = []

    class HeldClient(GraphClient):
        def pixel_stats(self, pixel_id: str, **kwargs: Any) -> Any:
            if pixel_id == "901":
                gate_opened.append(first_audited.wait(10))
            return super().pixel_stats(pixel_id, **kwargs)

    sides: dict[str, Any] = {}
    services = round_services(
        sqlite_engine, pixels,
        lambda _p: HeldClient(base_url=sim.url, access_token="sim-token", max_retries=0),
        sides, after_audit=first_audited.set)

    now = AT + timedelta(minutes=10)
    sched = Scheduler(services_factory=services, pixels=lambda: pixels, worker_id="w", clock=lambda: now,
                      max_catch_up=1, read_timeout=30)
    records = sched.run_once()
    assert [(r.pixel_id, r.status) for r in records] == [("900", "done"), ("901", "done")]
    assert gate_opened and all(gate_opened)  # 901 was still being read when 900 was audited
    for side, calls in sides.values():
        assert calls == 0 and side.errors == () and side.counts


def test_capi_agent_audit_of_several_pixels_reads_meta_beside_the_audits(sim: RunningSimulator,
                                                                          sqlite_engine: Engine) -> None:
    """``AgentServices.audit_round`` (``capi-agent audit``) reads every pixel's Meta side in the
    background: each audit takes its pixel's stored read and calls Meta no more."""
    from agent.agent_services import AgentServices

    pixels = [PixelConfig(id=f"95{n}") for n in range(3)]
    for pixel in pixels:
        seed(sim, pixel.id, hours=48)
    sides: dict[str, Any] = {}
    services = round_services(sqlite_engine, pixels, clients(sim), sides,
                              answer=lambda pixel: {"report": {"pixels": [{"pixel_id": pixel.id}]}})

    merged = AgentServices.audit_round(services, pixels, AT)  # type: ignore[arg-type]
    assert [p["pixel_id"] for p in merged["pixels"]] == [p.id for p in pixels]
    for side, calls in sides.values():
        assert calls == 0 and side.errors == () and side.counts
