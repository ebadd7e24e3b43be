"""The benchmark harness: ``python -m bench`` (``make bench``), see BENCHMARKS.md.

Every figure is paired with a baseline measured in the same run (a ratio), because the
machine it runs on is small and shared with the broker and PostgreSQL.
"""
