"""``swarm repair``: reconcile the database, tmux and worktrees of the current swarm on this host."""

from __future__ import annotations

import sys
from pathlib import Path

import typer

from swarm.cli.output import console, emit_json
from swarm.config import load_config
from swarm.errors import SwarmError
from swarm.repair import Finding, RepairReport, repair
from swarm.runtime.git import open_repo
from swarm.words import plural


def repair_cmd(
    dry_run: bool = typer.Option(False, "--dry-run", help="Only report what is out of step; change nothing."),
    as_json: bool = typer.Option(False, "--json", help="Print the findings as JSON."),
) -> None:
    """Find sessions, agents, worktrees and claims out of step in this host's swarm, and fix them."""
    loaded = load_config(open_repo(Path.cwd()).root)
    report = repair(
        cwd=Path.cwd(), dry_run=dry_run, loaded=loaded, say=lambda line: print(f"swarm: {line}", file=sys.stderr)
    )
    if as_json:
        emit_json({"findings": [f.to_json() for f in report.findings], "dry_run": report.dry_run})
    else:
        _print_report(report)
    failed = report.failed
    if failed:
        raise SwarmError(
            f"repair could not fix {len(failed)} of {plural(len(report.findings), 'finding')}: "
            + "; ".join(f"{f.subject}: {f.error}" for f in failed),
            hint="fix those by hand (see above), then run 'swarm repair' again",
        )


def _line(finding: Finding, dry_run: bool) -> str:
    """One line per finding: what is wrong, then what repair did or would do."""
    if dry_run and finding.fix is not None:
        return f"{finding.problem} -> would {finding.action}"
    if finding.error is not None:
        return f"{finding.problem} -> {finding.action}: FAILED"
    if finding.done:
        return f"{finding.problem} -> {finding.action}: done"
    return f"{finding.problem} -> {finding.action}"


def _print_report(report: RepairReport) -> None:
    out = console()
    where = f"swarm {report.swarm.id} ({report.swarm.epic}) on this host"
    if not report.findings:
        out.print(f"nothing to repair: {where} is consistent")
        return
    for finding in report.findings:
        out.print(_line(finding, report.dry_run))
    if report.dry_run:
        found = plural(len(report.findings), "finding")
        out.print(f"dry run: {found} in {where}; nothing changed ('swarm repair' fixes them)")
        return
    done = sum(1 for f in report.findings if f.done)
    out.print(f"repaired {done} of {plural(len(report.findings), 'finding')} in {where}")
    if report.buried:
        out.print(f"run 'swarm launch {report.swarm.epic}' to restart the agents marked dead (it resumes)")


def register(app: typer.Typer) -> None:
    """Attach ``swarm repair``."""
    app.command("repair")(repair_cmd)
