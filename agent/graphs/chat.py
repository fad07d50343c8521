"""The chat graph: a question in a Slack thread -> load the pixel's context -> answer.

``answer`` runs the LLM tool loop over the read-only toolbox plus ``propose_fix`` (which creates a
proposal a person must still approve; there is no execute tool), or, with no LLM, answers from the
context by keyword intents. The thread id is the conversation id; the checkpointer keeps the message
history, so follow-up questions have memory. State is JSON-serialisable and holds no raw PII: the
question is scrubbed before it is stored. The LLM, the context loader and the proposal store come in
through the run's ``ChatGraphContext``, the way the audit and fix graphs take theirs.
"""

from __future__ import annotations

import json
import operator
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Annotated, Any, NotRequired, TypedDict

from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.graph import END, START, StateGraph
from langgraph.graph.state import CompiledStateGraph
from langgraph.runtime import Runtime

import prompts
from agent.llm import LLMAdapter, LLMUnavailable, scrub
from agent.reasoning.chat_offline import offline_answer
from agent.reasoning.context import ChatContext, context_digest
from agent.reasoning.propose_tool import PROPOSE_FIX_SPEC, Propose, propose_fix_handler
from agent.reasoning.render import catalogue_text, to_json
from agent.reasoning.slack_text import slack_safe
from agent.reasoning.toolbox import build_toolbox

ContextLoader = Callable[[str | None], ChatContext]
ANSWER_MAX_CHARS = 3000
MAX_HISTORY_MESSAGES = 12
MAX_QUESTION_CHARS = 2000
FALLBACK_NOTE = ("(The language model is not available right now; "
                 "this answer comes from the offline reasoner.)")
BUDGET_NOTE = "(The token budget for this question ran out; this answer comes from the offline reasoner.)"


def _add_usage(left: dict[str, int] | None, right: dict[str, int] | None) -> dict[str, int]:
    out = dict(left or {})
    for key, value in (right or {}).items():
        out[key] = out.get(key, 0) + value
    return out


class ChatInput(TypedDict):
    """What a caller passes: the question and, optionally, the pixel it is about."""

    question: str
    pixel_id: NotRequired[str | None]


class ChatState(ChatInput, total=False):
    # Conversation so far ({"role": "user"|"assistant", "content": str}); kept by the checkpointer.
    messages: Annotated[list[dict[str, str]], operator.add]
    # JSON digest of the context this turn was answered from.
    context: dict[str, Any]
    answer: str
    source: str  # llm | offline | fallback
    tool_calls: list[str]
    # Proposals created in this conversation (each still needs a person's approval).
    proposals: Annotated[list[dict[str, Any]], operator.add]
    turn_usage: dict[str, int]
    usage: Annotated[dict[str, int], _add_usage]  # summed over the conversation


def chat_input(question: str, pixel_id: str | None = None) -> ChatInput:
    """The graph input for ``question``, scrubbed of raw PII before anything stores it."""
    return {"question": scrub(question)[:MAX_QUESTION_CHARS], "pixel_id": pixel_id}


@dataclass(kw_only=True)
class ChatGraphContext:
    """Per-run dependencies of the chat graph (not checkpointed), as ``AuditContext`` and ``FixContext``
    are for the other graphs."""

    adapter: LLMAdapter | None
    # pixel id (or None) -> what the answer is drawn from: the pixel's latest audit and open incidents.
    load_context: ContextLoader
    # Creates a proposal a person must still approve; None: the chat cannot propose.
    propose: Propose | None = None
    # The context loaded by ``load_context`` for ``answer`` of the same turn (AuditInputs are not JSON).
    memo: dict[str | None, ChatContext] = field(default_factory=dict)


def load_context(state: ChatState, runtime: Runtime[ChatGraphContext]) -> dict[str, Any]:
    ctx = runtime.context
    pixel_id = state.get("pixel_id")
    context = ctx.memo[pixel_id] = ctx.load_context(pixel_id)
    return {"question": scrub(state["question"])[:MAX_QUESTION_CHARS], "context": context_digest(context)}


