"""``capi-agent eval``: the scenario library through the audit graph, scored.

``runner`` produces each scenario's raw outputs (audits hour by hour), ``metrics`` scores them with
pure functions ``(*, outputs, reference) -> result``, ``report`` aggregates, renders and checks floors.
"""
