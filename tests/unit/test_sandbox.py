"""The bubblewrap argv builder (pure) and the sandbox settings' checks."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from swarm.cli.main import run as cli_run
from swarm.config import load_config
from swarm.errors import BadInput, ConfigError
from swarm.runtime import sandbox
from swarm.runtime.sandbox import SandboxSpec, bwrap_argv, mounts

REPO = "/home/u/proj"


def spec(**changes: object) -> SandboxSpec:
    base: dict[str, object] = {
        "worktree": f"{REPO}/.worktrees/a1",
        "repo": REPO,
        "git_common_dir": f"{REPO}/.git",
        "git_dir": f"{REPO}/.git/worktrees/a1",
        "worktree_base": f"{REPO}/.worktrees",
        "prompt_dir": f"{REPO}/.swarm/prompts/a1",
        "home": "/home/u",
        "swarm_paths": ("/venv",),
        "readonly": (f"{REPO}/.git/hooks", f"{REPO}/.git/config", f"{REPO}/.worktrees/a1/.git"),
        "system": (("/usr", None), ("/bin", "usr/bin")),
    }
    base.update(changes)
    return SandboxSpec(**base)  # type: ignore[arg-type]


def order(s: SandboxSpec) -> list[tuple[str, str]]:
    return [(m.op, m.dest) for m in mounts(s)]


def test_a_home_holding_the_repository_is_bound_before_the_repository_is_hidden_and_its_parts_bound_back() -> None:
    seen = order(spec())
    index = {entry: i for i, entry in enumerate(seen)}
    home = index[("--bind", "/home/u")]
    hide_repo = index[("--tmpfs", REPO)]
    hide_worktrees = index[("--tmpfs", f"{REPO}/.worktrees")]
    hide_meta = index[("--tmpfs", f"{REPO}/.git/worktrees")]
    assert (
        home
        < hide_repo
        < index[("--bind", f"{REPO}/.git")]
        < hide_meta
        < index[("--bind", f"{REPO}/.git/worktrees/a1")]
    )
    assert (
        hide_worktrees < index[("--bind", f"{REPO}/.worktrees/a1")] < index[("--ro-bind", f"{REPO}/.worktrees/a1/.git")]
    )
    assert index[("--bind", f"{REPO}/.git")] < index[("--ro-bind", f"{REPO}/.git/hooks")]
    assert hide_repo < index[("--ro-bind", f"{REPO}/.swarm/prompts/a1")]
    # .swarm itself is never bound: only the agent's own prompts, below the hidden repository.
    assert not any(dest == f"{REPO}/.swarm" for _, dest in seen)


def test_a_configured_path_at_a_hidden_path_does_not_uncover_it() -> None:
    seen = order(spec(extra_paths=(REPO,)))
    assert seen.index(("--ro-bind", REPO)) < seen.index(("--tmpfs", REPO))


def test_a_home_subset_is_a_fresh_home_with_only_those_paths() -> None:
    seen = order(spec(home_paths=(".claude", ".config/x")))
    assert ("--bind", "/home/u") not in seen
    assert seen.index(("--tmpfs", "/home/u")) < seen.index(("--bind", "/home/u/.claude"))
    assert ("--bind", "/home/u/.config/x") in seen


def test_the_argv_namespaces_and_runs_the_agent_in_its_worktree() -> None:
    argv = bwrap_argv(spec(), ["claude", "-p"], bwrap="/usr/bin/bwrap")
    assert argv[0] == "/usr/bin/bwrap"
    assert {"--die-with-parent", "--unshare-pid", "--unshare-ipc"} <= set(argv)
    assert argv[argv.index("--cap-drop") + 1] == "ALL"
    assert "--unshare-net" not in argv
    assert argv[-4:] == [f"{REPO}/.worktrees/a1", "--", "claude", "-p"]
    assert argv[argv.index("--chdir") + 1] == f"{REPO}/.worktrees/a1"
    assert argv[argv.index("--proc") : argv.index("--proc") + 2] == ["--proc", "/proc"]
    assert argv[argv.index("--symlink") : argv.index("--symlink") + 3] == ["--symlink", "usr/bin", "/bin"]
    assert "--unshare-net" in bwrap_argv(spec(network=False), ["x"])


def test_the_channel_folder_is_bound_read_write() -> None:
    assert ("--bind", "/run/swarm/a1") in order(spec(channel_dir="/run/swarm/a1"))


def test_git_dirs_reads_the_worktree_link(tmp_path: Path) -> None:
    common = tmp_path / "repo" / ".git"
    meta = common / "worktrees" / "a1"
    meta.mkdir(parents=True)
    (meta / "commondir").write_text("../..\n")
    wt = tmp_path / "wt"
    wt.mkdir()
    (wt / ".git").write_text(f"gitdir: {meta}\n")
    assert sandbox.git_dirs(wt) == (str(meta), str(common))


# -- settings -------------------------------------------------------------------------------------


def test_an_unknown_sandbox_kind_is_one_line_naming_the_choices(tmp_path: Path) -> None:
    (tmp_path / "swarm.toml").write_text('[swarm]\nsandbox = "docker"\n')
    with pytest.raises(ConfigError) as caught:
        load_config(tmp_path, env={})
    assert "swarm.sandbox" in caught.value.render()
    assert "'bwrap'" in caught.value.render()
    assert "\n" not in caught.value.render()


@pytest.mark.parametrize(
    ("key", "value"),
    [("sandbox_paths", '["relative/dir"]'), ("sandbox_home", '["/etc"]'), ("sandbox_home", '["~/../x"]')],
)
def test_sandbox_paths_of_the_wrong_shape_are_refused(tmp_path: Path, key: str, value: str) -> None:
    (tmp_path / "swarm.toml").write_text(f"[swarm]\n{key} = {value}\n")
    with pytest.raises(ConfigError, match=f"swarm.{key}"):
        load_config(tmp_path, env={})


def test_the_sandbox_settings_have_safe_defaults(tmp_path: Path) -> None:
    cfg = load_config(tmp_path, env={}).config.swarm
    assert (cfg.sandbox, cfg.sandbox_network, cfg.sandbox_home, cfg.sandbox_paths) == ("none", True, [], [])


def test_a_missing_sandbox_path_is_bad_input(tmp_path: Path) -> None:
    env = {"HOME": str(tmp_path)}
    with pytest.raises(BadInput, match="sandbox_paths names /nonexistent/x, which does not exist"):
        sandbox.check_paths([], ["/nonexistent/x"], env, repo=tmp_path, worktree_base=tmp_path / ".worktrees")
    with pytest.raises(BadInput, match=r"sandbox_home names .*\.claude, which does not exist"):
        sandbox.check_paths(["~/.claude"], [], env, repo=tmp_path, worktree_base=tmp_path / ".worktrees")


def test_a_sandbox_path_inside_what_is_hidden_is_bad_input(tmp_path: Path) -> None:
    (tmp_path / ".swarm" / "run").mkdir(parents=True)
    with pytest.raises(BadInput, match="inside what the sandbox hides"):
        sandbox.check_paths([], [str(tmp_path / ".swarm" / "run")], {}, repo=tmp_path, worktree_base=tmp_path / "w")


def test_bwrap_missing_is_bad_input_with_how_to_install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(BadInput) as caught:
        sandbox.check("bwrap", home_setting=[], extra=[], env={}, repo=tmp_path, worktree_base=tmp_path)
    text = caught.value.render()
    assert "bwrap (bubblewrap) is not on PATH" in text
    assert "apt-get install bubblewrap" in text
    sandbox.check("none", home_setting=[], extra=[], env={}, repo=tmp_path, worktree_base=tmp_path)


# -- swarm doctor -----------------------------------------------------------------------------------


def _doctor_checks(capsys: pytest.CaptureFixture[str]) -> tuple[int, dict[str, dict[str, object]]]:
    code = cli_run(["doctor", "--json", "--agent", "command"])
    return code, {c["name"]: c for c in json.loads(capsys.readouterr().out)["checks"]}


def test_doctor_requires_bwrap_only_when_the_sandbox_is_configured(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("git", "tmux"):
        found = shutil.which(tool)
        assert found
        (bin_dir / tool).symlink_to(found)
    monkeypatch.setenv("PATH", str(bin_dir))
    code, checks = _doctor_checks(capsys)
    assert checks["sandbox"]["status"] == "missing"
    assert checks["sandbox"]["required"] is False
    assert code == 0
    (tmp_path / "swarm.toml").write_text('[swarm]\nsandbox = "bwrap"\n')
    code, checks = _doctor_checks(capsys)
    assert checks["sandbox"]["required"] is True
    assert "apt-get install bubblewrap" in str(checks["sandbox"]["detail"])
    assert code == 1


def test_doctor_says_bwrap_works_here(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "swarm.toml").write_text('[swarm]\nsandbox = "bwrap"\n')
    _, checks = _doctor_checks(capsys)
    assert checks["sandbox"]["status"] == "ok", checks["sandbox"]
    assert str(checks["sandbox"]["version"]).startswith("0.")


def test_an_agent_cli_the_sandbox_would_not_show_is_bad_input(tmp_path: Path) -> None:
    home, repo, tools = tmp_path / "home", tmp_path / "home" / "proj", tmp_path / "tools"
    for folder in (repo / "node_modules" / ".bin", tools):
        folder.mkdir(parents=True)
    (tools / "claude").write_text("#!/bin/sh\n")
    (repo / "node_modules" / ".bin" / "claude").symlink_to(tools / "claude")
    env = {"HOME": str(home)}
    sandbox.check_visible("/usr/bin/git", home_setting=[], extra=[], env=env, repo=repo)
    with pytest.raises(BadInput, match=f"add {tools} .*to sandbox_paths"):
        sandbox.check_visible(str(tools / "claude"), home_setting=[], extra=[], env=env, repo=repo)
    sandbox.check_visible(str(tools / "claude"), home_setting=[], extra=[str(tools)], env=env, repo=repo)
    # In the home directory, but inside the repository, which the sandbox hides.
    with pytest.raises(BadInput, match="outside what the sandbox shows"):
        sandbox.check_visible(
            str(repo / "node_modules" / ".bin" / "claude"), home_setting=[], extra=[str(tools)], env=env, repo=repo
        )
    # A home subset shows only what it names.
    with pytest.raises(BadInput, match="outside what the sandbox shows"):
        sandbox.check_visible(str(home / "bin" / "x"), home_setting=["~/.claude"], extra=[], env=env, repo=repo)


def test_plan_of_a_real_worktree_binds_its_channel_and_runs(tmp_path: Path) -> None:
    """plan() on a real repository and worktree, and the argv run for real: the channel folder (another
    helper's ``$SWARM_CHANNEL``) is writable inside, the main checkout is not there, .git/config is read-only."""
    repo = tmp_path / "repo"
    repo.mkdir()
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@example.invalid", "-C", str(repo)]
    subprocess.run([*git, "init", "-q", "-b", "main"], check=True)
    (repo / "README.md").write_text("x\n")
    subprocess.run([*git, "add", "-A"], check=True)
    subprocess.run([*git, "commit", "-qm", "init"], check=True)
    worktree = repo / ".worktrees" / "agent-1"
    subprocess.run([*git, "worktree", "add", "-q", "-b", "w", str(worktree)], check=True)
    prompts = repo / ".swarm" / "prompts" / "agent-1"
    prompts.mkdir(parents=True)
    channel = tmp_path / "channels" / "agent-1" / "sock"
    channel.parent.mkdir(parents=True)
    env = {"HOME": str(tmp_path / "home"), "SWARM_CHANNEL": str(channel)}
    (tmp_path / "home").mkdir()
    spec = sandbox.plan(
        repo=repo, worktree=worktree, prompt_dir=prompts, env=env, network=True, home_setting=[], extra=[]
    )
    assert spec.channel_dir == str(channel.parent.resolve())
    assert str((repo / ".git" / "config").resolve()) in spec.readonly
    script = (
        f"touch {channel.parent}/reply && test ! -e {repo}/README.md && "
        f"! touch {repo}/.git/config 2>/dev/null && git log --oneline | wc -l"
    )
    done = subprocess.run(
        sandbox.bwrap_argv(spec, ["/bin/sh", "-c", script]), capture_output=True, text=True, env=os.environ, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "1"
    assert (channel.parent / "reply").exists()
