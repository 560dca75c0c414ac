"""Who is writing on the database: an identity proven by a secret token (stored hashed); the lead proves itself
by reading ``.swarm/lead.token`` (0600, created on first use), i.e. by having the repository, and by not running
inside an agent. Agents a launch started hold no token: they write through their worker's channel
(``swarm.runtime.channel``, docs/contract.md §7), which is their identity; launch records the hash of a token
nobody has, so that naming such an agent without its channel is refused here.

Rules for a write (a message, or a queue operation on behalf of an agent), docs/contract.md §7:
* ``SWARM_TOKEN`` set: it must match the hash recorded for ``SWARM_AGENT_ID`` (or ``lead``); the writer is
  that identity. A wrong token is refused (exit 2).
* no ``SWARM_TOKEN``: the writer is the lead. The lead may drive the queue by hand for agent ids that have no
  token (nspec-style manual use), never for an agent launch gave a token to: that would be writing as
  someone else.
* whoever claims to be the lead (no token, or the lead's token) is refused when the command runs inside an
  agent of this database (:func:`started_by_agent`): when the process itself or one of its ancestors carries
  the ``SWARM_ID``/``SWARM_AGENT_ID`` pair of an agent this database knows (every worker and every agent
  process has them in its environment), or is one of the processes an agent's worker recorded (pid and start
  time, ``.swarm/run/<agent>.pids``). Unsetting the variables, ``env -i``, ``setsid``, ``nohup`` or a double
  fork do not escape it: they change the process itself, and while its worker lives the worker (a subreaper)
  stays its ancestor. What escapes it is a process that detached *after its worker was killed* and cleared
  its environment before the worker had recorded it; the sandbox (docs/contract.md §7) closes that.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from collections.abc import Mapping
from pathlib import Path

from swarm.errors import BadInput, SwarmError
from swarm.models import LEAD, is_valid_id
from swarm.runtime import procs
from swarm.runtime.runfile import process_record_path
from swarm.store import Store


def new_token() -> str:
    """A fresh secret."""
    return secrets.token_urlsafe(24)


def hash_token(token: str) -> str:
    """What the database keeps instead of the secret."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def _matches(expected: str | None, token: str) -> bool:
    # The lead may hold one token per clone of the repository (several machines share one queue): the
    # database keeps their hashes comma-separated.
    if not expected:
        return False
    digest = hash_token(token)
    return any(hmac.compare_digest(known, digest) for known in expected.split(","))


def lead_token(store: Store, path: Path) -> str:
    """Read this clone's lead token, creating it (0600) and recording its hash on first use."""
    try:
        token = path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        if (path.parent.parent / ".git").is_file():
            # An agent's worktree has a .git file: minting a lead token there would let an agent speak as the lead.
            raise BadInput(
                "the lead writes from the repository's main checkout, not from an agent's worktree",
                hint="run this command in the main checkout, or as the agent (SWARM_AGENT_ID and SWARM_TOKEN)",
            ) from None
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        token = new_token()
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:  # another command created it a moment ago
            token = path.read_text(encoding="utf-8").strip()
        else:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(token + "\n")
        known = store.token_hash(LEAD)
        if not _matches(known, token):
            # A new clone of the repository joins as the lead too (another machine of a shared queue).
            store.set_token_hash(LEAD, ",".join(filter(None, [known, hash_token(token)])))
        return token
    except OSError as exc:
        raise SwarmError(f"cannot read the lead token {path}: {exc.strerror}", hint="check its permissions") from exc
    known = store.token_hash(LEAD)
    if known is None:
        store.set_token_hash(LEAD, hash_token(token))
    elif not _matches(known, token):
        raise BadInput(
            f"the lead token in {path} does not match this database",
            hint="use the repository that created the swarm, or set SWARM_TOKEN to the lead's token",
        )
    return token


def started_by_agent(store: Store, repo: Path) -> str | None:
    """Which agent of ``store`` this process runs inside (``"agent-1 (its process 1234, bash)"``), or None.

    See the module docstring for what is checked; a process whose environment cannot be read counts by its
    record only."""
    agents = store.list_agents()
    # Agents a launch started belong to a swarm; ids the lead drives by hand (``queue claim --agent-id``) do not.
    known = {(a.swarm_id, a.id) for a in agents if a.swarm_id}
    recorded = {rec: a.id for a in agents for rec in procs.read_records(process_record_path(repo, a.id))}
    for ancestor in procs.lineage():
        pair = (ancestor.swarm_env.get("SWARM_ID"), ancestor.swarm_env.get("SWARM_AGENT_ID", ""))
        agent = pair[1] if pair in known else recorded.get(ancestor.id)
        if agent:
            return f"{agent} (its process {ancestor.id.pid}, {ancestor.name})"
    return None


def _refuse_inside_agent(store: Store, lead_token_path: Path) -> None:
    """BadInput when this process runs inside an agent: such a process is never the lead."""
    agent = started_by_agent(store, lead_token_path.parent.parent)
    if agent is not None:
        raise BadInput(
            f"this command was started by {agent} and cannot act as the lead",
            hint="agents write as themselves, with the identity their worker gave them; "
            "ask the lead with 'swarm msg ask'",
        )


def resolve(store: Store, lead_token_path: Path, env: Mapping[str, str], *, acting_as: str | None = None) -> str:
    """The identity of the caller, proven; ``acting_as`` is an explicit ``--agent-id`` for queue writes."""
    token = env.get("SWARM_TOKEN", "")
    claimed = acting_as or env.get("SWARM_AGENT_ID") or ""
    if token:
        name = claimed or LEAD
        if not is_valid_id(name):
            raise BadInput(f"invalid identity {name!r}", hint="agent ids look like agent-1")
        if not _matches(store.token_hash(name), token):
            raise BadInput(
                f"wrong token for {name}: SWARM_TOKEN does not prove this identity",
                hint="agents get their token from the worker's environment; the lead needs no token",
            )
        if name == LEAD:
            _refuse_inside_agent(store, lead_token_path)
        return name
    if claimed and claimed != LEAD:
        if not is_valid_id(claimed):
            raise BadInput(f"invalid agent id {claimed!r}", hint="agent ids look like agent-1")
        if store.token_hash(claimed) is not None:
            raise BadInput(
                f"{claimed} belongs to a launched swarm; writing as {claimed} needs its SWARM_TOKEN",
                hint="an agent writes through its worker's channel ($SWARM_CHANNEL); the lead writes as 'lead'",
            )
        if acting_as is None:
            raise BadInput(
                f"SWARM_AGENT_ID={claimed} is set but SWARM_TOKEN is not",
                hint="unset SWARM_AGENT_ID to write as the lead",
            )
        _refuse_inside_agent(store, lead_token_path)  # driving an agent id by hand is the lead's power
        return claimed
    _refuse_inside_agent(store, lead_token_path)
    lead_token(store, lead_token_path)
    return LEAD


def require_lead(store: Store, lead_token_path: Path, env: Mapping[str, str], what: str) -> None:
    """Refuse ``what`` (``"cancel tasks"``) unless the caller is the lead (:func:`resolve`)."""
    who = resolve(store, lead_token_path, env)
    if who != LEAD:
        raise BadInput(
            f"{who} cannot {what}: only the lead can",
            hint="ask the lead with 'swarm msg ask', or exit non-zero to fail your own task",
        )
