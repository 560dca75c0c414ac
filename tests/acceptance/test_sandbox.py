"""``[swarm] sandbox = "bwrap"`` (docs/contract.md §6 Sandbox): each agent in its own bubblewrap sandbox sees its
worktree and git, not ``.swarm/``, the main checkout, the other worktrees or other processes; its work is
committed as usual. Bad sandbox settings stop launch before it starts anything."""

from __future__ import annotations

import json
import os
import shutil
import socket
from pathlib import Path
from typing import Any

from swarm.runtime import procs
from swarm.runtime.tmux import stop_private_server
from tests.acceptance.conftest import Run, git, status_json
from tests.acceptance.openai_agents import mock_openai  # noqa: F401  (fixture)
from tests.acceptance.test_aider_agent import AIDER_BIN, PRICES
from tests.acceptance.test_claude_agent import CLAUDE_BIN, claude_env, mock_api  # noqa: F401  (fixture)
from tests.acceptance.test_codex_agent import CODEX_BIN, _codex_home
from tests.helpers import retry_until, swarm_cli
from tests.pg import pg_server, pg_url  # noqa: F401  (fixtures)


def _probe(repo: Path) -> str:
    """What every task's agent runs: it looks for what it must not see, writes what it saw to out/<task>.probe
    in its worktree (committed with the task), and A also commits inside the sandbox."""
    r = str(repo)
    return "; ".join(
        [
            'T="$SWARM_TASK_ID"',
            "mkdir -p out",
            "f=out/$T.probe",
            # Root in the sandbox would unmount what hides .swarm/ and the other worktrees, were it not for
            # --cap-drop ALL.
            f"umount -l {r}/.worktrees 2>/dev/null; umount -l {r} 2>/dev/null",
            f"echo \"swarm: $(ls -A {r}/.swarm 2>&1 | tr '\\n' ' ')\" > $f",
            f'echo "db: $(test -e {r}/.swarm/swarm.db && echo visible || echo hidden)" >> $f',
            f"echo \"runfiles: $(ls -A {r}/.swarm/run | tr '\\n' ' ')\" >> $f",
            f"echo \"channel: $(ls -A {r}/.swarm/run/$SWARM_AGENT_ID | tr '\\n' ' ')\" >> $f",
            'echo "agent: $SWARM_AGENT_ID" >> $f',
            # The agent's channel is its way to the queue, on SQLite too.
            'swarm msg send "probe $T" > /dev/null 2>> $f; echo "msg: $?" >> $f',
            f'echo "checkout: $(test -e {r}/README.md && echo visible || echo hidden)" >> $f',
            f"echo \"worktrees: $(ls -A {r}/.worktrees | tr '\\n' ' ')\" >> $f",
            "echo \"procs: $(for p in /proc/[0-9]*; do tr '\\0' ' ' < $p/cmdline; printf '|'; done)\" >> $f",
            'echo "git: $(git rev-parse --abbrev-ref HEAD)" >> $f',
            # What git outside the sandbox obeys stays read-only: no hook, no config, no redirected link.
            f'echo "hook: $(touch {r}/.git/hooks/post-commit 2>/dev/null && echo planted || echo refused)" >> $f',
            f'echo "config: $(git config --file {r}/.git/config core.fsmonitor x 2>/dev/null && echo set || '
            'echo refused)" >> $f',
            'echo "link: $( (echo "gitdir: /tmp" > .git) 2>/dev/null && echo rewritten || echo refused)" >> $f',
            'echo "$T" > out/$T.txt',
            'if [ "$T" = A ]; then git add out/A.txt && git -c user.name=a -c user.email=a@example.invalid '
            'commit -qm "commit made inside the sandbox" && echo "commit: ok" >> $f; fi',
        ]
    )


def _sandboxed(project: Path, tmp_path: Path, extra: str = "") -> dict[str, str]:
    (project / "swarm.toml").write_text(f'[swarm]\nsandbox = "bwrap"\n{extra}')
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    return {"HOME": str(home)}


def _finished(run: Run) -> dict[str, Any]:
    """``swarm status --json`` once the diamond is done or a task is dead."""

    def finished() -> dict[str, Any] | None:
        data = status_json(run)
        return data if data["counts"]["done"] == 4 or data["counts"]["dead"] else None

    return retry_until(finished, seconds=120, interval=0.3)


