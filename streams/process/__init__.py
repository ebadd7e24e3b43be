"""The order process manager's worker: the Faust agent, its deadlines, the web views and UI."""
