"""One module per runnable fix kind, each exposing ``KIND`` (see ``tools/fixes/registry.py``)."""
