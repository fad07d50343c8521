"""A local stand-in for the parts of Meta's Graph API that capi-agent uses (``capi-agent sim-meta``).

``build_simulator_app(state)`` returns the Starlette app; ``run_simulator_in_thread(state)`` serves it
on a loopback port. See ``app`` (endpoints), ``state`` (state file), ``quality`` (the EMQ model) and
``control`` (the ``/_sim/`` scripting endpoints).
"""

from tools.meta.simulator.app import build_simulator_app
from tools.meta.simulator.server import RunningSimulator, run_simulator_in_thread
from tools.meta.simulator.state import Fault, SimState

__all__ = ["Fault", "RunningSimulator", "SimState", "build_simulator_app", "run_simulator_in_thread"]
