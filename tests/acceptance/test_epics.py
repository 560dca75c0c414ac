"""Several epics in one repository (docs/contract.md §5): a launch while a swarm runs adds its epic to it, the
running agents take the new tasks, teardown ends the swarm, and the next launch starts a new one."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

from swarm.runtime.tmux import Tmux
from swarm.store import open_store
from tests.acceptance.conftest import DEMO_AGENT, Run, git, status_json
from tests.helpers import retry_until
from tests.pg import pg_server, pg_url  # noqa: F401  (fixtures: a throwaway PostgreSQL and its databases)

LONG_LEASE = {"SWARM_QUEUE_LEASE_TTL_SECONDS": "900"}


def _second_epic(project: Path) -> None:
    """E2: X, then Y after X and after E1's A (a dependency on the running epic)."""
    for sid, deps in {"X": [], "Y": ["X", "A"]}.items():
        needs = " ".join(f"out/{d}.txt" for d in deps)
        body = (f"NEED {needs}\n" if deps else "") + f"\n```file out/{sid}.txt\n{sid}\n```\n"
        dep_line = f"depends_on: [{', '.join(deps)}]\n" if deps else ""
        text = f"---\nid: {sid}\nepic: E2\ntitle: Make {sid}\n{dep_line}---\n{body}"
        (project / "specs" / f"{sid}.md").write_text(text)


def _claims(project: Path) -> Counter[str]:
    with open_store(f"sqlite:///{project}/.swarm/swarm.db") as store:
        return Counter(e.task_id for e in store.events() if e.to_state == "claimed")


def _finished(run: Run) -> bool:
    data = status_json(run)
    return bool(data["swarm"]["finished"])


def test_an_epic_launched_while_another_runs_joins_its_swarm(project: Path, run: Run, tmp_path: Path) -> None:
    _second_epic(project)
    gate = tmp_path / "gate"
    agent = f'while [ ! -e "{gate}" ]; do sleep 0.2; done; {DEMO_AGENT}'
    first = run("launch", "E1", "--agents", "1", "--command", agent, env=LONG_LEASE)
    assert first.returncode == 0, first.stderr
    swarm_id = status_json(run)["swarm"]["id"]
    retry_until(lambda: status_json(run)["counts"]["claimed"] == 1, seconds=120)  # agent-1 waits on A

    second = run("launch", "E2", "--agents", "2", "--command", agent, env=LONG_LEASE)
    assert second.returncode == 0, second.stdout + second.stderr
    assert f"added E2 to swarm {swarm_id} (running E1)" in second.stdout
    data = status_json(run)
    assert data["swarm"]["id"] == swarm_id
    assert data["swarm"]["epics"] == ["E1", "E2"]
    agents = {a["id"]: a for a in data["agents"]}
    assert sorted(agents) == ["agent-1", "agent-2"]
    assert agents["agent-1"]["branch"] == "swarm/E1/agent-1"  # its row kept, not overwritten by E2's launch
    assert agents["agent-2"]["branch"] == "swarm/E1/agent-2"  # one naming scheme: the swarm's first epic
    e2 = data["epics"]["E2"]
    assert e2["ready"] + e2["claimed"] == 1  # X (agent-2 may hold it already); Y waits for X and E1's A
    assert e2["blocked"] == 1
    assert data["epics"]["E1"]["claimed"] == 1

    smaller = run("launch", "E2", "--agents", "1", "--command", agent, env=LONG_LEASE)
    assert smaller.returncode == 0, smaller.stdout + smaller.stderr
    assert "does not shrink it" in smaller.stdout
    assert [a["id"] for a in status_json(run)["agents"]] == ["agent-1", "agent-2"]

    gate.touch()
    retry_until(lambda: _finished(run), seconds=180)
    data = status_json(run)
    assert data["counts"]["done"] == 6, data["tasks"]
    zero = {"blocked": 0, "ready": 0, "claimed": 0, "dead": 0, "cancelled": 0}
    assert data["epics"] == {"E1": {**zero, "done": 4}, "E2": {**zero, "done": 2}}
    assert set(_claims(project).values()) == {1}  # every task claimed once
    only = json.loads(run("status", "--json", "--epic", "E2").stdout)
    assert sorted(t["id"] for t in only["tasks"]) == ["X", "Y"]
    assert only["counts"]["done"] == 2

    # Teardown ends the swarm; the next launch starts a new one and runs no done task again.
    assert run("teardown").returncode == 0
    (project / "specs" / "Z.md").write_text("---\nid: Z\nepic: E2\ntitle: Make Z\n---\n\n```file out/Z.txt\nZ\n```\n")
    again = run("launch", "E2", "--agents", "1", "--command", DEMO_AGENT, "--wait", "--timeout", "120", timeout=240)
    assert again.returncode == 0, again.stdout + again.stderr
    data = status_json(run)
    new_id = data["swarm"]["id"]
    assert new_id != swarm_id
    assert data["swarm"]["epics"] == ["E2"]
    assert _claims(project) == Counter({"A": 1, "B": 1, "C": 1, "D": 1, "X": 1, "Y": 1, "Z": 1})
    assert data["agents"][0]["branch"] == "swarm/E2/agent-1"

    listed = run("history", "--json")
    assert listed.returncode == 0, listed.stderr
    swarms = json.loads(listed.stdout)["swarms"]
    assert [(s["id"], s["epics"]) for s in swarms] == [(swarm_id, ["E1", "E2"]), (new_id, ["E2"])]
    assert swarms[0]["ended_at"] is not None
    assert swarms[1]["ended_at"] is None
    assert swarms[0]["counts"]["done"] == 6
    table = run("history")
    assert swarm_id in table.stdout
    assert new_id in table.stdout

    old = json.loads(run("status", "--json", "--swarm", swarm_id).stdout)
    assert old["swarm"]["id"] == swarm_id
    assert old["swarm"]["ended_at"] is not None
    assert old["counts"]["done"] == 6

    for bad, word in ((("--swarm", "sw-nope"), "no swarm"), (("--epic", "E9"), "not in swarm")):
        refused = run("status", *bad)
        assert refused.returncode == 2, refused.stdout + refused.stderr
        assert word in refused.stderr
        assert len(refused.stderr.strip().splitlines()) == 1, refused.stderr
    assert run("teardown").returncode == 0


