"""The deterministic audit: Meta reads + ledger rollups -> checks -> diagnosis -> triage -> storage.

No LLM and no Slack here; the agent's audit graph calls these steps as its nodes.
"""
