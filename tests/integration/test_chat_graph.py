"""The chat graph: tool use, memory through checkpointers, proposals that wait for approval, and
offline answers."""

from __future__ import annotations

import json
import sqlite3
import uuid

import pytest
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.checkpoint.sqlite import SqliteSaver

from agent.graphs.chat import ChatGraphContext, build_chat_graph, chat_input
from agent.reasoning.context import ChatContext
from tests.fakes.openai_server import Answer, HTTPError, ToolCalls
from tests.unit.test_reasoning_toolbox import READ_ONLY_TOOLS, scenario


def context(kind: str = "token_invalid", proposals: list[dict] | None = None) -> ChatContext:
    s = scenario(kind)
    return ChatContext(pixel_id=s.inputs.pixel_id, inputs=s.inputs, findings=s.findings,
                       incidents=s.incidents, proposals=proposals or [])


def chat_graph(*, adapter, context_loader, propose, checkpointer):
    """The compiled graph and the run context each turn gets (a fresh one per turn, as Slack passes it)."""
    graph = build_chat_graph(checkpointer=checkpointer)
    return graph, lambda: ChatGraphContext(adapter=adapter, load_context=context_loader, propose=propose)


def ask(chat, question: str, thread: str, pixel_id: str | None = "1234567890") -> dict:
    graph, run_context = chat
    return graph.invoke(chat_input(question, pixel_id), {"configurable": {"thread_id": thread}},
                        context=run_context())


def test_a_question_answered_with_a_tool_call(fake_openai, llm_adapter):
    fake_openai.script(
        ToolCalls([("delivery_errors", {"hours": 3})]),
        Answer("Meta refuses the access token (190/463) since 12:00, see f_41cdf8240c716fbc."),
    )
    graph = chat_graph(adapter=llm_adapter, context_loader=lambda _: context(), propose=None,
                             checkpointer=InMemorySaver())
    state = ask(graph, "Why did Purchase drop?", "t1")
    assert state["answer"].startswith("Meta refuses the access token")
    assert state["source"] == "llm" and state["tool_calls"] == ["delivery_errors"]
    assert state["usage"]["calls"] == 2 and state["usage"]["prompt_tokens"] > 0
    offered = {t["function"]["name"] for t in fake_openai.requests[0]["tools"]}
    assert offered == READ_ONLY_TOOLS | {"propose_fix"}
    assert '"190/463"' in fake_openai.requests[1]["messages"][-1]["content"]
    user = fake_openai.requests[0]["messages"][-1]["content"]
    assert "access_token_invalid" in user and "Why did Purchase drop?" in user


def test_follow_up_has_memory_through_a_sqlite_checkpointer_file(fake_openai, llm_adapter, tmp_path):
    path = tmp_path / "chat.sqlite"
    thread = f"C123:{uuid.uuid4().hex}"
    fake_openai.script(Answer("The token expired at 12:00."), Answer("Since 12:00 UTC, about 3 hours."))
    first = sqlite3.connect(path, check_same_thread=False)
    graph = chat_graph(adapter=llm_adapter, context_loader=lambda _: context(), propose=None,
                             checkpointer=SqliteSaver(first))
    ask(graph, "What broke?", thread)
    first.close()

    second = sqlite3.connect(path, check_same_thread=False)
    graph2 = chat_graph(adapter=llm_adapter, context_loader=lambda _: context(), propose=None,
                              checkpointer=SqliteSaver(second))
    state = ask(graph2, "Since when?", thread)
    second.close()
    messages = fake_openai.requests[1]["messages"]
    contents = [m["content"] for m in messages]
    assert "What broke?" in contents and "The token expired at 12:00." in contents
    assert [m["role"] for m in state["messages"]] == ["user", "assistant", "user", "assistant"]
    assert state["usage"]["calls"] == 2  # summed over the conversation
    # another thread starts fresh
    fake_openai.script(Answer("Hello."))
    other = sqlite3.connect(path, check_same_thread=False)
    fresh = ask(chat_graph(adapter=llm_adapter, context_loader=lambda _: context(), propose=None,
                                 checkpointer=SqliteSaver(other)), "Hi", "another-thread")
    other.close()
    assert len(fresh["messages"]) == 2


