"""``swarm merge``: the done tasks of a swarm (or of one of its epics), merged in dependency order onto one branch."""

from __future__ import annotations

from pathlib import Path

import typer

from swarm.cli.options import DbOption
from swarm.cli.output import console, emit_json
from swarm.config import load_config
from swarm.errors import SwarmError
from swarm.merge import MergeReport, Status, TaskOutcome, merge_swarm
from swarm.runtime.git import open_repo

# Width of the status column, so that task ids line up.
_WIDTH = max(len(s.value) for s in (Status.MERGED, Status.ALREADY_IN, Status.CONFLICT, Status.TEST_FAILED))


def merge_cmd(
    into: str | None = typer.Option(
        None, "--into", help="Branch to merge into (default: <branch_prefix>/<epic>/integration); created if missing."
    ),
    test: str | None = typer.Option(
        None, "--test", help="Shell command run in the merged tree after each merge; a failure stops the merge."
    ),
    epic: str | None = typer.Option(
        None, "--epic", "-e", help="Only this epic's done tasks, into <branch_prefix>/<epic>/integration by default."
    ),
    swarm_id: str | None = typer.Option(
        None, "--swarm", help="Merge this swarm's tasks (an id from 'swarm history') instead of the current one's."
    ),
    db: DbOption = None,
    as_json: bool = typer.Option(
        False, "--json", help='Print {"branch", "head", "merged", "skipped", "failed"} as one JSON object.'
    ),
) -> None:
    """Merge the swarm's done tasks into an integration branch, in dependency order, without touching your checkout."""
    out = console()
    not_done: list[TaskOutcome] = []

    def show(outcome: TaskOutcome) -> None:
        if outcome.status in (Status.NOT_DONE, Status.NO_COMMIT):
            not_done.append(outcome)  # gathered into one line: they are a list, not events
            return
        line = f"{outcome.status.value:<{_WIDTH}}  {outcome.task}: {outcome.title}"
        if outcome.status is Status.MERGED and outcome.merge:
            line += f"  ({outcome.merge[:12]})"
        elif outcome.status is Status.CONFLICT:
            line += f"  (in {', '.join(outcome.conflicts)})"
        elif outcome.status is Status.TEST_FAILED and outcome.exit_code is not None:
            code = outcome.exit_code
            line += f"  ({f'exit {code}' if code >= 0 else f'killed by signal {-code}'}; its merge was taken back)"
        elif outcome.failed:
            line += f"  ({outcome.reason})"
        out.print(line, markup=False)
        for text in outcome.output:
            out.print(f"    | {text}", markup=False)

    loaded = load_config(open_repo(Path.cwd()).root, overrides={"queue.database": db})
    report = merge_swarm(
        Path.cwd(),
        into=into,
        test=test,
        loaded=loaded,
        epic=epic,
        swarm_id=swarm_id,
        on_task=(lambda _: None) if as_json else show,
        say=(lambda _: None) if as_json else (lambda text: out.print(text, markup=False)),
    )
    if as_json:
        emit_json(report.to_json())
    else:
        waiting = [o for o in not_done if o.status is Status.NOT_DONE]
        if waiting:
            out.print("not done: " + ", ".join(f"{o.task} ({o.state})" for o in waiting), markup=False)
        empty = [o.task for o in not_done if o.status is Status.NO_COMMIT]
        if empty:
            out.print("done without a commit (nothing to merge): " + ", ".join(empty), markup=False)
        out.print(_summary(report), markup=False)
    failed = report.failed
    if failed is not None:
        raise SwarmError(
            f"merge stopped at task {failed.task} ({failed.title}): {failed.reason}",
            hint=_hint(report, failed),
        )


def _summary(report: MergeReport) -> str:
    def count(status: Status) -> int:
        return sum(1 for o in report.outcomes if o.status is status)

    text = (
        f"branch {report.branch} is at {report.head[:12]}: {len(report.merged)} merged, "
        f"{count(Status.ALREADY_IN)} already in, {count(Status.NOT_DONE)} not done"
    )
    if count(Status.NO_COMMIT):
        text += f", {count(Status.NO_COMMIT)} without a commit"
    return text


def _hint(report: MergeReport, failed: TaskOutcome) -> str:
    kept = f"the tasks merged before it stay on {report.branch}"
    if failed.status is Status.CONFLICT:
        return (
            f"{kept}; resolve the conflict by merging {(failed.commit or '')[:12]} into {report.branch} "
            "by hand (or fix the task), then run 'swarm merge' again"
        )
    if failed.status is Status.TEST_FAILED:
        return f"{kept} (its merge was taken back); fix the task or the test, then run 'swarm merge' again"
    return f"{kept}; fetch the task's commit from the machine that made it, then run 'swarm merge' again"


def register(app: typer.Typer) -> None:
    """Attach ``swarm merge``."""
    app.command("merge")(merge_cmd)
