"""Audit summaries: what the last hour (or day) looked like across a channel's pixels.

``levels`` (usual event levels, pure), ``model`` (the summary as JSON-able dataclasses and the status
mark of a pixel, pure), ``collect`` (reads one pixel's hour from the ledger), ``queue`` (decides when a
channel's hour is complete and queues its Slack and email summaries in the outbox), ``text`` (plain
text for the terminal, ``/capi summary`` and the email text part).
"""
