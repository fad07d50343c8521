"""LangGraph graphs: the hourly audit, the fix/approval flow and the Slack chat. Each module offers a
``build_*_graph(...)`` factory; nothing is compiled at import."""
