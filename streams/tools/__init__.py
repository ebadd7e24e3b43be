"""Offline tools: replay, verify, the independent checker and the demo driver."""
