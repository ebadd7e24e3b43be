"""Replay: rebuild the process manager's table into a new app version, and the read model.

    orderflow replay [--to-version N] [--read-model | --read-model-only] [--jobs N]
                                                                (streams.cli.tools)

It folds the process manager's inputs (the four events topics and ``processes.commands``)
offline, from the beginning, with the workers' timeouts (``streams.tools.history``), and
writes the result into the changelog and consumer group of a new app version
(``streams.tools.rebuild``). ``orderflow verify`` compares the same fold with the live
table.

A worker started with ``APP_VERSION=N`` then restores the table from the changelog and
consumes only what arrives after the fold: it re-sends no command of the past. Stop the
running workers before replaying: an event they handle after the fold would be handled again
by version N (harmless, its commands keep their deterministic ids, but duplicate records).

``--read-model`` also truncates ``orders_view`` and projects the events topics again in the
same pass; ``--read-model-only`` does only that, without a new version.

``--jobs N`` (default: the CPU count) folds the partitions in N processes
(``streams.tools.jobs``); the changelog, the offsets and the report are the same.
"""

from __future__ import annotations

from typing import Any

from streams.settings import Settings
from streams.tools.rebuild import ReplayReport


def switch_over(settings: Settings, report: ReplayReport) -> str:
    """The operator's steps from the running version to the replayed one."""
    lines = [
        f"The process table of version {report.version} is ready:",
        f"  changelog {report.changelog}, consumer group {report.app_id}",
        "To switch over:",
        f"  1. stop every worker of version {settings.app_version}"
        " (orderflow worker, or faust -A streams.process.worker worker)",
        f"  2. start them again with APP_VERSION={report.version}, e.g.",
        f"       APP_VERSION={report.version} orderflow worker",
        f"     they restore the table from {report.changelog} and consume from where the",
        "     replay stopped; the timers then resume the deadlines of unfinished processes.",
        f"  3. keep APP_VERSION={report.version} in the workers' configuration from now on.",
    ]
    if report.old_version_running:
        lines += [
            f"Note: workers of version {settings.app_version} were running during the replay.",
            "  Events they handle before they stop are handled again by the new version: its",
            "  commands carry the same deterministic ids, which every receiver drops. To avoid",
            "  even those duplicate records, stop the workers first and replay again into a",
            "  new version.",
        ]
    return "\n".join(lines)


def summary(report: ReplayReport) -> str:
    lines = [
        f"events: {report.events:,} ({report.undecodable} undecodable, skipped)",
        f"processes written: {report.processes:,}",
        f"elapsed: {report.elapsed_s:.2f}s, {report.events_per_s:,.0f} events/s",
    ]
    if report.read_model_rows is not None:
        lines.append(f"read model rows: {report.read_model_rows:,}")
    lines += [f"quarantined (as in the live table): {o}" for o in report.quarantined]
    lines += [f"warning: {t} lost its oldest records to retention" for t in report.truncated]
    return "\n".join(lines)


def as_json(report: ReplayReport) -> dict[str, Any]:
    return {
        "version": report.version,
        "app_id": report.app_id,
        "changelog": report.changelog,
        "events": report.events,
        "undecodable": report.undecodable,
        "processes": report.processes,
        "quarantined": report.quarantined,
        "read_model_rows": report.read_model_rows,
        "elapsed_s": round(report.elapsed_s, 3),
        "events_per_s": round(report.events_per_s, 1),
        "old_version_running": report.old_version_running,
        "truncated": report.truncated,
        "ends": report.ends,
    }
