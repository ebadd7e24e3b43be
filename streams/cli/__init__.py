"""The ``orderflow`` command line: one entry point for every operator's tool (see ``main``)."""
