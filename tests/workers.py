"""Process entry points for multi-process tests. They live in an importable module so that the
``spawn`` start method can find them; each process opens its own store (connections never cross a fork)."""

from __future__ import annotations

import json
import sys
import time
import traceback
from typing import Any

from swarm.store import RetryPolicy, StoreOptions, open_store


def claim_complete_loop(url: str, agent: str, cycles: int, results: Any) -> None:
    """Claim and complete until ``cycles`` are done or nothing is left; report ids and errors."""
    claimed: list[str] = []
    errors: list[str] = []
    try:
        store = open_store(url, StoreOptions(retry=RetryPolicy(0, 0)))
        while len(claimed) < cycles:
            got = store.claim(agent, ttl_seconds=300)
            if got is None:
                break
            claimed.append(got.task_id)
            store.complete(got.task_id, agent, got.lease_token, commit=f"sha-{got.task_id}")
        store.close()
    except BaseException:
        errors.append(traceback.format_exc())
    results.put((agent, claimed, errors))


def claim_and_hang(url: str, agent: str, ttl: float) -> None:
    """Claim one task, print the claim as JSON, then wait to be killed (the crash test's victim)."""
    store = open_store(url, StoreOptions())
    got = store.claim(agent, ttl_seconds=ttl)
    payload = None if got is None else {"task_id": got.task_id, "lease_token": got.lease_token, "attempt": got.attempt}
    sys.stdout.write(json.dumps(payload) + "\n")
    sys.stdout.flush()
    while True:  # killed by SIGKILL from the test
        time.sleep(3600)


if __name__ == "__main__":
    claim_and_hang(sys.argv[1], sys.argv[2], float(sys.argv[3]))
