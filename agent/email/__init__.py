"""Email for teams that do not live in Slack: incident alerts and summaries, through the same outbox.

``smtp`` (the CAPI_SMTP_URL connection and one send), ``compose`` (multipart text + HTML messages,
the chart inline), ``deliver`` (the outbox sender). An email only informs: it links to the proposal,
approval stays in Slack or the CLI.
"""
