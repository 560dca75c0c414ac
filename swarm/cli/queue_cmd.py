"""``swarm queue ...``: the task queue by hand or from an agent (nspec-compatible verbs)."""

from __future__ import annotations

import os
import socket
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import typer

from swarm import channel_client, identity
from swarm.cli.msg_cmd import agent_channel
from swarm.cli.options import DbOption, load_with_db
from swarm.cli.output import console, emit_json, split_list
from swarm.config import LoadedConfig
from swarm.errors import BadInput
from swarm.models import STATE_ORDER, TaskState, check_id
from swarm.queue import (
    add_task,
    backlog_folder,
    backlog_warnings,
    lead_token_path,
    open_queue,
    queue_epic,
    queued_json,
)
from swarm.status import during, select_swarm
from swarm.store import Store
from swarm.views import claim_json, iso, task_json
from swarm.words import plural, plural_of

queue_app = typer.Typer(
    help="Work the task queue by hand or from an agent: init, claim, heartbeat, release, status, add, "
    "cancel, retry, reap, events.",
    no_args_is_help=True,
)

# Options shared by several verbs. Inside an agent the verbs go over its channel (docs/contract.md §7): the
# worker knows who it is and holds the lease, and SWARM_AGENT_ID / SWARM_TASK_ID come from the environment it
# sets, so `swarm queue heartbeat` inside an agent command needs no flags at all.
JSON_OPTION = typer.Option(False, "--json", help="Print JSON instead of text.")
AGENT_OPTION = typer.Option(..., "--agent-id", envvar="SWARM_AGENT_ID", help="The agent's id, e.g. agent-1.")
TASK_OPTION = typer.Option(
    ...,
    "--task-id",
    "--spec-id",
    envvar="SWARM_TASK_ID",
    help="The claimed task's id (--spec-id is an alias).",
)
TOKEN_OPTION = typer.Option(
    None,
    "--lease-token",
    envvar="SWARM_LEASE_TOKEN",
    help="The lease token the claim returned (inside an agent: default, the lease its worker holds).",
)
TTL_OPTION = typer.Option(None, "--ttl", min=0.001, help="Lease length in seconds (default: queue.lease_ttl_seconds).")


@contextmanager
def _agent_queue(db: str | None, agent_id: str) -> Iterator[tuple[LoadedConfig, Store]]:
    """The configuration and the open queue, for writes on behalf of ``agent_id``. They must come from that
    agent (its SWARM_TOKEN), or from the lead for agent ids no launch gave a token to."""
    loaded = load_with_db(db)
    with open_queue(loaded) as store:
        identity.resolve(store, lead_token_path(loaded), os.environ, acting_as=agent_id)
        yield loaded, store


def _need_token(lease_token: str | None) -> str:
    """Outside an agent a lease write names its lease (inside one, the worker holds it)."""
    if not lease_token:
        raise BadInput("--lease-token is missing", hint="pass the lease_token 'swarm queue claim' printed")
    return lease_token


@contextmanager
def _lead_queue(db: str | None, what: str) -> Iterator[Store]:
    """The open queue, for the verbs only the lead may use (``what`` names them in the refusal)."""
    channel = agent_channel(db)
    if channel is not None:
        # Inside an agent: its channel says which one, and that one is not the lead.
        with channel:
            who = channel.call("whoami")["agent_id"]
        raise BadInput(
            f"{who} cannot {what}: only the lead can",
            hint="ask the lead with 'swarm msg ask', or exit non-zero to fail your own task",
        )
    loaded = load_with_db(db)
    with open_queue(loaded) as store:
        identity.require_lead(store, lead_token_path(loaded), os.environ, what)
        yield store


def _queue(db: str | None) -> Store:
    """The queue of ``--db`` or ``queue.database``, for the verbs that need nothing else of the configuration."""
    return open_queue(load_with_db(db))