def answer(state: ChatState, runtime: Runtime[ChatGraphContext]) -> dict[str, Any]:
    ctx = runtime.context
    question = state["question"]
    pixel_id = state.get("pixel_id")
    context = ctx.memo.pop(pixel_id) if pixel_id in ctx.memo else ctx.load_context(pixel_id)
    history = list(state.get("messages") or [])[-MAX_HISTORY_MESSAGES:]
    reply = _answer(ctx.adapter, ctx.propose, question, context, state.get("context") or context_digest(context),
                    history)
    reply["messages"] = [{"role": "user", "content": question},
                         {"role": "assistant", "content": reply["answer"]}]
    reply["usage"] = reply["turn_usage"]
    return reply


def build_chat_graph(*, checkpointer: BaseCheckpointSaver | None = None
                     ) -> CompiledStateGraph[ChatState, ChatGraphContext, ChatInput, ChatState]:
    """Compiles the chat graph. Invoke with ``chat_input(...)``,
    ``{"configurable": {"thread_id": conversation_id}}`` and ``context=ChatGraphContext(...)``; the
    result holds ``answer``."""
    graph = StateGraph(ChatState, context_schema=ChatGraphContext, input_schema=ChatInput)
    graph.add_node("load_context", load_context)
    graph.add_node("answer", answer)
    graph.add_edge(START, "load_context")
    graph.add_edge("load_context", "answer")
    graph.add_edge("answer", END)
    return graph.compile(checkpointer=checkpointer)


def _answer(adapter: LLMAdapter | None, propose: Propose | None, question: str, context: ChatContext,
            digest: dict[str, Any], history: list[dict[str, str]]) -> dict[str, Any]:
    """One turn's answer: text, source, tool calls, proposals created and token usage."""
    zero = {"prompt_tokens": 0, "completion_tokens": 0, "calls": 0}
    if adapter is None:
        return {"answer": slack_safe(offline_answer(question, context), limit=ANSWER_MAX_CHARS),
                "source": "offline", "tool_calls": [], "proposals": [], "turn_usage": zero}
    created: list[dict[str, Any]] = []
    toolbox = build_toolbox(context.inputs, context.findings, context.incidents).with_tool(
        PROPOSE_FIX_SPEC, propose_fix_handler(propose, created))
    try:
        result = adapter.run_tool_loop(
            system=prompts.render("chat_system", catalogue=catalogue_text()),
            user=prompts.render("chat_user", question=question, context=to_json(digest)),
            tools=toolbox.specs, execute_tool=toolbox.execute, budget=adapter.new_budget(),
            response_format_json=False, history=history,
        )
    except LLMUnavailable:
        text = f"{offline_answer(question, context)}\n{FALLBACK_NOTE}"
        return {"answer": slack_safe(text, limit=ANSWER_MAX_CHARS), "source": "fallback",
                "tool_calls": [], "proposals": _json_safe(created), "turn_usage": zero}
    usage = {"prompt_tokens": result.usage.prompt_tokens, "completion_tokens": result.usage.completion_tokens,
             "calls": result.usage.calls}
    source = "llm"
    text = (result.content or "").strip()
    if not text:
        text, source = f"{offline_answer(question, context)}\n{BUDGET_NOTE}", "fallback"
    for proposal in created:
        # Said by us, not left to the model: a person must know a proposal waits for them.
        text += (f"\nProposed fix {proposal.get('id', '')} ({proposal.get('kind', 'fix')}) "
                 "is waiting for approval; nothing runs until an approver accepts it.")
    return {"answer": slack_safe(text, limit=ANSWER_MAX_CHARS), "source": source,
            "tool_calls": [record.name for record in result.tool_calls],
            "proposals": _json_safe(created), "turn_usage": usage}


def _json_safe(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return json.loads(to_json(items))
