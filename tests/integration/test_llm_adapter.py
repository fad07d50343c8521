"""The LLM adapter over real loopback HTTP: the real ``openai`` client against the fake server."""

from __future__ import annotations

import json
import logging
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from agent.llm import LLMAdapter, LLMConfig, LLMUnavailable, TokenBudget, ToolSpec
from agent.llm.adapter import FINAL_ANSWER_REQUEST
from tests.fakes.openai_server import Answer, Delay, HTTPError, ToolCalls
from tests.fixtures.llm import FAKE_API_KEY, FAKE_MODEL

COUNTS_TOOL = ToolSpec(
    name="event_counts",
    description="Hourly server event counts for one event name.",
    parameters={
        "type": "object",
        "properties": {"event_name": {"type": "string"}},
        "required": ["event_name"],
    },
)
DIAGNOSIS = '{"root_cause": "none", "confidence": 0.9, "finding_ids": [], "narrative": "ok", "fix_kinds": []}'
FAST_RETRY = {"retry-after-ms": "1"}


class ToolBox:
    """Records the tool calls the adapter makes; answers or raises as told."""

    def __init__(self, answer: str = '{"hours": [120, 118, 0]}', error: Exception | None = None) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.answer = answer
        self.error = error

    def __call__(self, name: str, arguments: dict[str, Any]) -> str:
        self.calls.append((name, arguments))
        if self.error is not None:
            raise self.error
        return self.answer


def run(adapter: LLMAdapter, tools: ToolBox, *, budget: int = 20_000, **kwargs: Any):
    return adapter.run_tool_loop(
        system="You are a CAPI analyst. Answer in JSON.",
        user=kwargs.pop("user", "Diagnose pixel 1234567890123456."),
        tools=[COUNTS_TOOL],
        execute_tool=tools,
        budget=TokenBudget(budget),
        **kwargs,
    )


def tool_messages(request: dict[str, Any]) -> list[dict[str, Any]]:
    return [message for message in request["messages"] if message["role"] == "tool"]


def test_tool_round_trip_through_the_real_client(fake_openai, llm_adapter):
    fake_openai.script([("event_counts", {"event_name": "Purchase"})], DIAGNOSIS)
    tools = ToolBox()

    result = run(llm_adapter, tools)

    assert result.stopped == "answer"
    assert json.loads(result.content) == json.loads(DIAGNOSIS)
    assert tools.calls == [("event_counts", {"event_name": "Purchase"})]
    assert [(r.name, r.arguments, r.result, r.ok) for r in result.tool_calls] == [
        ("event_counts", {"event_name": "Purchase"}, '{"hours": [120, 118, 0]}', True)
    ]
    assert result.rounds == 2 and result.usage.calls == 2
    first, second = fake_openai.requests
    assert first["model"] == FAKE_MODEL and first["temperature"] == 0
    assert first["response_format"] == {"type": "json_object"}
    assert first["tools"] == [COUNTS_TOOL.to_openai()]
    assert [m["role"] for m in first["messages"]] == ["system", "user"]
    # The second request carries the assistant's tool call and the tool's answer, linked by id.
    assistant = second["messages"][2]
    assert assistant["role"] == "assistant"
    call_id = assistant["tool_calls"][0]["id"]
    assert tool_messages(second) == [
        {"role": "tool", "tool_call_id": call_id, "content": '{"hours": [120, 118, 0]}'}
    ]


def test_usage_is_summed_from_each_response_and_charged_to_the_budget(fake_openai, llm_adapter):
    fake_openai.script(
        ToolCalls([("event_counts", {"event_name": "Lead"})], prompt_tokens=300, completion_tokens=20),
        Answer(DIAGNOSIS, prompt_tokens=350, completion_tokens=40),
    )
    budget = TokenBudget(5_000)
    result = llm_adapter.run_tool_loop(
        system="s", user="u", tools=[COUNTS_TOOL], execute_tool=ToolBox(), budget=budget
    )
    assert (result.usage.prompt_tokens, result.usage.completion_tokens, result.usage.total) == (650, 60, 710)
    assert budget.spent == 710 and budget.remaining == 4_290