def test_a_sandboxed_agent_sees_its_worktree_and_git_but_not_swarm_the_checkout_or_the_others(
    project: Path, run: Run, tmp_path: Path
) -> None:
    env = _sandboxed(project, tmp_path)
    launched = run("launch", "E1", "--agents", "2", "--command", _probe(project), env=env)
    assert launched.returncode == 0, launched.stderr
    # Its channel reaches the queue on SQLite too (docs/contract.md §7): nothing to warn about.
    assert "sandbox hides the SQLite queue" not in launched.stdout + launched.stderr
    data = _finished(run)
    assert data["counts"]["done"] == 4, json.dumps(data["tasks"])
    commits = {t["id"]: t["commit"] for t in data["tasks"]}
    for task, sha in commits.items():
        seen = dict(
            line.split(": ", 1) for line in git(project, "show", f"{sha}:out/{task}.probe").splitlines() if ": " in line
        )
        # .swarm/ holds only the skeleton of this agent's own prompt folder and its own channel folder; no
        # database, no run file, no other agent's channel.
        assert sorted(seen["swarm"].split()) == ["prompts", "run"], seen
        assert seen["runfiles"].split() == [seen["agent"]], seen
        assert seen["channel"].split() == ["channel.sock"], seen
        assert (seen["db"], seen["checkout"]) == ("hidden", "hidden"), seen
        assert seen["msg"] == "0", seen
        # One worktree: its own.
        assert len(seen["worktrees"].split()) == 1, seen
        assert seen["git"].startswith("swarm/E1/agent-"), seen
        assert (seen["hook"], seen["config"], seen["link"]) == ("refused", "refused", "refused"), seen
        # Only the sandbox's own processes: bwrap, the agent's shell and the probe; no worker, no other agent.
        procs = [p for p in seen["procs"].split("|") if p.strip()]
        assert procs, seen
        assert not any("worker" in p or "tmux" in p for p in procs), procs
        assert len(procs) <= 6, procs
    assert not (project / ".git" / "hooks" / "post-commit").exists()
    a_probe = git(project, "show", f"{commits['A']}:out/A.probe")
    assert "commit: ok" in a_probe
    assert "commit made inside the sandbox" in git(project, "log", "--format=%s", commits["A"])
    listed = run("msg", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    probes = {json.loads(line)["body"]: json.loads(line)["author"] for line in listed.stdout.splitlines()}
    for task in ("A", "B", "C", "D"):
        assert probes[f"probe {task}"].startswith("agent-"), probes


def test_bad_sandbox_settings_stop_launch_before_anything_starts(project: Path, run: Run, tmp_path: Path) -> None:
    for extra, expected in [
        ('sandbox_paths = ["/nonexistent/tools"]\n', "sandbox_paths names /nonexistent/tools, which does not exist"),
        ('sandbox_home = ["~/.claude"]\n', "sandbox_home names"),
    ]:
        env = _sandboxed(project, tmp_path, extra)
        result = run("launch", "E1", "--agents", "1", "--command", "true", env=env)
        assert result.returncode == 2, result.stderr
        assert expected in result.stderr, result.stderr
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr
        assert not (project / ".worktrees").exists()
        assert not (project / ".swarm" / "run").exists()
    (project / "swarm.toml").write_text('[swarm]\nsandbox = "firejail"\n')
    result = run("launch", "E1", "--agents", "1", "--command", "true")
    assert result.returncode == 2, result.stderr
    assert "swarm.sandbox" in result.stderr, result.stderr


def test_without_bwrap_on_path_launch_says_how_to_install_it(project: Path, run: Run, tmp_path: Path) -> None:
    env = _sandboxed(project, tmp_path)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("git", "tmux"):
        found = shutil.which(tool)
        assert found
        (bin_dir / tool).symlink_to(found)
    env["PATH"] = str(bin_dir)
    result = run("launch", "E1", "--agents", "1", "--command", "true", env=env)
    assert result.returncode == 2, result.stderr
    assert "bwrap (bubblewrap) is not on PATH" in result.stderr
    assert "apt-get install bubblewrap" in result.stderr
    assert not (project / ".worktrees").exists()


def test_the_real_claude_code_cli_works_a_task_inside_the_sandbox(
    tmp_path: Path,
    mock_api: tuple[int, Path],  # noqa: F811
    pg_url: str,  # noqa: F811
) -> None:
    """Claude Code in the sandbox: its Bash tool writes the work, sees neither .swarm/ nor other processes,
    `swarm msg ask` reaches the lead and the `swarm` MCP tools work, through the agent's channel (the queue on
    PostgreSQL here; the SQLite case is the probe test's)."""
    assert (CLAUDE_BIN / "claude").exists(), f"Claude Code CLI not found in {CLAUDE_BIN}; ./scripts/test installs it"
    port, log = mock_api
    repo = tmp_path / "proj"
    (repo / "specs").mkdir(parents=True)
    (repo / "README.md").write_text("# proj\n")
    (repo / "specs" / "A.md").write_text(
        "---\nid: A\nepic: E1\ntitle: Work in the sandbox\n---\n"
        "RUN: mkdir -p out && echo written-in-sandbox > out/A.txt\n"
        f"RUN: (ls -A {repo}/.swarm; echo ---; for p in /proc/[0-9]*; do tr '\\0' ' ' < $p/cmdline; echo; done)"
        " > out/seen.txt 2>&1\n"
        'RUN: swarm msg ask "which base?" --timeout 90 > out/answer.txt\n'
        'TOOL: mcp__swarm__msg_send {"text": "hello from the sandbox", "to": "lead"}\n'
    )
    (repo / "swarm.toml").write_text(f'[swarm]\nsandbox = "bwrap"\nsandbox_paths = ["{CLAUDE_BIN.parent.parent}"]\n')
    git(repo, "init", "-q", "-b", "main")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "initial")
    home = tmp_path / "home"
    home.mkdir()
    sock = f"swarm-sbx-claude-{os.getpid()}"
    env = {
        **claude_env(home, port, sock),
    }
    try:
        # Without its folder in sandbox_paths the CLI would not be found inside: launch says so, starts nothing.
        (repo / "swarm.toml").write_text('[swarm]\nsandbox = "bwrap"\n')
        refused = swarm_cli("launch", "E1", "--agent", "claude", "--agents", "1", "--db", pg_url, cwd=repo, env=env)
        assert refused.returncode == 2, refused.stderr
        assert "is outside what the sandbox shows" in refused.stderr, refused.stderr
        assert not (repo / ".worktrees").exists()
        (repo / "swarm.toml").write_text(
            f'[swarm]\nsandbox = "bwrap"\nsandbox_paths = ["{CLAUDE_BIN.parent.parent}"]\n'
        )
        launched = swarm_cli(
            "launch", "E1", "--agent", "claude", "--agents", "1", "--db", pg_url, cwd=repo, env=env, timeout=120
        )
        assert launched.returncode == 0, launched.stderr

        def question() -> dict[str, Any] | None:
            found = json.loads(swarm_cli("status", "--json", cwd=repo, env=env).stdout)["questions"]
            return found[0] if found else None

        logs = repo / ".swarm" / "logs" / "agent-1.log"
        try:
            asked = retry_until(question, seconds=150, interval=0.3)
        except Exception:
            raise AssertionError(logs.read_text() if logs.exists() else "no log") from None
        assert asked["body"] == "which base?"
        assert str(asked["from"]).endswith("agent-1")
        assert swarm_cli("msg", "reply", str(asked["seq"]), "use main", cwd=repo, env=env).returncode == 0

        def finished() -> dict[str, Any] | None:
            task = json.loads(swarm_cli("status", "--json", cwd=repo, env=env).stdout)["tasks"][0]
            return task if task["state"] in ("done", "dead") else None

        task = retry_until(finished, seconds=150, interval=0.3)
        assert task["state"] == "done", logs.read_text()
        sha = task["commit"]
        assert git(repo, "show", f"{sha}:out/A.txt") == "written-in-sandbox"
        assert git(repo, "show", f"{sha}:out/answer.txt") == "use main"
        swarm_seen, _, procs_seen = git(repo, "show", f"{sha}:out/seen.txt").partition("---")
        assert swarm_seen.split() == ["prompts", "run"], swarm_seen  # run: its own channel folder only
        assert "claude" in procs_seen
        assert "worker" not in procs_seen, procs_seen
        entries = [
            json.loads(line) for line in swarm_cli("msg", "list", "--json", cwd=repo, env=env).stdout.splitlines()
        ]
        # On a shared (PostgreSQL) queue agent ids carry the host label: the asker's is the one.
        hello = [(e["author"], e["to"]) for e in entries if e["body"] == "hello from the sandbox"]
        assert hello == [(asked["from"], "lead")]
        requests = [json.loads(line) for line in log.read_text().splitlines()]
        assert any("mcp__swarm__msg_send" in r["tools"] for r in requests)
        assert swarm_cli("teardown", cwd=repo, env=env).returncode == 0
    finally:
        stop_private_server(sock)