def test_an_epic_added_to_a_finished_swarm_restarts_its_workers(project: Path, run: Run) -> None:
    _second_epic(project)
    first = run("launch", "E1", "--agents", "2", "--command", DEMO_AGENT, "--wait", "--timeout", "120", timeout=240)
    assert first.returncode == 0, first.stdout + first.stderr
    assert {a["state"] for a in status_json(run)["agents"]} == {"done"}  # the workers said finished, exited

    second = run("launch", "E2", "--command", DEMO_AGENT, "--wait", "--timeout", "120", timeout=240)
    assert second.returncode == 0, second.stdout + second.stderr
    assert "added E2 to swarm" in second.stdout
    data = status_json(run)
    assert data["counts"]["done"] == 6
    assert sorted(a["id"] for a in data["agents"]) == ["agent-1", "agent-2"]
    assert set(_claims(project).values()) == {1}
    assert run("teardown").returncode == 0


def test_relaunching_a_finished_epic_after_teardown_starts_no_swarm(project: Path, run: Run) -> None:
    launched = run("launch", "E1", "--agents", "1", "--command", DEMO_AGENT)
    assert launched.returncode == 0, launched.stderr
    retry_until(lambda: _finished(run), seconds=180, interval=0.5)
    assert run("teardown").returncode == 0

    again = run("launch", "E1", "--command", DEMO_AGENT)
    assert again.returncode == 0, again.stderr
    assert "every task of E1 is already finished; no agent started" in again.stdout
    assert "is working" not in again.stdout  # nothing is working: no hint to watch it
    swarms = json.loads(run("history", "--json").stdout)["swarms"]
    assert len(swarms) == 1  # no empty swarm recorded for a launch that had nothing to do
    assert swarms[0]["ended_at"] is not None


def _world(project: Path, tmux_socket: str, url: str) -> dict[str, object]:
    """Everything a launch could change: the database's swarms, tasks and agents, the tmux sessions, git's
    worktrees, branches and branch marks, and the run files."""
    with open_store(url) as store:
        swarms = [(s.id, s.epics, s.max_agents, s.settings, s.stop_mode, s.ended_at) for s in store.list_swarms()]
        tasks = sorted((t.id, t.epic, t.state.value, t.owner) for t in store.list_tasks())
        members = {s[0]: sorted(t.id for t in store.list_tasks(swarm_id=s[0])) for s in swarms}
        agents = [(a.id, a.swarm_id, a.session, a.branch, a.worktree, a.state, a.pid) for a in store.list_agents()]
    tmux = Tmux(tmux_socket)
    return {
        "swarms": swarms,
        "tasks": tasks,
        "members": members,
        "agents": agents,
        "sessions": sorted(tmux.sessions()),
        "worktrees": git(project, "worktree", "list", "--porcelain"),
        "branches": git(project, "for-each-ref", "--format=%(refname) %(objectname)", "refs/heads"),
        "marks": subprocess.run(
            ["git", "config", "--get-regexp", r"^branch\..*\.swarm-id$"],
            cwd=project,
            capture_output=True,
            text=True,
            check=False,
        ).stdout,
        "run_files": sorted(p.name for p in (project / ".swarm" / "run").glob("*.json")),
    }


