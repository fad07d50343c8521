"""Sender fingerprints: which software sends a pixel's server events (SDK, plugin, versions, the event
names, fields and match keys it uses), and the changes of it that the audit names beside an incident."""
