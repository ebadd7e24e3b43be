"""The command line's pure parts: its registry, the dead letters' redrive rules and headers."""

from __future__ import annotations

import json

import click
import pytest
from click.testing import CliRunner

from streams.cli.main import COMMANDS, cli, load
from streams.cli.output import when
from streams.kafka import dead_letters
from streams.kafka.consuming import Consumed
from streams.settings import Settings
from streams.tools.redrive import Letter, matches, parse_id, refusal

SETTINGS = Settings(topic_prefix="env.")


def test_every_registered_command_loads_as_a_click_command_with_help() -> None:
    for name in COMMANDS:
        command = load(name)
        assert isinstance(command, click.Command)
        assert command.get_short_help_str(), f"{name} has no help"
    listed = CliRunner().invoke(cli, ["--help"])
    assert listed.exit_code == 0 and all(name in listed.output for name in COMMANDS)


def test_a_redrive_without_ids_or_filters_is_a_usage_error() -> None:
    result = CliRunner().invoke(cli, ["dead-letters", "redrive"])
    assert result.exit_code == 2 and "name dead letters by ID" in result.output
    both = CliRunner().invoke(cli, ["dead-letters", "redrive", "1:2", "--source", "x"])
    assert both.exit_code == 2


def test_a_dead_letter_id_is_partition_and_offset() -> None:
    assert parse_id("3:17") == (3, 17)
    for junk in ("3", "a:1", "3:-1", ":", "3:17:1"):
        with pytest.raises(ValueError, match="PARTITION:OFFSET"):
            parse_id(junk)


def letter(**record: object) -> Letter:
    base = {"reason": "invalid JSON: x", "source": {"topic": "env.carts.commands"}}
    return Letter(2, 5, base | record)


def test_a_letter_is_refused_once_redriven_too_often_or_from_elsewhere() -> None:
    assert refusal(letter(), {}, SETTINGS) is None
    audit = {"redriven_at": "t", "requested_by": "ops", "sent_to": {"topic": "x"}}
    assert "already redriven at t by ops" in (refusal(letter(), {"2:5": [audit]}, SETTINGS) or "")
    assert refusal(letter(redrive_count=2), {}, SETTINGS, max_redrives=3) is None
    too_often = refusal(letter(redrive_count=3), {}, SETTINGS, max_redrives=3)
    assert too_often is not None and "redriven 3 times already" in too_often
    elsewhere = letter(source={"topic": "other.carts.commands"})
    assert "no input topic here" in (refusal(elsewhere, {}, SETTINGS) or "")


def test_letters_match_a_source_by_contract_or_full_name_and_a_reason_in_any_case() -> None:
    assert matches(letter(), SETTINGS, "carts.commands", None)
    assert matches(letter(), SETTINGS, "env.carts.commands", "INVALID json")
    assert not matches(letter(), SETTINGS, "orders.commands", None)
    assert not matches(letter(), SETTINGS, None, "poison")


def test_a_dead_letter_keeps_the_redrive_count_of_its_record() -> None:
    # Given a record sent back for the second time from letter 4:9
    headers = dead_letters.redrive_headers(2, "4:9")
    record = Consumed("carts.commands", 1, 7, b"order-1", b"junk", headers)
    # When it fails again, then its letter carries the count and where it came from
    made = json.loads(dead_letters.letter(record, "invalid JSON"))
    assert (made["redrive_count"], made["redriven_from"]) == (2, "4:9")
    # And a record never redriven, or with a count nobody can read, counts 0
    plain = json.loads(dead_letters.letter(Consumed("t", 0, 0, None, None), "empty"))
    assert (plain["redrive_count"], plain["redriven_from"]) == (0, None)
    assert dead_letters.redrive_of([("orderflow-redrive-count", b"many")]) == (0, None)
    assert dead_letters.redrive_of([("orderflow-redrive-count", "3")]) == (3, None)


def test_times_are_shown_in_utc_to_the_second() -> None:
    assert when("2026-12-03T09:24:29.235007+01:00") == "2026-12-03 08:24:29"
    assert when("2026-12-03T08:24:29.235007Z", millis=True) == "2026-12-03 08:24:29.235"
    assert when(None) is None and when("later") == "later"
