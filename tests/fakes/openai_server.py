"""The fake OpenAI-compatible server, for the tests (it lives in ``evals.fakes``: the benchmarks use it
too, and ``evals`` never imports ``tests``)."""

from evals.fakes.openai_server import Answer, Delay, FakeOpenAIServer, HTTPError, ToolCalls

__all__ = ["Answer", "Delay", "FakeOpenAIServer", "HTTPError", "ToolCalls"]