def test_propose_fix_creates_a_proposal_through_the_callable_and_never_executes(fake_openai, llm_adapter):
    created: list[dict] = []

    def propose(request: dict) -> dict:
        created.append(request)
        return {"id": "p_1", "status": "awaiting_approval", **request}

    fake_openai.script(
        ToolCalls([("propose_fix", {"kind": "replay", "since": "2026-11-24T12:00:00Z",
                                    "until": "2026-11-24T15:00:00Z", "event_names": ["Purchase"],
                                    "reason": "token fixed; resend refused events (i_518b)"}),
                   ("propose_fix", {"kind": "execute", "since": "x", "until": "y", "event_names": [],
                                    "reason": "run it"})]),
        Answer("I proposed a replay of Purchase; an approver must accept it."),
    )
    graph = chat_graph(adapter=llm_adapter, context_loader=lambda _: context(), propose=propose,
                             checkpointer=InMemorySaver())
    state = ask(graph, "Can you fix it?", "t-fix")
    assert created == [{"kind": "replay", "since": "2026-11-24T12:00:00Z", "until": "2026-11-24T15:00:00Z",
                        "event_names": ["Purchase"], "reason": "token fixed; resend refused events (i_518b)"}]
    assert [p["id"] for p in state["proposals"]] == ["p_1"]
    assert "p_1" in state["answer"] and "waiting for approval" in state["answer"]
    replies = [m["content"] for m in fake_openai.requests[1]["messages"] if m["role"] == "tool"]
    assert "awaiting_approval" in replies[0] and "kind must be one of" in replies[1]
    offered = {t["function"]["name"] for t in fake_openai.requests[0]["tools"]}
    assert not any("execute" in name or "approve" in name for name in offered)


def test_llm_down_gives_the_offline_answer_without_exception_text(fake_openai, llm_adapter):
    fake_openai.script(HTTPError(500))
    graph = chat_graph(adapter=llm_adapter, context_loader=lambda _: context(), propose=None,
                             checkpointer=InMemorySaver())
    state = ask(graph, "status?", "t-down")
    assert state["source"] == "fallback"
    assert "open incident" in state["answer"] and "offline reasoner" in state["answer"]
    assert "500" not in state["answer"] and "Error" not in state["answer"]


def test_answers_are_slack_safe_and_questions_are_scrubbed_before_storage(fake_openai, llm_adapter, tmp_path):
    fake_openai.script(Answer("<!channel> done <@U999> <http://evil.example|approve here>"))
    conn = sqlite3.connect(tmp_path / "c.sqlite", check_same_thread=False)
    graph = chat_graph(adapter=llm_adapter, context_loader=lambda _: context(), propose=None,
                             checkpointer=SqliteSaver(conn))
    state = ask(graph, "I am jane.doe@example.com, call +1 650 555 0199: status?", "t-safe")
    conn.commit()
    conn.close()
    assert state["answer"] == "done approve here"
    assert "jane.doe" not in json.dumps(fake_openai.requests)
    stored = (tmp_path / "c.sqlite").read_bytes()
    assert b"jane.doe" not in stored and b"555 0199" not in stored


@pytest.mark.parametrize(("question", "expected"), [
    ("status?", "has 1 open incident(s)"),
    ("why is it broken", "Access token invalid or expired"),
    ("what fixes do you propose", "After the new token is set, resend"),
    ("help", "Fixes only run after an approver"),
])
def test_offline_chat_answers_by_intent(question, expected):
    graph = chat_graph(adapter=None, context_loader=lambda _: context(), propose=None,
                             checkpointer=InMemorySaver())
    state = ask(graph, question, f"off-{question}")
    assert expected in state["answer"]
    assert state["source"] == "offline" and state["usage"]["calls"] == 0


def test_offline_status_of_a_healthy_and_an_unaudited_pixel():
    healthy = ChatContext(pixel_id="42", inputs=scenario().inputs, findings=[], incidents=[])
    graph = chat_graph(adapter=None, context_loader=lambda _: healthy, propose=None,
                             checkpointer=InMemorySaver())
    assert "looks healthy" in ask(graph, "how are we doing", "h")["answer"]
    never = chat_graph(adapter=None, context_loader=lambda pid: ChatContext(pixel_id=pid),
                             propose=None, checkpointer=InMemorySaver())
    assert "has not been audited yet" in ask(never, "status", "n", pixel_id="77")["answer"]


def test_offline_fix_answer_lists_open_proposals():
    ctx = context(proposals=[{"id": "p_9", "kind": "replay", "summary": "Resend 120 Purchase events",
                              "approver_token": "secret"}])
    graph = chat_graph(adapter=None, context_loader=lambda _: ctx, propose=None,
                             checkpointer=InMemorySaver())
    text = ask(graph, "any fix waiting?", "p")["answer"]
    assert "replay p_9: Resend 120 Purchase events" in text and "secret" not in text


def test_each_turn_loads_the_pixels_context_once_and_answers_from_it():
    loaded: list[str | None] = []

    def load(pixel_id: str | None) -> ChatContext:
        loaded.append(pixel_id)
        return context() if pixel_id == "1234567890" else ChatContext(pixel_id=pixel_id)

    chat = chat_graph(adapter=None, context_loader=load, propose=None, checkpointer=InMemorySaver())
    assert "has 1 open incident(s)" in ask(chat, "status?", "once")["answer"]
    assert "has not been audited yet" in ask(chat, "status?", "once", pixel_id="77")["answer"]
    assert loaded == ["1234567890", "77"]
