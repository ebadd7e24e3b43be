"""The operator's HTML pages of the process web view (server-rendered, no script framework)."""
