"""Replay: rebuild the process manager's table into a new app version, and the read model.

    python -m streams.tools.replay [--to-version N] [--read-model | --read-model-only]

It folds the process manager's inputs (the four events topics and ``processes.commands``)
offline, from the beginning, with the workers' timeouts (``streams.tools.history``), and
writes the result into the changelog and consumer group of a new app version
(``streams.tools.rebuild``). ``streams.tools.verify`` compares the same fold with the live
table.

A worker started with ``APP_VERSION=N`` then restores the table from the changelog and
consumes only what arrives after the fold: it re-sends no command of the past. Stop the
running workers before replaying: an event they handle after the fold would be handled again
by version N (harmless, its commands keep their deterministic ids, but duplicate records).

``--read-model`` also truncates ``orders_view`` and projects the events topics again in the
same pass; ``--read-model-only`` does only that, without a new version.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from streams.settings import Settings, get_settings
from streams.tools.rebuild import ReplayRefused, ReplayReport, rebuild_read_model, replay


def switch_over(settings: Settings, report: ReplayReport) -> str:
    """The operator's steps from the running version to the replayed one."""
    lines = [
        f"The process table of version {report.version} is ready:",
        f"  changelog {report.changelog}, consumer group {report.app_id}",
        "To switch over:",
        f"  1. stop every worker of version {settings.app_version}"
        " (faust -A streams.process.worker ...)",
        f"  2. start them again with APP_VERSION={report.version}, e.g.",
        f"       APP_VERSION={report.version} faust -A streams.process.worker worker -l info",
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


def _summary(report: ReplayReport) -> str:
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m streams.tools.replay", description=__doc__)
    parser.add_argument("--to-version", type=int, help="the new app version (default: current+1)")
    parser.add_argument("--read-model", action="store_true", help="also rebuild the read model")
    parser.add_argument(
        "--read-model-only", action="store_true", help="rebuild only the read model"
    )
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    args = parser.parse_args(argv)
    settings = get_settings()
    if settings.coordination == "saga":
        print("replay refused: COORDINATION=saga keeps no process table", file=sys.stderr)
        return 2
    try:
        if args.read_model_only:
            report = rebuild_read_model(settings)
        else:
            to_version = args.to_version or settings.app_version + 1
            report = replay(settings, to_version, with_read_model=args.read_model)
    except (ReplayRefused, LookupError) as error:
        print(f"replay refused: {error}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(_as_json(report), indent=2))
    else:
        print(_summary(report))
        if not args.read_model_only:
            print(switch_over(settings, report))
    return 0


def _as_json(report: ReplayReport) -> dict[str, Any]:
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


if __name__ == "__main__":
    sys.exit(main())