def test_a_launch_that_fails_changes_nothing(project: Path, run: Run, tmp_path: Path, tmux_socket: str) -> None:
    _fails_and_changes_nothing(project, run, tmp_path, tmux_socket, f"sqlite:///{project}/.swarm/swarm.db", ())


def test_a_launch_that_fails_changes_nothing_on_postgresql(
    project: Path,
    run: Run,
    tmp_path: Path,
    tmux_socket: str,
    pg_url: str,  # noqa: F811
) -> None:
    options = ("--db", pg_url, "--host-label", "h1")
    _fails_and_changes_nothing(project, run, tmp_path, tmux_socket, pg_url, options, prefix="h1-")


def _fails_and_changes_nothing(
    project: Path, run: Run, tmp_path: Path, tmux_socket: str, url: str, options: tuple[str, ...], prefix: str = ""
) -> None:
    _second_epic(project)
    gate = tmp_path / "gate"
    agent = f'while [ ! -e "{gate}" ]; do sleep 0.2; done; {DEMO_AGENT}'
    first = run("launch", "E1", "--agents", "1", "--command", agent, *options, env=LONG_LEASE)
    assert first.returncode == 0, first.stderr
    retry_until(lambda: status_json(run)["counts"]["claimed"] == 1, seconds=120)  # agent-1 holds A
    before = _world(project, tmux_socket, url)

    # A check that can fail runs before anything is written: a plain file where agent-2's worktree must go.
    in_the_way = project / ".worktrees" / f"{prefix}agent-2"
    in_the_way.write_text("not a worktree\n")
    refused = run("launch", "E2", "--agents", "2", "--command", agent, env=LONG_LEASE)
    assert refused.returncode == 2, refused.stdout + refused.stderr
    assert str(in_the_way) in refused.stderr
    assert "move or delete it" in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1, refused.stderr
    assert _world(project, tmux_socket, url) == before
    in_the_way.unlink()

    # A failure after the first write (agent-2's setup command fails in its new worktree) is rolled back.
    (project / "swarm.toml").write_text("[swarm]\nsetup = ['case \"$PWD\" in */*agent-2) exit 3;; esac']\n")
    failed = run("launch", "E2", "--agents", "2", "--command", agent, env=LONG_LEASE)
    assert failed.returncode == 1, failed.stdout + failed.stderr
    assert "setup command" in failed.stderr
    assert "nothing of this launch was kept" in failed.stderr
    assert len(failed.stderr.strip().splitlines()) == 1, failed.stderr
    assert _world(project, tmux_socket, url) == before
    assert not in_the_way.exists()
    assert status_json(run)["swarm"]["epics"] == ["E1"]

    gate.touch()
    down = run("teardown", "--now")
    assert down.returncode == 0, down.stdout + down.stderr
    assert Tmux(tmux_socket).sessions() == []
    assert git(project, "worktree", "list", "--porcelain").count("worktree ") == 1


def test_msg_list_and_queue_events_read_an_older_swarm(project: Path, run: Run) -> None:
    _second_epic(project)
    assert run("queue", "init", "--epic", "E1").returncode == 0
    old = status_json(run)["swarm"]["id"]
    assert run("msg", "send", "during the first swarm").returncode == 0
    assert run("teardown").returncode == 0  # no agents: it only ends the swarm
    assert run("queue", "init", "--epic", "E2").returncode == 0
    assert status_json(run)["swarm"]["id"] != old
    assert run("msg", "send", "during the second swarm").returncode == 0

    listed = run("msg", "list", "--swarm", old, "--json")
    assert listed.returncode == 0, listed.stderr
    bodies = [json.loads(line)["body"] for line in listed.stdout.splitlines()]
    assert "during the first swarm" in bodies
    assert "during the second swarm" not in bodies
    everything = run("msg", "list", "--json").stdout
    assert "during the second swarm" in everything
    assert "during the first swarm" in everything

    events = run("queue", "events", "--swarm", old, "--json")
    assert events.returncode == 0, events.stderr
    assert {json.loads(line)["task_id"] for line in events.stdout.splitlines()} == {"A", "B", "C", "D"}
    assert {"X", "Y"} <= {json.loads(line)["task_id"] for line in run("queue", "events", "--json").stdout.splitlines()}

    for args in (("msg", "list"), ("queue", "events")):
        refused = run(*args, "--swarm", "sw-nope")
        assert refused.returncode == 2, refused.stdout + refused.stderr
        assert "no swarm" in refused.stderr
        assert len(refused.stderr.strip().splitlines()) == 1, refused.stderr


