"""When the hourly audits run: which pixel-hours are due (``plan``) and who audits each one
(``claims``: one row per pixel-hour, claimed atomically so several replicas audit it once).

Nothing here runs an audit: ``agent.scheduler`` drives the loop over these two modules.
"""
