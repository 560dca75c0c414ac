"""``[swarm] sandbox = "bwrap"`` (docs/contract.md §6 Sandbox): each agent in its own bubblewrap sandbox sees its
worktree and git, not ``.swarm/``, the main checkout, the other worktrees or other processes; its work is
committed as usual. Bad sandbox settings stop launch before it starts anything."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from tests.acceptance.conftest import Run, git, status_json
from tests.helpers import retry_until


def _probe(repo: Path) -> str:
    """What every task's agent runs: it looks for what it must not see, writes what it saw to out/<task>.probe
    in its worktree (committed with the task), and A also commits inside the sandbox."""
    r = str(repo)
    return "; ".join(
        [
            'T="$SWARM_TASK_ID"',
            "mkdir -p out",
            "f=out/$T.probe",
            f"echo \"swarm: $(ls -A {r}/.swarm 2>&1 | tr '\\n' ' ')\" > $f",
            f'echo "db: $(test -e {r}/.swarm/swarm.db && echo visible || echo hidden)" >> $f',
            f'echo "runfiles: $(test -e {r}/.swarm/run && echo visible || echo hidden)" >> $f',
            f'echo "checkout: $(test -e {r}/README.md && echo visible || echo hidden)" >> $f',
            f"echo \"worktrees: $(ls -A {r}/.worktrees | tr '\\n' ' ')\" >> $f",
            "echo \"procs: $(for p in /proc/[0-9]*; do tr '\\0' ' ' < $p/cmdline; printf '|'; done)\" >> $f",
            'echo "git: $(git rev-parse --abbrev-ref HEAD)" >> $f',
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


def test_a_sandboxed_agent_sees_its_worktree_and_git_but_not_swarm_the_checkout_or_the_others(
    project: Path, run: Run, tmp_path: Path
) -> None:
    env = _sandboxed(project, tmp_path)
    launched = run("launch", "E1", "--agents", "2", "--command", _probe(project), env=env)
    assert launched.returncode == 0, launched.stderr

    def finished() -> dict[str, Any] | None:
        data = status_json(run)
        return data if data["counts"]["done"] == 4 or data["counts"]["dead"] else None

    data = retry_until(finished, seconds=120, interval=0.3)
    assert data["counts"]["done"] == 4, json.dumps(data["tasks"])
    commits = {t["id"]: t["commit"] for t in data["tasks"]}
    for task, sha in commits.items():
        seen = dict(
            line.split(": ", 1) for line in git(project, "show", f"{sha}:out/{task}.probe").splitlines() if ": " in line
        )
        # .swarm/ holds only the skeleton of this agent's own prompt folder; no database, no run files.
        assert seen["swarm"].split() == ["prompts"], seen
        assert (seen["db"], seen["runfiles"], seen["checkout"]) == ("hidden", "hidden", "hidden"), seen
        # One worktree: its own.
        assert len(seen["worktrees"].split()) == 1, seen
        assert seen["git"].startswith("swarm/E1/agent-"), seen
        # Only the sandbox's own processes: bwrap, the agent's shell and the probe; no worker, no other agent.
        procs = [p for p in seen["procs"].split("|") if p.strip()]
        assert procs, seen
        assert not any("worker" in p or "tmux" in p for p in procs), procs
        assert len(procs) <= 6, procs
    a_probe = git(project, "show", f"{commits['A']}:out/A.probe")
    assert "commit: ok" in a_probe
    assert "commit made inside the sandbox" in git(project, "log", "--format=%s", commits["A"])


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