def _one_task_repo(root: Path, body: str, sandbox_paths: list[Path]) -> Path:
    (root / "specs").mkdir(parents=True)
    (root / "README.md").write_text("# proj\n")
    (root / "specs" / "A.md").write_text(f"---\nid: A\nepic: E1\ntitle: Make A\n---\n{body}")
    paths = ", ".join(json.dumps(str(p)) for p in sandbox_paths)
    (root / "swarm.toml").write_text(f'[swarm]\nsandbox = "bwrap"\nsandbox_paths = [{paths}]\n')
    git(root, "init", "-q", "-b", "main")
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "initial")
    return root


def _launch_one(repo: Path, agent: str, model: str, env: dict[str, str]) -> dict[str, Any]:
    launched = swarm_cli(
        *("launch", "E1", "--agent", agent, "--model", model, "--agents", "1", "--wait", "--timeout", "150"),
        cwd=repo,
        env=env,
        timeout=200,
    )
    logs = repo / ".swarm" / "logs" / "agent-1.log"
    assert launched.returncode == 0, launched.stderr + (logs.read_text() if logs.exists() else "")
    task: dict[str, Any] = json.loads(swarm_cli("status", "--json", cwd=repo, env=env).stdout)["tasks"][0]
    assert task["state"] == "done", logs.read_text()
    assert swarm_cli("teardown", cwd=repo, env=env).returncode == 0
    return task


