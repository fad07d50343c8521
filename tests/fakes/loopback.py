"""The base of the tests' local stand-ins (it lives in ``evals.fakes``, which the benchmarks use too)."""

from evals.fakes.loopback import LoopbackFake

__all__ = ["LoopbackFake"]
