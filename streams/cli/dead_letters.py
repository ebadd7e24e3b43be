"""``orderflow dead-letters list|show|redrive``: records that could not be processed.

The reading, the rules and the redrive itself are ``streams.tools.redrive``'s.
"""

from __future__ import annotations

import json
from typing import Any

import click

from streams.cli.operator import by_option
from streams.cli.output import (
    Refused,
    Unreachable,
    console,
    emit_json,
    fields,
    json_option,
    table,
    when,
)
from streams.settings import get_settings
from streams.tools import redrive as letters_of
from streams.tools.redrive import MAX_REDRIVES, Letter


@click.group("dead-letters")
def dead_letters() -> None:
    """Records that could not be processed: list them, show one, send them back."""


def filters(command: Any) -> Any:
    command = click.option(
        "--reason", metavar="TEXT", help="only letters whose reason contains TEXT (any case)"
    )(command)
    return click.option(
        "--source", metavar="TOPIC", help="only letters from TOPIC (e.g. carts.commands)"
    )(command)


def _read(read: Any, *args: Any) -> Any:
    try:
        return read(get_settings(), *args)
    except LookupError as error:
        raise Unreachable(str(error)) from None


@dead_letters.command("list")
@filters
@click.option("--limit", type=click.IntRange(min=1), default=100, show_default=True)
@json_option
def list_letters(source: str | None, reason: str | None, limit: int, as_json: bool) -> None:
    """The dead letters (the latest LIMIT that match), with what was redriven."""
    settings = get_settings()
    chosen = [
        letter
        for letter in _read(letters_of.read_letters)
        if letters_of.matches(letter, settings, source, reason)
    ]
    chosen.sort(key=lambda letter: str(letter.record.get("failed_at", "")))
    chosen = chosen[-limit:]
    redrives = _read(letters_of.read_redrives)
    if as_json:
        emit_json([letter.as_json(redrives.get(letter.id, ())) for letter in chosen])
        return
    rows = [
        (
            letter.id,
            when(letter.record.get("failed_at")),
            _where(letter.source),
            letter.record.get("key"),
            letter.redrive_count,
            "yes" if letter.id in redrives else "",
            letter.reason,
        )
        for letter in chosen
    ]
    table(("ID", "FAILED AT (UTC)", "SOURCE", "KEY", "REDRIVES", "REDRIVEN", "REASON"), rows)
    click.echo(f"{len(rows)} dead letter(s)")


@dead_letters.command("show")
@click.argument("letter_id", metavar="ID")
@json_option
def show(letter_id: str, as_json: bool) -> None:
    """One dead letter (ID is PARTITION:OFFSET on dead-letters): why, where from, its value,
    and its redrives."""
    letter = _one(letter_id)
    redrives = _read(letters_of.read_redrives).get(letter.id, [])
    if as_json:
        emit_json(letter.as_json(redrives))
        return
    record = letter.record
    fields(
        [
            ("id", letter.id),
            ("failed at", when(record.get("failed_at"), millis=True)),
            ("reason", letter.reason),
            ("source", _where(letter.source)),
            (
                "key",
                record.get("key") if record.get("key") is not None else record.get("key_base64"),
            ),
            ("value bytes", record.get("value_bytes")),
            ("redrive count", letter.redrive_count),
            ("redriven from", record.get("redriven_from")),
        ]
    )
    click.echo("value:")
    console.print(_shown_value(letter), markup=False, highlight=False)
    if redrives:
        table(
            ("REDRIVEN AT (UTC)", "BY", "SENT TO", "NOTE"),
            [
                (when(r["redriven_at"]), r["requested_by"], _where(r["sent_to"]), r.get("note"))
                for r in redrives
            ],
            title="redrives",
        )


@dead_letters.command("redrive")
@click.argument("letter_ids", nargs=-1, metavar="[ID]...")
@filters
@by_option
@click.option("--note", help="why (recorded in the audit), e.g. the fix deployed")
@click.option(
    "--max-redrives",
    type=click.IntRange(min=1),
    default=MAX_REDRIVES,
    show_default=True,
    help="refuse a record redriven this often already",
)
@json_option
def redrive(
    letter_ids: tuple[str, ...],
    source: str | None,
    reason: str | None,
    by: str,
    note: str | None,
    max_redrives: int,
    as_json: bool,
) -> None:
    """Send dead letters back to their source topic (key and value as recorded), once the
    cause is fixed: the letters named by ID, or those that match --source/--reason.

    Named letters are all sent or none (a refused one refuses the lot); of those chosen by
    filter, the ones already redriven or redriven too often are left out. Every redrive is
    audited on dead-letters.redrives (who, when, where to)."""
    settings = get_settings()
    if bool(letter_ids) == bool(source or reason):
        raise click.UsageError("name dead letters by ID, or choose them with --source/--reason")
    redrives = _read(letters_of.read_redrives)
    if letter_ids:
        chosen = [_one(text) for text in dict.fromkeys(letter_ids)]
        for letter in chosen:
            why = letters_of.refusal(letter, redrives, settings, max_redrives)
            if why is not None:
                raise Refused(f"dead letter {letter.id} not redriven: {why}")
        left_out = 0
    else:
        matching = [
            c
            for c in _read(letters_of.read_letters)
            if letters_of.matches(c, settings, source, reason)
        ]
        chosen = [
            c for c in matching if letters_of.refusal(c, redrives, settings, max_redrives) is None
        ]
        left_out = len(matching) - len(chosen)
    audits = letters_of.redrive(settings, chosen, by, note) if chosen else []
    if as_json:
        emit_json({"redriven": audits, "left_out": left_out})
        return
    for audit in audits:
        click.echo(f"{audit['dead_letter']} -> {_where(audit['sent_to'])}")
    click.echo(
        f"{len(audits)} dead letter(s) redriven"
        + (f", {left_out} left out (already redriven, or too often)" if left_out else "")
    )


def _one(text: str) -> Letter:
    try:
        letter = _read(letters_of.read_letter, text)
    except ValueError as error:
        raise click.BadParameter(str(error), param_hint="ID") from None
    if letter is None:
        raise Refused(f"no dead letter {text}")
    assert isinstance(letter, Letter)
    return letter


def _where(place: dict[str, Any]) -> str:
    return f"{place.get('topic')} {place.get('partition')}:{place.get('offset')}"


def _shown_value(letter: Letter) -> str:
    value = letter.value
    if value is None:
        return "(none: a tombstone)"
    try:
        return json.dumps(json.loads(value), indent=2, ensure_ascii=False)
    except ValueError:
        pass
    try:
        return value.decode()
    except UnicodeDecodeError:
        return f"(binary, base64) {letter.record.get('value_base64')}"
