"""The LLM adapter: Chat Completions through the ``openai`` package, with read-only tool calls,
a token budget, a round limit, and every outgoing message scrubbed of PII.

It knows nothing of pixels or incidents: the audit and chat graphs hand it prompts, tools and an
``execute_tool`` callback. Prompt contents are never logged.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    # The openai package (~500 modules, some 12 MB resident) is imported when a client is built or
    # a call fails, not with the graphs: ``serve`` with the offline reasoner never needs it.
    import httpx
    import openai

from agent.llm.budget import TokenBudget
from agent.llm.config import LLMConfig
from agent.llm.errors import LLMUnavailable, unavailable_from
from agent.llm.guard import scrub_with_report
from agent.llm.types import StopReason, ToolCallRecord, ToolLoopResult, ToolSpec, Usage

log = logging.getLogger(__name__)

# Keep one chatty tool from eating the run's budget; the model is told the text was cut.
MAX_TOOL_RESULT_CHARS = 12_000
# A turn asking for more calls than this gets errors for the rest: rounds bound turns, not calls.
MAX_TOOL_CALLS_PER_ROUND = 8
FINAL_ANSWER_REQUEST = (
    "The tool-call limit for this run is reached. Do not call tools. "
    "Answer now with your final answer in the required format, using what you have."
)

ExecuteTool = Callable[[str, dict[str, Any]], str]


def build_openai_client(config: LLMConfig, *, http_client: httpx.Client | None = None) -> openai.OpenAI:
    """Builds the ``openai.OpenAI`` client for ``config`` (timeouts and retries are the client's)."""
    import openai

    extra: dict[str, Any] = {"http_client": http_client} if http_client is not None else {}
    return openai.OpenAI(
        api_key=config.api_key.get_secret_value(),
        base_url=config.base_url,
        timeout=config.timeout_seconds,
        max_retries=config.max_retries,
        **extra,
    )


class LLMAdapter:
    """Runs tool-calling conversations against one OpenAI-compatible model."""

    def __init__(self, config: LLMConfig, *, client: openai.OpenAI) -> None:
        self.config = config
        self._client = client

    @classmethod
    def from_config(
        cls,
        config: LLMConfig,
        *,
        client: openai.OpenAI | None = None,
        http_client: httpx.Client | None = None,
    ) -> LLMAdapter:
        """Builds an adapter; tests inject an ``openai.OpenAI`` or an ``httpx.Client``."""
        return cls(config, client=client or build_openai_client(config, http_client=http_client))

    def new_budget(self) -> TokenBudget:
        """A fresh budget of ``config.max_tokens_per_run`` tokens."""
        return TokenBudget(self.config.max_tokens_per_run)

    def run_tool_loop(
        self,
        *,
        system: str,
        user: str,
        tools: Sequence[ToolSpec],
        execute_tool: ExecuteTool,
        budget: TokenBudget,
        max_rounds: int | None = None,
        response_format_json: bool = True,
        history: Sequence[dict[str, Any]] = (),
    ) -> ToolLoopResult:
        """Asks the model, runs the tools it calls through ``execute_tool``, and returns its answer.

        Stops with ``"answer"`` when the model answers without calling tools, ``"budget"`` when the
        token budget is spent before a call, and ``"rounds"`` after ``max_rounds`` tool-calling
        turns (then one last call without tools asks for the answer, if the budget allows).
        A failing tool, an unknown tool name or malformed arguments become an error text the
        model reads, never an exception. Raises :class:`LLMUnavailable` when the server cannot
        answer (after the client's retries)."""
        run = _Run(self, budget=budget, response_format_json=response_format_json)
        messages = [run.system(system), *(run.scrubbed_message(m) for m in history), run.user(user)]
        tool_specs = {spec.name: spec for spec in tools}
        limit = self.config.max_tool_rounds if max_rounds is None else max_rounds
        tool_rounds = 0
        while tool_rounds < limit:
            if budget.exhausted:
                return run.result(None, "budget")
            message = run.call(messages, tools=list(tool_specs.values()))
            if not message.tool_calls:
                return run.result(message.content, "answer")
            tool_rounds += 1
            messages.append(run.assistant_turn(message))
            for index, call in enumerate(message.tool_calls):
                refuse = index >= MAX_TOOL_CALLS_PER_ROUND
                messages.append(run.execute(call, tool_specs, execute_tool, refuse=refuse))
        if budget.exhausted:
            return run.result(None, "budget")
        messages.append(run.user(FINAL_ANSWER_REQUEST))
        message = run.call(messages, tools=[])
        return run.result(message.content, "rounds")


class _Run:
    """State of one run: usage, tool-call records and scrub counts; sends and charges calls."""

    def __init__(self, adapter: LLMAdapter, *, budget: TokenBudget, response_format_json: bool) -> None:
        self.adapter = adapter
        self.budget = budget
        self.response_format_json = response_format_json
        self.usage = Usage()
        self.records: list[ToolCallRecord] = []
        self.scrubbed: Counter[str] = Counter()

    def scrub(self, text: str) -> str:
        clean, report = scrub_with_report(text)
        self.scrubbed.update(report.counts)
        return clean

    def system(self, text: str) -> dict[str, Any]:
        return {"role": "system", "content": self.scrub(text)}

    def user(self, text: str) -> dict[str, Any]:
        return {"role": "user", "content": self.scrub(text)}

    def scrubbed_message(self, message: dict[str, Any]) -> dict[str, Any]:
        copy = dict(message)
        if isinstance(copy.get("content"), str):
            copy["content"] = self.scrub(copy["content"])
        return copy

    def call(self, messages: list[dict[str, Any]], *, tools: Sequence[ToolSpec]) -> Any:
        """One Chat Completions call; returns ``choices[0].message`` and charges the budget."""
        config = self.adapter.config
        params: dict[str, Any] = {
            "model": config.model, "messages": messages, "temperature": config.temperature,
        }
        if tools:
            params["tools"] = [spec.to_openai() for spec in tools]
        if self.response_format_json:
            params["response_format"] = {"type": "json_object"}
        import openai

        try:
            response = self.adapter._client.chat.completions.create(**params)
        except openai.OpenAIError as exc:
            error = unavailable_from(exc)
            log.warning("LLM call failed: %s", error)
            raise error from exc
        if not getattr(response, "choices", None):
            raise LLMUnavailable("bad_response")
        message = response.choices[0].message
        prompt_tokens, completion_tokens = _usage_of(response, messages, message)
        self.usage.add(Usage(prompt_tokens, completion_tokens, 1))
        self.budget.charge(prompt_tokens + completion_tokens)
        log.info(
            "LLM call %d model=%s prompt_tokens=%d completion_tokens=%d tool_calls=%d budget_left=%d",
            self.usage.calls, config.model, prompt_tokens, completion_tokens,
            len(message.tool_calls or ()), self.budget.remaining,
        )
        return message

    def assistant_turn(self, message: Any) -> dict[str, Any]:
        """The model's tool-calling turn, echoed back in the conversation (scrubbed like the rest)."""
        return {
            "role": "assistant",
            "content": self.scrub(message.content) if message.content else None,
            "tool_calls": [
                {
                    "id": call.id,
                    "type": "function",
                    "function": {
                        "name": call.function.name,
                        "arguments": self.scrub(call.function.arguments or ""),
                    },
                }
                for call in message.tool_calls
            ],
        }

    def execute(
        self, call: Any, specs: dict[str, ToolSpec], execute_tool: ExecuteTool, *, refuse: bool
    ) -> dict[str, Any]:
        """Runs one tool call and returns the ``tool`` message that answers it."""
        name = call.function.name or ""
        arguments = _parse_arguments(call.function.arguments)
        error: str | None = None
        result = ""
        if refuse:
            error = f"too many tool calls in one turn (at most {MAX_TOOL_CALLS_PER_ROUND}); call again later"
        elif name not in specs:
            error = f"unknown tool; available tools: {', '.join(sorted(specs)) or 'none'}"
        elif arguments is None:
            error = "arguments are not a valid JSON object; call again with a JSON object"
        if error is None:
            try:
                result = str(execute_tool(name, arguments or {}))
            except Exception as exc:  # a failing tool is something the model can work around
                log.warning("LLM tool %s raised %s", name, type(exc).__name__)
                error = f"the tool failed ({type(exc).__name__}: {str(exc)[:200]})"
        text = self.scrub(f"error: {error}" if error is not None else _truncate(result))
        self.records.append(ToolCallRecord(call.id, name, arguments, text, error))
        return {"role": "tool", "tool_call_id": call.id, "content": text}

    def result(self, content: str | None, stopped: StopReason) -> ToolLoopResult:
        if self.scrubbed:
            # Counts only: what was masked must not reach the log either.
            log.warning("LLM guard masked values before sending: %s", dict(self.scrubbed))
        return ToolLoopResult(
            content=content, tool_calls=self.records, usage=self.usage, rounds=self.usage.calls,
            stopped=stopped, scrubbed=dict(self.scrubbed),
        )


def _parse_arguments(raw: str | None) -> dict[str, Any] | None:
    if not raw or not raw.strip():
        return {}  # a tool without parameters is often called with ""
    try:
        value = json.loads(raw)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def _truncate(text: str) -> str:
    if len(text) <= MAX_TOOL_RESULT_CHARS:
        return text
    cut = len(text) - MAX_TOOL_RESULT_CHARS
    return text[:MAX_TOOL_RESULT_CHARS] + f"\n[truncated: {cut} more characters]"


def _usage_of(response: Any, messages: list[dict[str, Any]], message: Any) -> tuple[int, int]:
    """Token counts from the response; estimated (~4 characters a token) when a server omits them,
    so that the budget still bounds the run."""
    usage = getattr(response, "usage", None)
    if usage is not None and usage.prompt_tokens is not None:
        return int(usage.prompt_tokens), int(usage.completion_tokens or 0)
    sent = sum(len(json.dumps(m, default=str)) for m in messages)
    received = len(message.content or "") + sum(
        len(call.function.arguments or "") for call in (message.tool_calls or ())
    )
    return sent // 4 + 1, received // 4 + 1
