"""Local stand-ins for outside services (an OpenAI-compatible server), served over real loopback HTTP.

They live in ``evals`` because the benchmarks need them as much as the tests do; ``tests.fakes``
re-exports them for the tests.
"""
