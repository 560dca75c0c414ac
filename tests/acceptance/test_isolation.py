"""Agents cannot act as the lead (docs/contract.md §7): a process started by an agent is never the lead, however
it drops its identity (unset variables, a cleared environment, setsid, a double fork), while the lead outside
the swarm keeps every power."""

from __future__ import annotations

import json
import shlex
from pathlib import Path
from typing import Any

from tests.acceptance.conftest import Run, status_json
from tests.helpers import retry_until

#: Ways an agent tries to become the lead, each run from the repository's main checkout (the agent knows its
#: path), each writing ``<name> <exit code>`` and its stderr to the results folder.
ATTEMPTS: dict[str, str] = {
    # the identity variables unset
    "unset": "env -u SWARM_TOKEN -u SWARM_AGENT_ID -u SWARM_LEASE_TOKEN {cmd}",
    # a cleared environment in a new session
    "setsid_env_i": 'setsid env -i PATH="$PATH" HOME="$HOME" {cmd}',
    # nohup and a cleared environment
    "nohup_env_i": 'nohup env -i PATH="$PATH" HOME="$HOME" {cmd}',
}

#: The lead powers tried: answer as the lead, cancel another task, add a task.
POWERS: dict[str, str] = {
    "answer": "swarm msg send --type answer forged-answer",
    "cancel": "swarm queue cancel C",
    "add": "swarm queue add --id X1 --epic E1 --title injected",
}


def _agent_script(repo: Path, results: Path) -> str:
    """Task A tries every attempt with every power (the last through a double fork), then does its work."""
    lines = [f"mkdir -p {results}"]
    for how, template in ATTEMPTS.items():
        for power, cmd in POWERS.items():
            name = f"{how}-{power}"
            out = results / name
            lines.append(
                f"(cd {shlex.quote(str(repo))} && {template.format(cmd=cmd)}) > {out}.out 2> {out}.err; "
                f"echo $? > {out}.rc"
            )
    # As itself: an agent may not use the lead's verbs either.
    out = results / "asis-cancel"
    lines.append(f"swarm queue cancel C > {out}.out 2> {out}.err; echo $? > {out}.rc")
    # A double fork with a cleared environment: the grandchild is an orphan by the time it runs swarm.
    out = results / "doublefork-cancel"
    inner = f"cd {shlex.quote(str(repo))}; swarm queue cancel C > {out}.out 2> {out}.err; echo $? > {out}.rc"
    lines.append(f'(setsid env -i PATH="$PATH" HOME="$HOME" sh -c {shlex.quote(inner)} &)')
    lines.append(f"while [ ! -e {out}.rc ]; do sleep 0.1; done")
    body = "; ".join(lines)
    work = 'mkdir -p out && echo "$SWARM_TASK_ID" > out/"$SWARM_TASK_ID".txt'
    return f'if [ "$SWARM_TASK_ID" = A ]; then {body}; fi; {work}'


def _results(results: Path) -> dict[str, tuple[int, str]]:
    found = {}
    for rc in sorted(results.glob("*.rc")):
        name = rc.name.removesuffix(".rc")
        found[name] = (int(rc.read_text().strip() or "-1"), (results / f"{name}.err").read_text())
    return found


def test_a_process_started_by_an_agent_is_never_the_lead(
    project: Path, run: Run, tmux_socket: str, tmp_path: Path
) -> None:
    results = tmp_path / "results"
    launched = run("launch", "E1", "--agents", "1", "--command", _agent_script(project, results))
    assert launched.returncode == 0, launched.stderr
    expected = len(ATTEMPTS) * len(POWERS) + 2
    retry_until(lambda: len(list(results.glob("*.rc"))) == expected, seconds=180, interval=0.2)

    found = _results(results)
    assert len(found) == expected
    for name, (code, err) in found.items():
        assert code == 2, f"{name}: exit {code}, stderr {err!r}"
        if name == "asis-cancel":
            assert "agent-1 cannot cancel tasks: only the lead can" in err, err
        else:
            assert "started by agent-1" in err, f"{name}: {err!r}"
            assert "cannot act as the lead" in err, f"{name}: {err!r}"

    # Nothing the attempts tried happened.
    data: dict[str, Any] = retry_until(lambda: _finished(run), seconds=180, interval=0.5)
    tasks = {t["id"]: t["state"] for t in data["tasks"]}
    assert tasks == {"A": "done", "B": "done", "C": "done", "D": "done"}
    listed = run("msg", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    bodies = [json.loads(line)["body"] for line in listed.stdout.splitlines()]
    assert "forged-answer" not in bodies

    # The lead, outside the swarm, still has its powers.
    sent = run("msg", "send", "--type", "chat", "hello from the lead")
    assert sent.returncode == 0, sent.stderr
    added = run("queue", "add", "--id", "X2", "--epic", "E1", "--title", "by the lead")
    assert added.returncode == 0, added.stderr
    assert run("teardown").returncode == 0


def _finished(run: Run) -> dict[str, Any] | None:
    data = status_json(run)
    return data if data["counts"]["done"] == 4 else None
