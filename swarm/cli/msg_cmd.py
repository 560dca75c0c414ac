"""``swarm msg ...``: durable threads between agents and the lead (docs/contract.md §7)."""

from __future__ import annotations

import contextlib
import os
import sys
import time

import typer

from swarm import channel_client, identity, threads
from swarm.cli.options import DbOption, load_with_db
from swarm.cli.output import console, emit_json
from swarm.errors import BadInput, SwarmError
from swarm.models import LEAD, Message
from swarm.queue import lead_token_path, open_queue
from swarm.status import during, select_swarm
from swarm.store import Store
from swarm.views import message_json

#: `timeout`'s convention, so shell scripts can tell "nothing came" from a failure.
EXIT_TIMEOUT = 124

msg_app = typer.Typer(
    help="Talk over durable threads: send, list, wait, ask the lead, reply.",
    no_args_is_help=True,
)

THREAD_OPTION = typer.Option(threads.DEFAULT_THREAD, "--thread", help="Thread name.")
JSON_OPTION = typer.Option(False, "--json", help="Print JSON (one object per entry).")
TIMEOUT_OPTION = typer.Option(None, "--timeout", min=0.0, help="Give up after S seconds (exit 124).")


def _line(message: Message) -> str:
    to = f" -> {message.recipient}" if message.recipient else ""
    reply = f" (re #{message.reply_to})" if message.reply_to else ""
    return f"#{message.seq} {message.author}{to} [{message.type}]{reply}: {message.body}"


def _show(message: Message, as_json: bool) -> None:
    if as_json:
        emit_json(message_json(message))
    else:
        console().print(_line(message), markup=False)


def agent_channel(db: str | None) -> channel_client.Channel | None:
    """Inside an agent, its channel to its worker (``SWARM_CHANNEL``): the agent's only way to the threads and
    the queue (docs/contract.md §7); None outside one."""
    channel = channel_client.from_env(os.environ)
    if channel is not None and db is not None:
        raise BadInput(
            "--db cannot be used inside an agent: its worker's channel ($SWARM_CHANNEL) is its queue",
            hint="drop --db",
        )
    return channel


def _claimed() -> str | None:
    """The identity the caller's environment claims: the channel refuses one that is not its agent's."""
    return os.environ.get("SWARM_AGENT_ID") or None


def _channel_wait(channel: channel_client.Channel, timeout: float | None, **args: object) -> Message | None:
    """A wait over the channel, as bounded requests (each continues where the last one stopped)."""
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        left = channel_client.MAX_WAIT_SECONDS if deadline is None else deadline - time.monotonic()
        slice_s = max(0.0, min(left, channel_client.MAX_WAIT_SECONDS))
        found = channel.call("wait", agent_id=_claimed(), timeout_s=slice_s, **args)
        if found is not None:
            return channel_client.message_from(found)
        if deadline is not None and deadline - time.monotonic() <= 0:
            return None


class _Session:
    """The store and the proven identity of the caller; a context manager that closes the store."""

    def __init__(self, db: str | None) -> None:
        self.loaded = load_with_db(db)
        self.store: Store = open_queue(self.loaded)
        try:
            self.me = identity.resolve(self.store, lead_token_path(self.loaded), os.environ)
        except BaseException:
            self.store.close()
            raise

    def __enter__(self) -> _Session:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.store.close()


@msg_app.command("send")
def send_cmd(
    text: str = typer.Argument(..., help="The message; '-' reads it from stdin (for long bodies)."),
    to: str | None = typer.Option(None, "--to", help="Recipient (an agent id or 'lead'); default: everyone."),
    type_: str = typer.Option("chat", "--type", help="chat, question, answer, escalation, signal.<name>, ..."),
    thread: str = THREAD_OPTION,
    reply_to: int | None = typer.Option(None, "--reply-to", min=1, help="The entry this one answers."),
    db: DbOption = None,
    as_json: bool = JSON_OPTION,
) -> None:
    """Append a message to a thread."""
    if text == "-":
        text = sys.stdin.read()
    channel = agent_channel(db)
    if channel is not None:
        with channel:
            sent = channel.call(
                "send", agent_id=_claimed(), body=text, to=to, type=type_, thread=thread, reply_to=reply_to
            )
        message = channel_client.message_from(sent)
    else:
        with _Session(db) as session:
            message = threads.send(
                session.store, session.me, text, to=to, type_=type_, thread=thread, reply_to=reply_to
            )
    if as_json:
        emit_json(message_json(message))
    else:
        console().print(f"sent #{message.seq} on {thread}" + (f" to {to}" if to else " to everyone"))


