"""Who is writing: every agent proves itself with the secret token launch gave it (stored hashed); the lead
proves itself by reading ``.swarm/lead.token`` (0600, created on first use), i.e. by having the repository.

Rules for a write (a message, or a queue operation on behalf of an agent):
* ``SWARM_TOKEN`` set: it must match the hash recorded for ``SWARM_AGENT_ID`` (or ``lead``); the writer is
  that identity. A wrong token is refused (exit 2).
* no ``SWARM_TOKEN``: the writer is the lead. The lead may drive the queue by hand for agent ids that have no
  token (nspec-style manual use), never for an agent launch gave a token to: that would be writing as
  someone else.
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
        return name
    if claimed and claimed != LEAD:
        if not is_valid_id(claimed):
            raise BadInput(f"invalid agent id {claimed!r}", hint="agent ids look like agent-1")
        if store.token_hash(claimed) is not None:
            raise BadInput(
                f"{claimed} belongs to a launched swarm; writing as {claimed} needs its SWARM_TOKEN",
                hint="agents write from their own environment; the lead writes as 'lead'",
            )
        if acting_as is None:
            raise BadInput(
                f"SWARM_AGENT_ID={claimed} is set but SWARM_TOKEN is not",
                hint="unset SWARM_AGENT_ID to write as the lead",
            )
        return claimed
    lead_token(store, lead_token_path)
    return LEAD