def test_the_real_codex_cli_works_inside_the_sandbox_with_its_own_sandbox_off(
    tmp_path: Path,
    mock_openai: tuple[int, Path],  # noqa: F811
) -> None:
    assert (CODEX_BIN / "codex").exists(), f"Codex CLI not found in {CODEX_BIN}; ./scripts/test installs it"
    port, _ = mock_openai
    body = f"RUN: mkdir -p out && ls -A {tmp_path}/proj/.swarm > out/A.txt && echo codex-in-sandbox >> out/A.txt\n"
    repo = _one_task_repo(tmp_path / "proj", body, [CODEX_BIN.parent.parent])
    home = tmp_path / "home"
    home.mkdir()
    # CODEX_HOME inside HOME: the sandbox shows the agent its home directory (read-write), codex writes there.
    codex_home = _codex_home(home, port)
    sock = f"swarm-sbx-codex-{os.getpid()}"
    env = {
        "PATH": f"{CODEX_BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        "HOME": str(home),
        "CODEX_HOME": str(codex_home),
        "MOCK_OPENAI_KEY": "not-a-real-key",
        "SWARM_TMUX_SOCKET": sock,
    }
    try:
        task = _launch_one(repo, "codex", "gpt-5", env)
        # The shell command ran (codex's own sandbox would have refused to start inside swarm's) and saw in
        # .swarm/ only the skeleton of its prompts and its own channel folder.
        assert git(repo, "show", f"{task['commit']}:out/A.txt").split() == ["prompts", "run", "codex-in-sandbox"]
    finally:
        stop_private_server(sock)


