"""Threads (docs/contract.md §7): durable, multi-writer, append-only message logs, and the waits on them.

Sequence numbers are allocated inside the appending transaction, so they follow commit order and a reader
never sees a gap or misses a late commit. Waiters wake on the store's cheap change counter (SQLite's
``PRAGMA data_version``) instead of re-querying the messages on every tick.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass

from swarm.errors import BadInput
from swarm.models import LEAD, MESSAGE_TYPES, Message, check_id
from swarm.store import Store

DEFAULT_THREAD = "team"
MAX_BODY_BYTES = 1024 * 1024
#: How often a waiter looks at the change counter right after a change; small enough for a p99 wake well
#: under 100 ms while messages flow.
POLL_SECONDS = 0.01
#: While nothing changes the interval grows to this, so an idle waiter costs about a fifth of the CPU; the
#: first message after a quiet spell waits at most this long.
IDLE_POLL_SECONDS = 0.05
#: A wait without a timeout blocks in slices of this length (nothing is missed between two slices).
WAIT_SLICE_SECONDS = 60.0
_SIGNAL = re.compile(r"signal\.[a-z][a-z0-9_.-]{0,40}")


def check_type(type_: str) -> str:
    """A docs/contract.md §7 type or ``signal.<name>``."""
    if type_ in MESSAGE_TYPES or _SIGNAL.fullmatch(type_):
        return type_
    raise BadInput(f"unknown message type {type_!r}", hint=f"use one of {', '.join(MESSAGE_TYPES)} or signal.<name>")


def check_thread(thread: str) -> str:
    """Thread names follow the id rules."""
    check_id(thread, "thread name")
    return thread


def check_body(body: str) -> str:
    """Non-empty, at most 1 MiB of UTF-8."""
    if not body.strip():
        raise BadInput("the message is empty", hint="say something")
    size = len(body.encode("utf-8"))
    if size > MAX_BODY_BYTES:
        raise BadInput(
            f"the message is {size} bytes, more than the 1 MiB a thread entry may hold",
            hint="put large content in a file in your worktree and send its path",
        )
    return body


def send(
    store: Store,
    author: str,
    body: str,
    *,
    to: str | None = None,
    type_: str = "chat",
    thread: str = DEFAULT_THREAD,
    reply_to: int | None = None,
) -> Message:
    """Validate and append one entry."""
    check_type(type_)
    check_thread(thread)
    check_body(body)
    if to is not None:
        known = store.known_identities()
        if to not in known:
            raise BadInput(f"unknown recipient {to!r}", hint=f"send to one of: {', '.join(sorted(known))}")
    return store.append_message(thread, author, type_, body, recipient=to, reply_to=reply_to)


def reply(store: Store, author: str, seq: int, body: str, *, thread: str = DEFAULT_THREAD) -> Message:
    """Answer entry ``seq``: an ``answer`` addressed to its author."""
    question = store.get_message(check_thread(thread), seq)
    return send(store, author, body, to=question.author, type_="answer", thread=thread, reply_to=seq)


@dataclass(frozen=True)
class WaitSpec:
    """What a wait looks for."""

    identity: str
    thread: str = DEFAULT_THREAD
    from_author: str | None = None
    reply_to: int | None = None
    type_: str | None = None
    since: int | None = None


def wait(store: Store, spec: WaitSpec, timeout: float | None) -> Message | None:
    """Block until the next entry for ``spec.identity`` arrives; None at the timeout.

    Without ``since`` or ``reply_to`` the wait continues from where this identity's last wait left off (its
    cursor), so an entry sent between two waits is not missed; the first wait of an identity starts at the
    thread's current end.
    """
    check_thread(spec.thread)
    use_cursor = spec.since is None and spec.reply_to is None
    if spec.reply_to is not None:
        after = spec.reply_to  # an answer comes after its question
    elif spec.since is not None:
        after = spec.since
    else:
        cursor = store.get_cursor(spec.identity, spec.thread)
        if cursor is None:
            cursor = store.thread_tail(spec.thread)
            store.set_cursor(spec.identity, spec.thread, cursor)
        after = cursor
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        marker = store.change_marker()
        found = store.next_message_for(
            spec.thread,
            spec.identity,
            after=after,
            from_author=spec.from_author,
            reply_to=spec.reply_to,
            type_=spec.type_,
        )
        if found is not None:
            if use_cursor:
                store.set_cursor(spec.identity, spec.thread, found.seq)
            return found
        while True:
            remaining = WAIT_SLICE_SECONDS if deadline is None else deadline - time.monotonic()
            if remaining <= 0:
                return None
            if store.wait_for_change(marker, remaining, first=POLL_SECONDS, most=IDLE_POLL_SECONDS) != marker:
                break


def ask(
    store: Store,
    author: str,
    body: str,
    *,
    to: str = LEAD,
    thread: str = DEFAULT_THREAD,
    timeout: float | None = None,
) -> tuple[Message, Message | None]:
    """Send a question and wait for its answer (None at the timeout)."""
    question = send(store, author, body, to=to, type_="question", thread=thread)
    answer = wait(store, WaitSpec(identity=author, thread=thread, reply_to=question.seq), timeout)
    return question, answer
