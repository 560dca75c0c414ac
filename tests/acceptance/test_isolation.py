"""Agents cannot act as the lead (docs/contract.md §7): a process started by an agent is never the lead, however
it drops its identity (unset variables, a cleared environment, setsid, a double fork), while the lead outside
the swarm keeps every power. And an agent cannot write as another agent with anything it can read: its own
environment, the other agent's channel, run file and process environments (the channel is the identity)."""

from __future__ import annotations

import json
import shlex
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.acceptance.conftest import Run, status_json
from tests.helpers import retry_until
from tests.pg import PgServer, pg_server, pg_url  # noqa: F401  (fixtures)

#: Ways an agent tries to become the lead, each run from the repository's main checkout (the agent knows its
#: path), each writing ``<name> <exit code>`` and its stderr to the results folder.
ATTEMPTS: dict[str, str] = {
    # the identity variables unset
    "unset": "env -u SWARM_CHANNEL -u SWARM_TOKEN -u SWARM_AGENT_ID -u SWARM_LEASE_TOKEN {cmd}",
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


#: Agent of the impersonation test (two agents, tasks B and C at the same time): B's agent is the attacker,
#: C's the victim. The victim says who it is and waits; the attacker tries to post as the victim with every
#: secret it can find, then records what each attempt did in ``results/attempts.json``.
_ATTACKER = r"""
import glob, json, os, re, subprocess, sys, time
results, repo = sys.argv[1], sys.argv[2]
task, me = os.environ["SWARM_TASK_ID"], os.environ["SWARM_AGENT_ID"]
os.makedirs("out", exist_ok=True)
open(f"out/{task}.txt", "w").write(task)


def swarm(*args, env=None, cwd=None):
    done = subprocess.run(["swarm", *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=60)
    return {"rc": done.returncode, "out": done.stdout, "err": done.stderr}


def secrets_in(text):
    return dict(re.findall(r"(SWARM_(?:TOKEN|LEASE_TOKEN|DATABASE_URL))=([^\0]*)", text))


if task == "C":  # the victim: say where it is, wait for the attacker to finish
    me_file = os.path.join(results, "victim.json")
    json.dump({"agent": me, "pid": os.getpid(), "worker": os.getppid(), "task": task}, open(me_file + ".tmp", "w"))
    os.replace(me_file + ".tmp", me_file)
    deadline = time.time() + 90
    while not os.path.exists(os.path.join(results, "attempts.json")) and time.time() < deadline:
        time.sleep(0.1)
elif task == "B":  # the attacker
    victim_file = os.path.join(results, "victim.json")
    while not os.path.exists(victim_file):
        time.sleep(0.1)
    victim = json.load(open(victim_file))
    v = victim["agent"]
    names = ("SWARM_TOKEN", "SWARM_LEASE_TOKEN", "SWARM_DATABASE_URL")
    found = {"own env": {k: x for k, x in os.environ.items() if k in names}}
    for pid in (victim["pid"], victim["worker"]):
        try:
            raw = open(f"/proc/{pid}/environ", "rb").read().decode("utf-8", "replace")
            found[f"/proc/{pid}/environ"] = secrets_in(raw)
        except OSError as exc:
            found[f"/proc/{pid}/environ"] = {"error": str(exc)}
    for path in glob.glob(os.path.join(repo, ".swarm", "run", "*.json")):
        data = json.load(open(path))
        found[path] = {k: data.get(k) for k in ("token", "database_url")}
    tokens = [t for src in found.values() for k, t in src.items() if k in (*names[:2], "token") and t]
    urls = [u for src in found.values() for k, u in src.items() if k in ("SWARM_DATABASE_URL", "database_url") and u]
    victim_channel = os.path.join(repo, ".swarm", "run", v, "channel.sock")
    base = dict(os.environ)
    no_channel = {k: x for k, x in base.items() if k != "SWARM_CHANNEL"}
    attempts = {
        # its own channel, claiming to be the victim
        "own channel as victim": swarm("msg", "send", "forged-own", env={**base, "SWARM_AGENT_ID": v}),
        "own channel heartbeat of victim": swarm(
            "queue", "heartbeat", "--agent-id", v, "--task-id", victim["task"], env=base
        ),
        # the victim's channel (its path is no secret)
        "victim channel": swarm("msg", "send", "forged-channel", env={**base, "SWARM_CHANNEL": victim_channel}),
        "victim channel heartbeat": swarm(
            "queue", "heartbeat", "--task-id", victim["task"], env={**base, "SWARM_CHANNEL": victim_channel}
        ),
        # the database itself, as the victim, with every token and URL it found (none: then a guess)
        "database as victim": swarm("msg", "send", "forged-db", env={**no_channel, "SWARM_AGENT_ID": v}, cwd=repo),
    }
    for i, token in enumerate(dict.fromkeys(tokens or ["guess"])):
        for j, url in enumerate(dict.fromkeys(urls or ["sqlite:///" + os.path.join(repo, ".swarm", "swarm.db")])):
            env = {**no_channel, "SWARM_AGENT_ID": v, "SWARM_TOKEN": token, "SWARM_DATABASE_URL": url}
            attempts[f"token {i} url {j}"] = swarm("msg", "send", "forged-token", env=env, cwd=repo)
    # What it may do: write as itself, through its own channel.
    legit = {
        "send": swarm("msg", "send", "legit from " + me),
        "heartbeat": swarm("queue", "heartbeat", "--json"),
        "status": swarm("queue", "status", "--json"),
    }
    out = os.path.join(results, "attempts.json")
    json.dump({"victim": v, "found": found, "attempts": attempts, "legit": legit}, open(out + ".tmp", "w"))
    os.replace(out + ".tmp", out)
"""


def test_an_agent_cannot_post_as_another_agent_with_anything_it_can_read(
    project: Path, run: Run, tmux_socket: str, tmp_path: Path
) -> None:
    results = tmp_path / "results"
    results.mkdir()
    script = tmp_path / "attacker.py"
    script.write_text(_ATTACKER)
    command = f"{sys.executable} {script} {results} {project}"
    launched = run("launch", "E1", "--agents", "2", "--command", command)
    assert launched.returncode == 0, launched.stderr
    report_file = results / "attempts.json"
    retry_until(report_file.exists, seconds=120, interval=0.2)
    report = json.loads(report_file.read_text())
    victim = report["victim"]

    # Nothing it could read holds a secret of the victim's (or its own).
    for where, secrets in report["found"].items():
        assert not any(value for key, value in secrets.items() if key not in {"error", "database_url"}), where
    for name, result in report["attempts"].items():
        assert result["rc"] != 0, f"{name} succeeded: {result}"
        assert result["rc"] == 2, f"{name}: {result}"
        assert "Traceback" not in result["err"], result["err"]
    assert "cannot act as" in report["attempts"]["own channel as victim"]["err"]
    assert f"serves {victim} only" in report["attempts"]["victim channel"]["err"]
    assert "does not run inside" in report["attempts"]["victim channel heartbeat"]["err"]
    for name, result in report["legit"].items():
        assert result["rc"] == 0, f"{name}: {result}"

    data: dict[str, Any] = retry_until(lambda: _finished(run), seconds=180, interval=0.5)
    assert {t["id"]: t["state"] for t in data["tasks"]} == {"A": "done", "B": "done", "C": "done", "D": "done"}
    listed = run("msg", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    entries = [json.loads(line) for line in listed.stdout.splitlines()]
    assert not [e for e in entries if e["body"].startswith("forged")], entries
    attacker = next(e["author"] for e in entries if e["body"].startswith("legit from "))
    assert attacker != victim
    assert run("teardown").returncode == 0


#: An agent that uses every agent-side verb through its channel and records the results and its environment.
_USER = r"""
import json, os, subprocess, sys
results = sys.argv[1]
os.makedirs("out", exist_ok=True)
open("out/" + os.environ["SWARM_TASK_ID"] + ".txt", "w").write("x")
if os.environ["SWARM_TASK_ID"] == "A":
    def swarm(*args):
        done = subprocess.run(["swarm", *args], capture_output=True, text=True, timeout=60)
        return {"rc": done.returncode, "out": done.stdout, "err": done.stderr}
    got = {
        "env": sorted(k for k in os.environ if k.startswith("SWARM_")),
        "me": os.environ["SWARM_AGENT_ID"],
        "send": swarm("msg", "send", "hello over the channel"),
        "list": swarm("msg", "list", "--json"),
        "heartbeat": swarm("queue", "heartbeat", "--json"),
        "status": swarm("queue", "status", "--json"),
        "add": swarm("queue", "add", "--title", "a follow-up", "--id", "F1", "--epic", "E1", "--json"),
        "wait": swarm("msg", "wait", "--timeout", "0.5"),
        "cancel": swarm("queue", "cancel", "C"),
    }
    json.dump(got, open(os.path.join(results, "A.json"), "w"))
"""


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_agent_verbs_go_through_the_channel_without_database_access(
    project: Path, run: Run, tmux_socket: str, tmp_path: Path, backend: str, request: pytest.FixtureRequest
) -> None:
    results = tmp_path / "results"
    results.mkdir()
    script = tmp_path / "user.py"
    script.write_text(_USER)
    db = ["--db", request.getfixturevalue("pg_url")] if backend == "postgresql" else []
    launched = run("launch", "E1", "--agents", "1", *db, "--command", f"{sys.executable} {script} {results}")
    assert launched.returncode == 0, launched.stderr
    retry_until((results / "A.json").exists, seconds=120, interval=0.2)
    got = json.loads((results / "A.json").read_text())

    assert "SWARM_CHANNEL" in got["env"]
    for gone in ("SWARM_TOKEN", "SWARM_LEASE_TOKEN", "SWARM_DATABASE_URL"):
        assert gone not in got["env"]
    for verb in ("send", "list", "heartbeat", "status", "add"):
        assert got[verb]["rc"] == 0, f"{verb}: {got[verb]}"
    assert got["wait"]["rc"] == 124, got["wait"]
    assert got["cancel"]["rc"] == 2
    me = got["me"]  # agent-1, prefixed with the host on PostgreSQL (docs/contract.md §6)
    assert f"{me} cannot cancel tasks: only the lead can" in got["cancel"]["err"]
    assert json.loads(got["heartbeat"]["out"])["task_id"] == "A"
    assert json.loads(got["add"]["out"])["id"] == "F1"
    status = json.loads(got["status"]["out"])
    assert {t["id"]: t["state"] for t in status["tasks"]}["A"] == "claimed"
    listed = [json.loads(line) for line in got["list"]["out"].splitlines()]
    assert (me, "hello over the channel") in [(e["author"], e["body"]) for e in listed]
    assert run("teardown").returncode == 0
