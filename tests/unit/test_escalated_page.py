"""An escalated process shows operators why it was left to them, and offers no cancel."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from streams.process.queries import summarize
from streams.process.ui.pages import process_page
from tests.unit.process_manager.scenario import DISCARDING, given


def test_an_escalated_process_page_shows_the_cause_and_no_cancel_button() -> None:
    # Given a package sent to a cancelled process
    process = given(*DISCARDING, "PaymentDiscarded", "PackageWasSent")
    assert process.escalation is not None

    # When an operator opens its page and the list
    page = process_page(process, stalled=False, operator=True)
    entry = summarize(process, datetime(2026, 11, 27, tzinfo=UTC), after=timedelta(seconds=60))

    # Then the cause is shown, the state is terminal (no cancel form), and the list carries it
    assert "escalated to an operator" in page and "PackageWasSent (package pkg-1)" in page
    assert 'id="cancel"' not in page and "<form" not in page
    assert entry["state"] == "Escalated" and entry["escalation"] == process.escalation
    assert entry["stalled"] is False
