"""Logs, metrics and the module loops' liveness."""