def _ttl(loaded: LoadedConfig, ttl: float | None) -> float:
    return ttl if ttl is not None else loaded.config.queue.lease_ttl_seconds


@queue_app.command("init")
def init_cmd(
    epic: str = typer.Option(..., "--epic", "-e", help="The epic to queue (its specs and their dependencies)."),
    max_agents: int | None = typer.Option(None, "--max-agents", min=1, help="Agents this swarm may run."),
    backlog: Path | None = typer.Option(None, "--backlog", help="Spec folder (default: queue.backlog)."),
    db: DbOption = None,
    as_json: bool = JSON_OPTION,
) -> None:
    """Validate the backlog and queue an epic, plus the undone specs it depends on. Safe to re-run."""
    loaded = load_with_db(db)
    from swarm.backlog import load_backlog  # YAML parsing: loaded only by the commands that read specs

    # Validates everything the epic may need before any write; other epics' broken specs are warnings.
    specs = load_backlog(backlog_folder(loaded, backlog), epic=epic)
    for warning in backlog_warnings(specs, epic):
        print(f"swarm: warning: {warning}", file=sys.stderr)
    result = queue_epic(loaded, specs, epic, max_agents=max_agents)
    if as_json:
        emit_json(queued_json(result, loaded))
        return
    out = console()
    blocked = len(result.added) - len(result.ready)
    if result.added:
        added = plural(len(result.added), "task")
        out.print(f"queued {added} for epic {epic}: {len(result.ready)} ready, {blocked} blocked")
    else:
        out.print(f"nothing new to queue for epic {epic}")
    if result.dependencies:
        listed = ", ".join(f"{s.id} ({s.epic})" for s in result.dependencies)
        out.print(f"also queued {plural(len(result.dependencies), 'undone dependency')} from other epics: {listed}")
    if result.existing:
        out.print(f"{plural(len(result.existing), 'task')} already in the queue, left unchanged")
    if result.already_done:
        done = len(result.already_done)
        out.print(f"{plural(done, 'spec')} of {epic} {plural_of('is', done)} already done")
    out.print(f"swarm {result.swarm.id}, database {loaded.database_url()}")


@queue_app.command("claim")
def claim_cmd(
    agent_id: str = AGENT_OPTION,
    capabilities: str | None = typer.Option(
        None, "--capabilities", "-c", help="Comma-separated capabilities this agent offers, e.g. python,gpu."
    ),
    ttl: float | None = TTL_OPTION,
    db: DbOption = None,
    as_json: bool = JSON_OPTION,
) -> None:
    """Claim the next eligible task (highest priority, then oldest) and print it with its lease."""
    channel = agent_channel(db)
    if channel is not None:
        with channel:
            offered = split_list(capabilities) if capabilities is not None else None
            got = channel_client.claim_from(channel.call("claim", agent_id=agent_id, capabilities=offered, ttl_s=ttl))
    else:
        with _agent_queue(db, agent_id) as (loaded, store):
            got = store.claim(
                agent_id, split_list(capabilities), ttl_seconds=_ttl(loaded, ttl), host=socket.gethostname()
            )
    if as_json:
        emit_json(claim_json(got))
        return
    if got is None:
        console().print("nothing to claim: no ready task this agent can take")
        return
    from rich.markup import escape

    out = console()
    out.print(f"claimed {got.task_id} (attempt {got.attempt}): {escape(got.title)}")
    out.print(f"lease token {got.lease_token}, until {iso(got.lease_until)}")


