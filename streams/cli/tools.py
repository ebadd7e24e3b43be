"""``orderflow worker``, ``verify`` and ``replay``: run a worker, check and rebuild the table."""

from __future__ import annotations

import os
import sys
from typing import Any

import click

from streams.cli.output import Unreachable, emit_json, json_option
from streams.settings import get_settings

WORKER_APP = "streams.process.worker"


@click.command(
    context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False},
    add_help_option=False,
)
@click.argument("faust_args", nargs=-1, type=click.UNPROCESSED)
def worker(faust_args: tuple[str, ...]) -> None:
    """One Faust worker in the foreground: faust -A streams.process.worker worker -l info,
    with every option given passed on (e.g. --web-port 6067; --help for Faust's)."""
    args = list(faust_args)
    if not {"-l", "--loglevel"} & {a.split("=")[0] for a in args}:
        args = ["-l", "info", *args]
    argv = [sys.executable, "-m", "faust", "-A", WORKER_APP, "worker", *args]
    os.execv(sys.executable, argv)  # the worker's own process: signals and exit code are its own


def jobs_option(function: Any) -> Any:
    return click.option(
        "--jobs",
        type=click.IntRange(min=1),
        help="processes that read and fold the partitions (default: the CPU count)",
    )(function)


@click.command()
@click.option("--limit-orders", type=click.IntRange(min=1), help="check only the first N orders")
@click.option("--app-version", type=int, help="the table version to check (default: APP_VERSION)")
@jobs_option
@json_option
def verify(
    limit_orders: int | None, app_version: int | None, jobs: int | None, as_json: bool
) -> None:
    """Fold the event topics offline and diff them against the live process states.

    Exit 1 when anything differs. Run it on a quiet system: orders in flight can differ for
    that reason alone."""
    from streams.tools.jobs import default_jobs
    from streams.tools.verify import verify as run_verify

    settings = get_settings()
    if settings.coordination == "saga":
        raise Unreachable("verify cannot run: COORDINATION=saga keeps no process table")
    try:
        report = run_verify(
            settings,
            version=app_version,
            limit_orders=limit_orders,
            jobs=jobs or default_jobs(),
        )
    except LookupError as error:
        raise Unreachable(f"verify cannot run: {error}") from None
    if as_json:
        emit_json(report.as_json())
    else:
        click.echo(report.summary())
    if report.differences:
        sys.exit(1)


@click.command()
@click.option("--to-version", type=int, help="the new app version (default: APP_VERSION+1)")
@click.option("--read-model", is_flag=True, help="also rebuild the read model")
@click.option("--read-model-only", is_flag=True, help="rebuild only the read model")
@jobs_option
@json_option
def replay(
    to_version: int | None,
    read_model: bool,
    read_model_only: bool,
    jobs: int | None,
    as_json: bool,
) -> None:
    """Rebuild the process table into a new app version from the event topics (and the read
    model); prints how to switch the workers over."""
    from streams.tools.jobs import default_jobs
    from streams.tools.rebuild import ReplayRefused, rebuild_read_model
    from streams.tools.rebuild import replay as run_replay
    from streams.tools.replay import as_json as report_json
    from streams.tools.replay import summary, switch_over

    settings = get_settings()
    if settings.coordination == "saga":
        raise Unreachable("replay refused: COORDINATION=saga keeps no process table")
    try:
        if read_model_only:
            report = rebuild_read_model(settings)
        else:
            version = to_version or settings.app_version + 1
            report = run_replay(
                settings, version, with_read_model=read_model, jobs=jobs or default_jobs()
            )
    except (ReplayRefused, LookupError) as error:
        raise Unreachable(f"replay refused: {error}") from None
    if as_json:
        emit_json(report_json(report))
        return
    click.echo(summary(report))
    if not read_model_only:
        click.echo(switch_over(settings, report))
