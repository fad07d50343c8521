"""The Slack surface: a Bolt app (HTTP or Socket Mode), its listeners, message builders, charts and
the notifier that posts summaries and incidents. Nothing is built at import: see ``app.build_slack_app``
and ``notifier.SlackNotifier``."""