def test_status_watch_follows_the_current_swarm_in_plain_lines_off_a_terminal(
    project: Path, run: Run, tmux_socket: str, tmp_path: Path
) -> None:
    _second_epic(project)
    first = run("launch", "E1", "--agents", "1", "--command", DEMO_AGENT, "--wait", "--timeout", "120", timeout=240)
    assert first.returncode == 0, first.stdout + first.stderr
    old = status_json(run)["swarm"]["id"]
    out = tmp_path / "watch.out"
    env = {k: v for k, v in os.environ.items() if not k.startswith("SWARM_")}
    env["SWARM_TMUX_SOCKET"] = tmux_socket
    with out.open("w") as sink:
        watcher = subprocess.Popen(
            [sys.executable, "-m", "swarm", "status", "--watch"], cwd=project, env=env, stdout=sink, stderr=sink
        )
    try:
        retry_until(lambda: old in out.read_text(), seconds=60, interval=0.2)
        assert run("teardown").returncode == 0
        retry_until(lambda: "ended" in out.read_text(), seconds=60, interval=0.2)
        again = run("launch", "E2", "--command", DEMO_AGENT, "--wait", "--timeout", "120", timeout=240)
        assert again.returncode == 0, again.stdout + again.stderr
        new = status_json(run)["swarm"]["id"]
        retry_until(lambda: f"now following swarm {new}" in out.read_text(), seconds=60, interval=0.2)
        retry_until(lambda: f"{new} E2: 2 done" in out.read_text(), seconds=60, interval=0.2)
    finally:
        watcher.terminate()
        watcher.wait(timeout=30)
    lines = out.read_text().splitlines()
    assert "\x1b" not in out.read_text()  # plain text, no terminal control
    assert len(lines) == len(set(lines))  # a line per change, none repeated
    assert lines[0].startswith(f"swarm {old} E1: 4 done")
    assert run("teardown").returncode == 0


def test_a_broken_spec_of_an_epic_not_needed_is_a_warning(project: Path, run: Run) -> None:
    (project / "specs" / "W.md").write_text("---\nid: W\nepic: E3\ntitle: Broken\npriority: high\n---\nbody\n")
    refused = run("launch", "E3", "--command", DEMO_AGENT)
    assert refused.returncode == 2, refused.stdout + refused.stderr  # its own broken spec: refused
    assert "specs/W.md" in refused.stderr
    launched = run("launch", "E1", "--agents", "1", "--command", DEMO_AGENT)
    assert launched.returncode == 0, launched.stdout + launched.stderr
    warning = [line for line in launched.stderr.splitlines() if "specs/W.md" in line]
    assert len(warning) == 1, launched.stderr
    assert warning[0].startswith("swarm: warning: ")
    assert "E1 does not need" in warning[0]
    assert sorted(t["id"] for t in status_json(run)["tasks"]) == ["A", "B", "C", "D"]
    assert run("teardown", "--now").returncode == 0


def test_a_first_launch_that_fails_leaves_no_swarm(project: Path, run: Run, tmux_socket: str) -> None:
    (project / "swarm.toml").write_text("[swarm]\nsetup = ['exit 3']\n")
    failed = run("launch", "E1", "--agents", "2", "--command", DEMO_AGENT)
    assert failed.returncode == 1, failed.stdout + failed.stderr
    assert "nothing of this launch was kept" in failed.stderr
    assert not (project / ".swarm" / "swarm.db").exists()
    assert Tmux(tmux_socket).sessions() == []
    assert git(project, "for-each-ref", "refs/heads/swarm") == ""
    assert git(project, "worktree", "list", "--porcelain").count("worktree ") == 1
    (project / "swarm.toml").write_text("[swarm]\nsetup = []\n")
    again = run("launch", "E1", "--agents", "1", "--command", DEMO_AGENT, "--wait", "--timeout", "120", timeout=240)
    assert again.returncode == 0, again.stdout + again.stderr
    assert len(json.loads(run("history", "--json").stdout)["swarms"]) == 1
    assert run("teardown").returncode == 0