def test_the_real_aider_works_inside_the_sandbox(
    tmp_path: Path,
    mock_openai: tuple[int, Path],  # noqa: F811
) -> None:
    assert (AIDER_BIN / "aider").exists(), f"aider not found in {AIDER_BIN}; ./scripts/test installs it"
    port, _ = mock_openai
    venv = AIDER_BIN.parent
    # The venv's interpreter links to a Python installed outside /usr (pyenv, say): that one must be seen too.
    base = next(
        line.split("=", 1)[1].strip()
        for line in (venv / "pyvenv.cfg").read_text().splitlines()
        if line.startswith("home")
    )
    repo = _one_task_repo(tmp_path / "proj", "WRITE: out/A.txt :: aider-in-sandbox\n", [venv, Path(base).parent])
    home = tmp_path / "home"
    (home / ".aider" / "caches").mkdir(parents=True)
    (home / ".aider" / "caches" / "model_prices_and_context_window.json").write_text(json.dumps(PRICES))
    # Without a git identity aider writes one into .git/config, which the sandbox keeps read-only.
    (home / ".gitconfig").write_text("[user]\n\tname = dev\n\temail = dev@example.invalid\n")
    sock = f"swarm-sbx-aider-{os.getpid()}"
    env = {
        "PATH": f"{AIDER_BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        "HOME": str(home),
        "OPENAI_API_BASE": f"http://127.0.0.1:{port}/v1",
        "OPENAI_API_KEY": "not-a-real-key",
        "LITELLM_LOCAL_MODEL_COST_MAP": "True",
        "SWARM_TMUX_SOCKET": sock,
    }
    try:
        task = _launch_one(repo, "aider", "openai/mock", env)
        assert git(repo, "show", f"{task['commit']}:out/A.txt") == "aider-in-sandbox"
    finally:
        stop_private_server(sock)


def test_sandbox_home_and_network_settings_narrow_what_the_agent_reaches(
    project: Path, run: Run, tmp_path: Path
) -> None:
    """``sandbox_home`` shows only the named paths of $HOME; ``sandbox_network = false`` cuts the host's loopback
    off (a listener of this test is not reachable); the verify command runs in the sandbox as well."""
    # verify runs in the sandbox too: it runs what the agent wrote.
    verify = f'verify = "test ! -e {project}/.swarm/run/$SWARM_AGENT_ID.json"\n'
    env = _sandboxed(project, tmp_path, f'sandbox_home = ["~/.claude"]\nsandbox_network = false\n{verify}')
    home = Path(env["HOME"])
    (home / ".claude").mkdir()
    (home / ".claude" / "settings.json").write_text("{}")
    (home / "secret").write_text("lead secret")
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        connect = f"import socket; socket.create_connection(('127.0.0.1', {port}), timeout=5)"
        agent = (
            'mkdir -p out; f=out/"$SWARM_TASK_ID".txt; '
            'echo "settings: $(cat ~/.claude/settings.json 2>&1)" > $f; '
            'echo "secret: $(cat ~/secret 2>/dev/null || echo hidden)" >> $f; '
            f'echo "net: $(python3 -c "{connect}" 2>/dev/null && echo reached || echo cut)" >> $f'
        )
        launched = run("launch", "E1", "--agents", "1", "--command", agent, env=env)
        assert launched.returncode == 0, launched.stderr
        data = _finished(run)
    assert data["counts"]["done"] == 4, json.dumps(data["tasks"])
    sha = next(t["commit"] for t in data["tasks"] if t["id"] == "A")
    assert git(project, "show", f"{sha}:out/A.txt").splitlines() == ["settings: {}", "secret: hidden", "net: cut"]


def test_teardown_now_stops_everything_in_the_sandbox(project: Path, run: Run, tmp_path: Path) -> None:
    """A sandboxed agent and what it left in the background (a detached sleep) end with teardown --now: the
    worker's signals reach into the pid namespace, and nothing carrying the swarm's id is left."""
    env = _sandboxed(project, tmp_path)
    launched = run(
        "launch", "E1", "--agents", "1", "--command", "(setsid sleep 300 &); while true; do sleep 0.2; done", env=env
    )
    assert launched.returncode == 0, launched.stderr
    retry_until(lambda: status_json(run)["counts"]["claimed"] == 1, seconds=60, interval=0.2)
    data = status_json(run)
    down = run("teardown", "--now", "--json", env=env)
    assert down.returncode == 0, down.stderr
    assert json.loads(down.stdout)["clean"] is True
    assert procs.processes_with_env("SWARM_ID", data["swarm"]["id"]) == []