def test_a_tool_that_raises_becomes_an_error_message_for_the_model(fake_openai, llm_adapter):
    fake_openai.script([("event_counts", {"event_name": "Purchase"})], DIAGNOSIS)
    tools = ToolBox(error=RuntimeError("ledger is locked"))

    result = run(llm_adapter, tools)

    assert result.stopped == "answer"
    record = result.tool_calls[0]
    assert not record.ok and "RuntimeError" in record.error and "ledger is locked" in record.error
    sent = tool_messages(fake_openai.requests[1])[0]["content"]
    assert sent.startswith("error:") and "ledger is locked" in sent


def test_an_unknown_tool_is_refused_without_running_anything(fake_openai, llm_adapter):
    fake_openai.script([("drop_all_tables", {})], DIAGNOSIS)
    tools = ToolBox()

    result = run(llm_adapter, tools)

    assert tools.calls == []
    assert result.stopped == "answer"
    assert result.tool_calls[0].name == "drop_all_tables" and not result.tool_calls[0].ok
    sent = tool_messages(fake_openai.requests[1])[0]["content"]
    assert "unknown tool" in sent and "event_counts" in sent


@pytest.mark.parametrize("raw_arguments", ['{"event_name": "Purch', '["Purchase"]', "null"])
def test_malformed_tool_arguments_are_reported_back(fake_openai, llm_adapter, raw_arguments):
    fake_openai.script(ToolCalls([("event_counts", raw_arguments)]), DIAGNOSIS)
    tools = ToolBox()

    result = run(llm_adapter, tools)

    assert tools.calls == []
    assert result.tool_calls[0].arguments is None and not result.tool_calls[0].ok
    assert "not a valid JSON object" in tool_messages(fake_openai.requests[1])[0]["content"]
    assert result.stopped == "answer"


def test_budget_spent_mid_loop_stops_before_the_next_call(fake_openai, llm_adapter):
    fake_openai.script(
        ToolCalls([("event_counts", {"event_name": "Purchase"})], prompt_tokens=900, completion_tokens=150),
        DIAGNOSIS,
    )
    tools = ToolBox()

    result = run(llm_adapter, tools, budget=1_000)

    assert result.stopped == "budget" and result.content is None
    assert len(fake_openai.requests) == 1 and fake_openai.pending == 1
    assert len(tools.calls) == 1  # the turn that was paid for still ran its tools
    assert result.usage.total == 1_050


def test_a_spent_budget_refuses_before_any_call(fake_openai, llm_adapter):
    fake_openai.script(DIAGNOSIS)
    result = run(llm_adapter, ToolBox(), budget=0)
    assert result.stopped == "budget" and result.rounds == 0
    assert fake_openai.requests == []


def test_max_rounds_then_one_last_call_without_tools(fake_openai, llm_adapter):
    call = [("event_counts", {"event_name": "Purchase"})]
    fake_openai.script(call, call, DIAGNOSIS)
    tools = ToolBox()

    result = run(llm_adapter, tools, max_rounds=2)

    assert result.stopped == "rounds" and result.content == DIAGNOSIS
    assert result.rounds == 3 and len(tools.calls) == 2
    final = fake_openai.requests[2]
    assert "tools" not in final
    assert final["messages"][-1] == {"role": "user", "content": FINAL_ANSWER_REQUEST}


def test_max_rounds_default_comes_from_the_config(fake_openai, make_llm_adapter):
    call = [("event_counts", {"event_name": "Purchase"})]
    fake_openai.script(call, DIAGNOSIS)
    result = run(make_llm_adapter(max_tool_rounds=1), ToolBox())
    assert result.stopped == "rounds" and result.rounds == 2


