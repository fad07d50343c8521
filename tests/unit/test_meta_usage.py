"""Meta's usage headers and the governor that keeps concurrent reads under the budget: parsing,
slowing down near the limit, backing off after a throttling error (injected clock and sleep), and the
Graph API client reporting to it against the simulator's budget."""

from __future__ import annotations

import json
import threading

import pytest

from tools.meta.client import GraphClient, pooled_http
from tools.meta.errors import RateLimitedError
from tools.meta.simulator import RunningSimulator
from tools.meta.usage import BudgetExhausted, Usage, UsageGovernor, parse_usage


class FakeTime:
    def __init__(self) -> None:
        self.now = 1000.0
        self.slept: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def test_parses_app_business_and_ad_account_headers() -> None:
    usage = parse_usage({
        "X-App-Usage": '{"call_count":28,"total_cputime":25,"total_time":31}',
        "x-business-use-case-usage": json.dumps({"112130216863063": [
            {"type": "ads_management", "call_count": 95, "total_cputime": 20, "total_time": 20,
             "estimated_time_to_regain_access": 19}]}),
        "X-Ad-Account-Usage": '{"acc_id_util_pct":9.67,"reset_time_duration":0}',
    })
    assert usage is not None
    assert usage.app_pct == 31
    assert usage.business_pct == {"112130216863063": 95}
    assert usage.ad_account_pct == pytest.approx(9.67)
    assert usage.max_pct == 95
    assert usage.regain_seconds == 19 * 60  # Meta gives minutes


def test_no_or_malformed_headers_are_not_zero_usage() -> None:
    assert parse_usage({}) is None
    assert parse_usage({"X-App-Usage": "not json", "X-Business-Use-Case-Usage": "[1,2]"}) is None
    partial = parse_usage({"X-App-Usage": '{"call_count":"12","total_time":null}'})
    assert partial is not None and partial.app_pct == 12 and partial.regain_seconds == 0


def test_governor_lets_everything_through_below_the_threshold_then_narrows() -> None:
    governor = UsageGovernor(max_in_flight=20, slow_at=75, stop_at=95)
    assert governor.limit("biz") == 20
    governor.observe(Usage(business_pct={"1": 85.0}), key="biz")
    assert governor.limit("biz") == 10
    assert governor.limit("other") == 20  # another business keeps its own budget
    governor.observe(Usage(app_pct=97.0), key="other")  # the app's usage applies to every key
    assert governor.limit("biz") == 1 and governor.limit("other") == 1


def test_governor_slows_each_call_down_near_the_limit() -> None:
    fake = FakeTime()
    governor = UsageGovernor(slow_at=75, stop_at=95, slow_delay=2.0, clock=fake.clock, sleep=fake.sleep)
    governor.acquire("biz")
    governor.release("biz")
    assert fake.slept == []
    governor.observe(Usage(business_pct={"1": 85.0}), key="biz")
    governor.acquire("biz")
    governor.release("biz")
    assert fake.slept == [pytest.approx(1.0)]
    assert governor.stats()["slowed"] == 1


def test_throttling_backs_off_for_metas_estimate_then_resumes() -> None:
    fake = FakeTime()
    governor = UsageGovernor(max_wait=120, clock=fake.clock, sleep=fake.sleep)
    error = RateLimitedError("(#80004) too many calls", code=80004)
    closed = governor.throttled(error, key="biz", usage=Usage(business_pct={"1": 100.0}, regain_seconds=60))
    assert closed == 60
    assert governor.blocked_for("biz") == 60 and governor.blocked_for("other") == 0
    governor.acquire("biz")  # waits out the estimate, then goes on
    governor.release("biz")
    assert fake.slept == [60]
    governor.acquire("other")  # never waited: its budget is open
    governor.release("other")
    assert fake.slept == [60]


def test_retry_after_and_a_default_when_meta_gives_no_estimate() -> None:
    fake = FakeTime()
    governor = UsageGovernor(clock=fake.clock, sleep=fake.sleep)
    assert governor.throttled(RateLimitedError("x", code=17, retry_after=7.0), key="a") == 7.0
    assert governor.throttled(RateLimitedError("x", code=17), key="b") == 60.0


def test_a_budget_closed_longer_than_the_round_waits_is_deferred_at_once() -> None:
    fake = FakeTime()
    governor = UsageGovernor(max_wait=30, clock=fake.clock, sleep=fake.sleep)
    governor.throttled(RateLimitedError("(#4) Application request limit reached", code=4), key="biz",
                       usage=Usage(app_pct=100.0, regain_seconds=600))
    for key in ("biz", "other"):  # code 4 is the app's limit: every business waits
        with pytest.raises(BudgetExhausted) as caught:
            governor.acquire(key)
        assert caught.value.kind == "rate_limited" and caught.value.retry_after == pytest.approx(600)
    assert fake.slept == []
    assert governor.stats()["deferred"] == 2


def test_concurrency_bound_is_respected_across_threads() -> None:
    governor = UsageGovernor(max_in_flight=3)
    inside, peak, lock = 0, 0, threading.Lock()
    gate = threading.Barrier(8)

    def work() -> None:
        nonlocal inside, peak
        gate.wait()
        for _ in range(20):
            governor.acquire("biz")
            with lock:
                inside += 1
                peak = max(peak, inside)
            with lock:
                inside -= 1
            governor.release("biz")

    threads = [threading.Thread(target=work) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert peak <= 3 and governor.stats()["peak_in_flight"] <= 3


def test_client_reports_usage_and_does_not_retry_a_throttled_call(meta_sim: RunningSimulator) -> None:
    meta_sim.state.usage.configure({"call_budget": 2, "reset": True})
    slept: list[float] = []
    governor = UsageGovernor(max_wait=5, sleep=slept.append)
    with pooled_http() as http:
        client = GraphClient(base_url=meta_sim.url, access_token="sim-token", sleep=slept.append)
        client.use_http(http).use_governor(governor, key="shop")
        client.dataset_quality("123")
        assert client.last_usage is not None and client.last_usage.max_pct == 50
        client.dataset_quality("123")
        with pytest.raises(RateLimitedError) as caught:
            client.dataset_quality("123")
        assert caught.value.code == 80004 and caught.value.attempts == 1  # the governor decides, no retry
        assert caught.value.retry_after is not None and caught.value.retry_after >= 60
        with pytest.raises(BudgetExhausted):  # Meta's estimate is past max_wait: deferred, no call made
            client.dataset_quality("123")
        client.close()
    assert meta_sim.state.usage.summary()["throttled"] == 1
    assert slept == [1.0]  # at 100 % the third call was slowed down before Meta refused it