@msg_app.command("list")
def list_cmd(
    follow: bool = typer.Option(False, "--follow", "-f", help="Keep printing new entries as they arrive."),
    since: int = typer.Option(0, "--since", min=0, help="Only entries after this sequence number."),
    type_: str | None = typer.Option(None, "--type", help="Only entries of this type."),
    hide_signals: bool = typer.Option(False, "--hide-signals", help="Leave out signal.* entries."),
    thread: str = THREAD_OPTION,
    swarm_id: str | None = typer.Option(
        None, "--swarm", help="Only the entries written while this swarm ran (an id from 'swarm history')."
    ),
    db: DbOption = None,
    as_json: bool = JSON_OPTION,
) -> None:
    """Print a thread's entries in sequence order."""
    threads.check_thread(thread)

    def show(message: Message) -> None:
        if type_ is not None and message.type != type_:
            return
        if hide_signals and message.type.startswith("signal."):
            return
        _show(message, as_json)

    channel = agent_channel(db)
    if channel is not None:
        with channel:
            last, wait_s = since, 0.0
            while True:
                for entry in channel.call("list", thread=thread, since=last, wait_s=wait_s):
                    message = channel_client.message_from(entry)
                    last = message.seq
                    show(message)
                if not follow:
                    return
                wait_s = channel_client.MAX_WAIT_SECONDS
    loaded = load_with_db(db)
    with open_queue(loaded) as store:
        swarm = select_swarm(store, swarm_id) if swarm_id is not None else None
        last = since
        while True:
            marker = store.change_marker()
            for message in store.list_messages(thread, since=last):
                last = message.seq
                if swarm is not None and not during(swarm, message.created_at):
                    continue
                if type_ is not None and message.type != type_:
                    continue
                if hide_signals and message.type.startswith("signal."):
                    continue
                show(message)
            if not follow:
                return
            while store.wait_for_change(marker, 60.0, first=threads.IDLE_POLL_SECONDS) == marker:
                pass


@msg_app.command("wait")
def wait_cmd(
    timeout: float | None = TIMEOUT_OPTION,
    from_agent: str | None = typer.Option(None, "--from", help="Only an entry from this author."),
    reply_to: int | None = typer.Option(None, "--reply-to", min=1, help="Only an entry answering this one."),
    thread: str = THREAD_OPTION,
    db: DbOption = None,
    as_json: bool = JSON_OPTION,
) -> None:
    """Block until the next entry you did not write that is addressed to you or to everyone; print it."""
    channel = agent_channel(db)
    if channel is not None:
        with channel:
            message = _channel_wait(channel, timeout, thread=thread, from_author=from_agent, reply_to=reply_to)
    else:
        with _Session(db) as session:
            spec = threads.WaitSpec(identity=session.me, thread=thread, from_author=from_agent, reply_to=reply_to)
            message = threads.wait(session.store, spec, timeout)
    if message is None:
        typer.echo(f"swarm: no message within {timeout:g}s", err=True)
        raise typer.Exit(EXIT_TIMEOUT)
    _show(message, as_json)


@msg_app.command("ask")
def ask_cmd(
    text: str = typer.Argument(..., help="The question."),
    to: str = typer.Option(LEAD, "--to", help="Who should answer (default: the lead)."),
    timeout: float | None = TIMEOUT_OPTION,
    thread: str = THREAD_OPTION,
    db: DbOption = None,
    as_json: bool = JSON_OPTION,
) -> None:
    """Ask a question and wait for its answer; print the answer."""
    channel = agent_channel(db)
    if channel is not None:
        with channel:
            asked = channel.call("ask", agent_id=_claimed(), body=text, to=to, thread=thread)
            question = channel_client.message_from(asked)
            try:
                answer = _channel_wait(channel, timeout, thread=thread, reply_to=question.seq)
            finally:
                with contextlib.suppress(SwarmError):  # the wait's own error, if any, is the one to report
                    channel.call("asked")
    else:
        with _Session(db) as session:
            if session.me != LEAD:
                session.store.update_agent(session.me, detail="waiting for an answer")
            question, answer = threads.ask(session.store, session.me, text, to=to, thread=thread, timeout=timeout)
            if session.me != LEAD:
                session.store.update_agent(session.me, detail=None)
    if answer is None:
        typer.echo(
            f"swarm: no answer to #{question.seq} within {timeout:g}s; keep waiting with "
            f"'swarm msg wait --reply-to {question.seq}'",
            err=True,
        )
        raise typer.Exit(EXIT_TIMEOUT)
    if as_json:
        emit_json({"question": message_json(question), "answer": message_json(answer)})
    else:
        console().print(answer.body, markup=False)


@msg_app.command("reply")
def reply_cmd(
    seq: int = typer.Argument(..., min=1, help="The entry to answer."),
    text: str = typer.Argument(..., help="The answer."),
    thread: str = THREAD_OPTION,
    db: DbOption = None,
    as_json: bool = JSON_OPTION,
) -> None:
    """Answer an entry (usually a question): the answer goes to its author."""
    channel = agent_channel(db)
    if channel is not None:
        with channel:
            answered = channel.call("reply", agent_id=_claimed(), seq=seq, body=text, thread=thread)
            message = channel_client.message_from(answered)
    else:
        with _Session(db) as session:
            message = threads.reply(session.store, session.me, seq, text, thread=thread)
    if as_json:
        emit_json(message_json(message))
    else:
        console().print(f"answered #{seq} as #{message.seq} (to {message.recipient})")


def register(app: typer.Typer) -> None:
    """Attach ``swarm msg``."""
    app.add_typer(msg_app, name="msg")