def test_no_final_call_when_rounds_end_with_the_budget_spent(fake_openai, llm_adapter):
    fake_openai.script(ToolCalls([("event_counts", {"event_name": "Lead"})], prompt_tokens=500), DIAGNOSIS)
    result = run(llm_adapter, ToolBox(), budget=400, max_rounds=1)
    assert result.stopped == "budget" and len(fake_openai.requests) == 1


def test_plain_answer_without_tools_or_json_mode(fake_openai, llm_adapter):
    fake_openai.script("Purchase events recovered at 14:00.")
    result = llm_adapter.run_tool_loop(
        system="s", user="How is Purchase doing?", tools=[], execute_tool=ToolBox(),
        budget=TokenBudget(1_000), response_format_json=False,
        history=[{"role": "user", "content": "hi"}, {"role": "assistant", "content": "Hello."}],
    )
    assert result.content == "Purchase events recovered at 14:00." and result.stopped == "answer"
    request = fake_openai.requests[0]
    assert "tools" not in request and "response_format" not in request
    assert [m["role"] for m in request["messages"]] == ["system", "user", "assistant", "user"]


def test_timeout_surfaces_as_llm_unavailable(fake_openai, make_llm_adapter):
    fake_openai.script(Delay(1.0, then=DIAGNOSIS))
    adapter = make_llm_adapter(timeout_seconds=0.2)
    with pytest.raises(LLMUnavailable) as caught:
        run(adapter, ToolBox())
    assert caught.value.reason == "timeout"


@pytest.mark.parametrize(("status", "reason"), [(500, "server_error"), (503, "server_error"),
                                                (429, "rate_limited")])
def test_server_errors_surface_after_the_clients_retries(fake_openai, make_llm_adapter, status, reason):
    fake_openai.script(*[HTTPError(status, headers=FAST_RETRY)] * 3)
    adapter = make_llm_adapter(max_retries=2)
    with pytest.raises(LLMUnavailable) as caught:
        run(adapter, ToolBox())
    assert (caught.value.reason, caught.value.status_code) == (reason, status)
    assert len(fake_openai.requests) == 3  # one try and two retries


def test_a_retry_that_succeeds_is_invisible_to_the_caller(fake_openai, make_llm_adapter):
    fake_openai.script(HTTPError(429, headers=FAST_RETRY), DIAGNOSIS)
    result = run(make_llm_adapter(max_retries=1), ToolBox())
    assert result.content == DIAGNOSIS and len(fake_openai.requests) == 2


def test_bad_key_surfaces_as_auth_and_never_shows_the_key(fake_openai, make_llm_adapter):
    fake_openai.script(DIAGNOSIS)
    adapter = make_llm_adapter(api_key=SecretStr("sk-wrong-secret-value"))
    with pytest.raises(LLMUnavailable) as caught:
        run(adapter, ToolBox())
    assert caught.value.reason == "auth" and caught.value.status_code == 401
    assert "sk-wrong-secret-value" not in str(caught.value)
    assert "sk-wrong-secret-value" not in repr(adapter.config)


def test_unreachable_server_surfaces_as_connection():
    # Bind then close a socket: its port on loopback is (almost surely) closed now.
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    config = LLMConfig(model=FAKE_MODEL, base_url=f"http://127.0.0.1:{port}/v1",
                       api_key=SecretStr(FAKE_API_KEY), timeout_seconds=2, max_retries=0)
    with pytest.raises(LLMUnavailable) as caught:
        run(LLMAdapter.from_config(config), ToolBox())
    assert caught.value.reason == "connection"


def test_an_injected_httpx_client_is_used(fake_openai):
    fake_openai.script(DIAGNOSIS)
    seen: list[str] = []
    with httpx.Client(event_hooks={"request": [lambda request: seen.append(request.url.path)]}) as client:
        config = LLMConfig(model=FAKE_MODEL, base_url=fake_openai.url, api_key=SecretStr(FAKE_API_KEY),
                           timeout_seconds=2, max_retries=0)
        result = run(LLMAdapter.from_config(config, http_client=client), ToolBox())
    assert result.content == DIAGNOSIS and seen == ["/v1/chat/completions"]