@queue_app.command("heartbeat")
def heartbeat_cmd(
    agent_id: str = AGENT_OPTION,
    task_id: str = TASK_OPTION,
    lease_token: str | None = TOKEN_OPTION,
    ttl: float | None = TTL_OPTION,
    db: DbOption = None,
    as_json: bool = JSON_OPTION,
) -> None:
    """Extend the lease on a claimed task. Exits 1 with "lease lost" if the task is no longer yours."""
    channel = agent_channel(db)
    if channel is not None:
        with channel:
            until = float(
                channel.call("heartbeat", agent_id=agent_id, task_id=task_id, lease_token=lease_token, ttl_s=ttl)
            )
    else:
        with _agent_queue(db, agent_id) as (loaded, store):
            until = store.heartbeat(task_id, agent_id, _need_token(lease_token), ttl_seconds=_ttl(loaded, ttl))
    if as_json:
        emit_json({"task_id": task_id, "lease_until": iso(until)})
    else:
        console().print(f"lease on {task_id} extended until {iso(until)}")


@queue_app.command("release")
def release_cmd(
    agent_id: str = AGENT_OPTION,
    task_id: str = TASK_OPTION,
    lease_token: str | None = TOKEN_OPTION,
    completed: bool = typer.Option(False, "--completed", help="The task is done."),
    failed: str | None = typer.Option(None, "--failed", help="The attempt failed, for this reason."),
    returned: bool = typer.Option(False, "--returned", help="Give the task back unfinished (no attempt spent)."),
    commit: str | None = typer.Option(None, "--commit", help="With --completed: the commit holding the work."),
    cost_usd: float | None = typer.Option(None, "--cost-usd", min=0.0, help="What this attempt cost, in USD."),
    db: DbOption = None,
    as_json: bool = JSON_OPTION,
) -> None:
    """Release a claimed task: exactly one of --completed, --failed REASON or --returned."""
    chosen = [
        name
        for name, on in (
            ("--completed", completed),
            ("--failed", failed is not None),
            ("--returned", returned),
        )
        if on
    ]
    if len(chosen) != 1:
        raise BadInput(
            f"release needs exactly one outcome, got {', '.join(chosen) if chosen else 'none'}",
            hint="pass one of --completed, --failed REASON or --returned",
        )
    if commit is not None and not completed:
        raise BadInput("--commit goes with --completed", hint="drop --commit or pass --completed")
    if failed is not None and not failed.strip():
        raise BadInput("--failed needs a reason", hint='say why, e.g. --failed "tests fail"')
    result: dict[str, Any] = {"task_id": task_id}
    outcome = "completed" if completed else "failed" if failed is not None else "returned"
    reason = failed.strip() if failed is not None else None
    channel = agent_channel(db)
    if channel is not None:
        with channel:
            released = channel.call(
                "release",
                agent_id=agent_id,
                task_id=task_id,
                lease_token=lease_token,
                outcome=outcome,
                reason=reason,
                commit=commit,
                cost_usd=cost_usd,
            )
        promoted, state = list(released.get("promoted", [])), TaskState(released["state"])
    else:
        with _agent_queue(db, agent_id) as (_, store):
            promoted, state = _release(
                store, agent_id, task_id, _need_token(lease_token), outcome, reason, commit, cost_usd
            )
    if outcome == "completed":
        result.update(outcome="completed", state="done", promoted=promoted)
        text = f"{task_id} done" + (f"; now ready: {', '.join(promoted)}" if promoted else "")
    elif outcome == "failed":
        result.update(outcome="failed", state=state.value)
        text = (
            f"{task_id} failed; it will be retried after a backoff"
            if state == TaskState.READY
            else f"{task_id} failed on its last attempt and is dead ('swarm queue retry {task_id}')"
        )
    else:
        result.update(outcome="returned", state="ready")
        text = f"{task_id} returned to the queue"
    if as_json:
        emit_json(result)
    else:
        console().print(text)


def _release(
    store: Store,
    agent_id: str,
    task_id: str,
    token: str,
    outcome: str,
    reason: str | None,
    commit: str | None,
    cost_usd: float | None,
) -> tuple[list[str], TaskState]:
    """Record ``outcome`` on the database: the tasks it promoted and the task's new state."""
    if outcome == "completed":
        return store.complete(task_id, agent_id, token, commit=commit, cost_usd=cost_usd), TaskState.DONE
    if outcome == "failed":
        return [], store.fail(task_id, agent_id, token, reason or "", cost_usd=cost_usd)
    store.return_task(task_id, agent_id, token)
    return [], TaskState.READY


