"""``swarm notify test``: send a sample notification through the configured ``[notify]`` hooks."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Annotated

import typer

from swarm.config import NOTIFY_EVENTS, load_config
from swarm.errors import BadInput, SwarmError


def notify_test(
    event: Annotated[
        str,
        typer.Option(
            "--event",
            help="The event name the sample carries: test, or one of the [notify] events (to try a filter "
            "on the receiving side).",
        ),
    ] = "test",
) -> None:
    """Send one sample event to every configured hook (command, webhook) and say what each did.

    Exits 0 when every hook took it, 1 when one failed (the reason is printed), 2 when [notify] configures no
    hook or its command is not found."""
    from swarm.notify import (
        SINK_WEBHOOK,
        HookFailed,
        check_notify,
        configured_sinks,
        deliver,
        payload,
        sample_event,
    )

    loaded = load_config()
    settings = loaded.config.notify
    sinks = configured_sinks(settings)
    if not sinks:
        raise BadInput(
            "nothing to send to: [notify] sets neither command nor webhook",
            hint='add e.g. webhook = "https://hooks.slack.com/services/..." under [notify] in swarm.toml',
        )
    check_notify(loaded)
    if event != "test" and event not in NOTIFY_EVENTS:
        raise BadInput(f"--event {event!r} is not an event", hint=f"use test or one of {', '.join(NOTIFY_EVENTS)}")
    sample = replace(sample_event(), event=event)
    body = json.dumps(payload(sample, "test")).encode("utf-8")
    failed: list[str] = []
    for sink in sinks:
        # The webhook's path is its secret: only its host is printed.
        name = f"webhook {settings.webhook.split('://', 1)[1].split('/', 1)[0]}" if sink == SINK_WEBHOOK else sink
        try:
            deliver(sink, body, settings, loaded.repo)
        except HookFailed as exc:
            failed.append(name)
            typer.echo(f"{name}: failed: {exc}", err=True)
            continue
        typer.echo(f"{name}: sent")
    if failed:
        raise SwarmError(
            f"the sample notification did not reach {' and '.join(failed)}",
            hint="fix the hook (the reason is above), then run 'swarm notify test' again",
        )


def register(app: typer.Typer) -> None:
    """Add ``swarm notify test`` to ``app``."""
    notify_app = typer.Typer(
        name="notify",
        help="Notifications to the lead ([notify] in swarm.toml: command, webhook, events).",
        no_args_is_help=True,
    )
    notify_app.command("test", help="Send a sample notification through the configured hooks.")(notify_test)
    app.add_typer(notify_app, name="notify")