CANARY_EMAIL = "jane.canary@example.com"
CANARY_PHONE = "+1 (415) 555-0199"
CANARY_IP = "203.0.113.77"
CANARY_IPV6 = "2001:db8::4242"
CANARY_TOOL_EMAIL = "bob.canary@shop.example"
KEPT = ["62a14e44f765419d10fea99367361a727c12365e2520f32218d505ed9aa0f62f", "1234567890123456",
        "2026-11-20T10:00:03Z", "fb.1.1763632000000.AbCd"]


def test_pii_canaries_are_scrubbed_from_everything_sent(fake_openai, llm_adapter):
    fake_openai.script([("event_counts", {"event_name": "Purchase"})], DIAGNOSIS)
    tools = ToolBox(answer=json.dumps({"last_error": f"client {CANARY_IPV6} sent {CANARY_TOOL_EMAIL}",
                                       "kept": KEPT}))
    user = (f"Customer {CANARY_EMAIL} called from {CANARY_PHONE} at ip {CANARY_IP}; "
            f"hash {KEPT[0]} pixel {KEPT[1]} at {KEPT[2]} fbc {KEPT[3]}")

    result = run(llm_adapter, tools, user=user)

    sent = json.dumps(fake_openai.requests)
    for canary in (CANARY_EMAIL, CANARY_PHONE, CANARY_IP, CANARY_IPV6, CANARY_TOOL_EMAIL, "555-0199"):
        assert canary not in sent
    for value in KEPT:
        assert value in sent
    assert "[email]" in sent and "[phone]" in sent and "[ip]" in sent
    # Counted once per value masked: the user text is scrubbed once even though both requests carry it.
    assert result.scrubbed == {"email": 2, "phone": 1, "ip": 2}
    assert CANARY_TOOL_EMAIL not in result.tool_calls[0].result


def test_prompt_text_is_not_logged_at_info(fake_openai, llm_adapter, caplog):
    caplog.set_level(logging.INFO)
    fake_openai.script([("event_counts", {"event_name": "Purchase"})], DIAGNOSIS)
    run(llm_adapter, ToolBox(answer="tool-result-marker"), user="user-prompt-marker")
    logged = "\n".join(record.getMessage() for record in caplog.records)
    assert "LLM call" in logged  # the adapter does log, just not the contents
    for marker in ("user-prompt-marker", "tool-result-marker", "CAPI analyst", FAKE_API_KEY):
        assert marker not in logged


def test_too_many_calls_in_one_turn_are_refused_past_the_limit(fake_openai, llm_adapter):
    from agent.llm.adapter import MAX_TOOL_CALLS_PER_ROUND

    calls = [("event_counts", {"event_name": f"E{i}"}) for i in range(MAX_TOOL_CALLS_PER_ROUND + 2)]
    fake_openai.script(calls, DIAGNOSIS)
    tools = ToolBox()
    result = run(llm_adapter, tools)
    assert len(tools.calls) == MAX_TOOL_CALLS_PER_ROUND
    assert [record.ok for record in result.tool_calls].count(False) == 2
    assert len(tool_messages(fake_openai.requests[1])) == MAX_TOOL_CALLS_PER_ROUND + 2  # every call answered


def test_a_huge_tool_result_is_cut_and_marked(fake_openai, llm_adapter):
    from agent.llm.adapter import MAX_TOOL_RESULT_CHARS

    fake_openai.script([("event_counts", {"event_name": "Purchase"})], DIAGNOSIS)
    run(llm_adapter, ToolBox(answer="x" * (MAX_TOOL_RESULT_CHARS + 500)))
    sent = tool_messages(fake_openai.requests[1])[0]["content"]
    assert sent.startswith("x" * 100) and sent.endswith("[truncated: 500 more characters]")