@queue_app.command("status")
def status_cmd(
    epic: str | None = typer.Option(None, "--epic", "-e", help="Only this epic's tasks."),
    db: DbOption = None,
    as_json: bool = JSON_OPTION,
) -> None:
    """Show tasks by state, each task's owner, attempts and last error."""
    channel = agent_channel(db)
    if channel is not None:
        with channel:
            got = channel.call("status", epic=epic)
        counts = {str(k): int(v) for k, v in got["counts"].items()}
        tasks = [channel_client.task_from(t) for t in got["tasks"]]
    else:
        with _queue(db) as store:
            counts = store.counts(epic)
            tasks = store.list_tasks(epic)
    if as_json:
        emit_json({"counts": counts, "tasks": [task_json(t) for t in tasks]})
        return
    out = console()
    total = sum(counts.values())
    out.print(f"{plural(total, 'task')}: " + ", ".join(f"{counts[s.value]} {s.value}" for s in STATE_ORDER))
    if not tasks:
        return
    from rich.markup import escape
    from rich.table import Table

    table = Table(show_header=True, header_style="bold", box=None, pad_edge=False)
    for column in ("task", "state", "owner", "attempts", "depends on", "title / last error"):
        table.add_column(column)
    for task in tasks:
        note = task.title if not task.last_error else f"{task.title} [{task.last_error}]"
        table.add_row(
            task.id,
            task.state.value,
            task.owner or "-",
            f"{task.attempts}/{task.max_attempts}",
            ",".join(task.depends_on) or "-",
            escape(note),  # a spec's title, an agent's reason: never rich markup ("[agent exited 3: ...]")
        )
    out.print(table)


@queue_app.command("add")
def add_cmd(
    title: str = typer.Option(..., "--title", "-t", help="One-line title of the task."),
    body: str | None = typer.Option(None, "--body", "-b", help="The prompt (default: the title)."),
    body_file: Path | None = typer.Option(None, "--body-file", help="Read the prompt from this file."),
    task_id: str | None = typer.Option(None, "--id", help="Task id (default: the next free Q-number)."),
    epic: str | None = typer.Option(None, "--epic", "-e", help="Epic (default: the current swarm's)."),
    depends_on: str | None = typer.Option(None, "--depends-on", help="Comma-separated ids of queued tasks."),
    priority: int = typer.Option(0, "--priority", "-p", help="Higher is claimed first."),
    requires: str | None = typer.Option(None, "--requires", help="Comma-separated capabilities needed."),
    max_attempts: int | None = typer.Option(None, "--max-attempts", min=1, help="Attempts before dead."),
    db: DbOption = None,
    as_json: bool = JSON_OPTION,
) -> None:
    """Add one task to the queue by hand (its dependencies must already be queued)."""
    if body is not None and body_file is not None:
        raise BadInput("--body and --body-file both given", hint="pass only one of them")
    if body_file is not None:
        try:
            body = body_file.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise BadInput(f"cannot read --body-file {body_file}: {exc}", hint="pass a readable UTF-8 file") from exc
    if not title.strip():
        raise BadInput("--title is empty", hint="give the task a one-line title")
    if task_id is not None:
        check_id(task_id, "task id")
    for cap in split_list(requires):
        check_id(cap, "capability")
    channel = agent_channel(db)
    if channel is not None:
        with channel:
            got = channel.call(
                "add",
                title=title,
                body=body,
                task_id=task_id,
                epic=epic,
                depends_on=split_list(depends_on),
                priority=priority,
                requires=split_list(requires),
                max_attempts=max_attempts,
            )
        task_id, epic, state = got["id"], got["epic"], got["state"]
    else:
        loaded = load_with_db(db)
        with open_queue(loaded, create=True) as store:
            added = add_task(
                store,
                title=title,
                body=body,
                task_id=task_id,
                epic=epic,
                depends_on=tuple(split_list(depends_on)),
                priority=priority,
                requires=tuple(split_list(requires)),
                max_attempts=max_attempts,
                actor=identity.resolve(store, lead_token_path(loaded), os.environ),
            )
        task_id, epic, state = added.id, added.epic, added.state.value
    if as_json:
        emit_json({"id": task_id, "epic": epic, "state": state})
    else:
        console().print(f"added {task_id} to epic {epic} ({state})")


@queue_app.command("cancel")
def cancel_cmd(
    task_id: str = typer.Argument(..., help="The task to cancel."),
    reason: str = typer.Option("cancelled by hand", "--reason", help="Why (kept in the event log)."),
    db: DbOption = None,
    as_json: bool = JSON_OPTION,
) -> None:
    """Cancel a task that is not done. An agent holding it loses its lease."""
    with _lead_queue(db, "cancel tasks") as store:
        before = store.cancel(task_id, reason=reason)
    if as_json:
        emit_json({"task_id": task_id, "from": before.value, "state": "cancelled"})
    else:
        console().print(f"{task_id} cancelled (was {before.value})")


@queue_app.command("retry")
def retry_cmd(
    task_id: str = typer.Argument(..., help="The dead or cancelled task to queue again."),
    db: DbOption = None,
    as_json: bool = JSON_OPTION,
) -> None:
    """Put a dead or cancelled task back in the queue with fresh attempts."""
    with _lead_queue(db, "retry tasks") as store:
        after = store.retry(task_id)
    if as_json:
        emit_json({"task_id": task_id, "state": after.value})
    else:
        console().print(f"{task_id} is {after.value} again")


@queue_app.command("reap")
def reap_cmd(db: DbOption = None, as_json: bool = JSON_OPTION) -> None:
    """Take back every expired lease now (claims do this too): ready again, or dead with no attempts left."""
    with _queue(db) as store:
        reaped = store.reap()
    if as_json:
        emit_json({"reaped": [{"task_id": r.task_id, "owner": r.owner, "state": r.to_state.value} for r in reaped]})
        return
    if not reaped:
        console().print("no expired leases")
    for r in reaped:
        console().print(f"{r.task_id}: lease of {r.owner} expired -> {r.to_state.value}")


@queue_app.command("events")
def events_cmd(
    task_id: str | None = typer.Argument(None, help="Only this task's events."),
    since: int = typer.Option(0, "--since", min=0, help="Only events after this sequence number."),
    swarm_id: str | None = typer.Option(
        None, "--swarm", help="Only the events of this swarm's tasks while it ran (an id from 'swarm history')."
    ),
    db: DbOption = None,
    as_json: bool = JSON_OPTION,
) -> None:
    """Print the append-only event log: who moved which task, when, from what to what, and why."""
    with _queue(db) as store:
        swarm = select_swarm(store, swarm_id) if swarm_id is not None else None
        if task_id is not None:
            store.get_task(task_id)  # an unknown id is an error, not an empty list
        events = store.events(task_id, since=since)
        if swarm is not None:
            members = {t.id for t in store.list_tasks(swarm_id=swarm.id)}
            events = [e for e in events if e.task_id in members and during(swarm, e.at)]
    out = console()
    for e in events:
        if as_json:
            emit_json(
                {
                    "seq": e.seq,
                    "task_id": e.task_id,
                    "at": iso(e.at),
                    "actor": e.actor,
                    "from": e.from_state,
                    "to": e.to_state,
                    "reason": e.reason,
                }
            )
        else:
            out.print(
                f"{e.seq:>6} {iso(e.at)} {e.task_id} {e.from_state or '-'} -> {e.to_state} by {e.actor}: {e.reason}"
            )


def register(app: typer.Typer) -> None:
    """Attach ``swarm queue`` to the root app."""
    app.add_typer(queue_app, name="queue")
