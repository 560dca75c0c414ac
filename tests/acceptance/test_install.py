"""Installing swarm like a tool: the wheel, in a fresh virtual environment outside the checkout, runs on its own.

The wheel is built from this checkout (``pip wheel --no-build-isolation``: the build backend comes from .venv,
no index is asked) and installed into a new virtual environment with ``pip install --no-index`` from a
wheelhouse under ``.cache/wheelhouse``.
The first run on a machine fills that wheelhouse once from pip's ordinary sources (what ``scripts/_setup.sh``
installs from); later runs need no network. Then ``swarm demo``, ``swarm doctor`` and ``swarm init`` run from
that environment, in a folder outside the checkout, with nothing of the checkout on ``PATH`` or ``sys.path``:
so the templates, the SQL files and the demo's agent must all be inside the wheel.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from swarm.runtime.tmux import private_socket_file
from tests.acceptance.conftest import git

ROOT = Path(__file__).resolve().parents[2]
WHEELHOUSE = ROOT / ".cache" / "wheelhouse"
DIST_NAME = "coding-agent-swarm"


def _pip(python: Path | str, *args: str | Path, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(python), "-m", "pip", "--disable-pip-version-check", *map(str, args)],
        capture_output=True,
        text=True,
        check=False,
        timeout=timeout,
        env=_clean_env(),
    )


def _clean_env(**extra: str) -> dict[str, str]:
    """The environment of a user's shell: no SWARM_* settings, nothing of this checkout or its .venv."""
    dev_bin = str(Path(sys.executable).parent)
    path = [p for p in os.environ.get("PATH", os.defpath).split(os.pathsep) if p and p != dev_bin]
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("SWARM_")
        # Bytecode is written on first use, as for most users: pip compiles nothing (--no-compile), which is
        # quicker than compiling every dependency when the demo's processes import only some of them.
        and k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME", "PYTHONDONTWRITEBYTECODE")
    }
    env["PATH"] = os.pathsep.join(path)
    env.update(extra)
    return env


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The ``bin`` folder of a fresh virtual environment that holds only the wheel and its dependencies."""
    where = tmp_path_factory.mktemp("install")
    dist = where / "dist"
    built = _pip(sys.executable, "wheel", "--no-deps", "--no-build-isolation", "--wheel-dir", dist, ROOT)
    assert built.returncode == 0, built.stdout + built.stderr
    (wheel,) = dist.glob("coding_agent_swarm-*.whl")
    venv = where / "venv"
    # Without pip of its own (ensurepip takes longer than the rest): .venv's pip installs into it (--python).
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    into = ("--python", venv / "bin" / "python")
    offline = (*into, "install", "--no-compile", "--no-index", "--find-links", dist, "--find-links", WHEELHOUSE, wheel)
    done = _pip(sys.executable, *offline)
    if done.returncode != 0:
        # The wheelhouse lacks a dependency (first run on this machine, or a new requirement): gather them once.
        gathered = _pip(sys.executable, "wheel", "--wheel-dir", WHEELHOUSE, "--find-links", dist, wheel, timeout=600)
        assert gathered.returncode == 0, gathered.stdout + gathered.stderr
        for own in WHEELHOUSE.glob("coding_agent_swarm-*.whl"):
            own.unlink()  # only the dependencies stay: this checkout's wheel is built afresh every run
        done = _pip(sys.executable, *offline)
    assert done.returncode == 0, done.stdout + done.stderr
    return venv / "bin"


def test_the_wheel_holds_the_package_and_its_templates(installed: Path, tmp_path: Path) -> None:
    probe = subprocess.run(
        [
            str(installed / "python"),
            "-c",
            "import swarm, swarm.agents; print(swarm.__file__); print(swarm.agents.templates_dir()); "
            "print(sorted(swarm.agents.known_kinds()))",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=True,
        env=_clean_env(),
    )
    package, templates, kinds = probe.stdout.splitlines()
    venv = installed.parent
    assert Path(package).is_relative_to(venv), package  # the installed copy, not this checkout
    assert Path(templates).is_relative_to(venv), templates
    assert kinds == "['aider', 'claude', 'codex', 'command']"
    shown = _pip(sys.executable, "--python", installed / "python", "show", DIST_NAME)
    assert shown.returncode == 0, shown.stderr
    version = subprocess.run(
        [str(installed / "swarm"), "--version"], capture_output=True, text=True, check=True, env=_clean_env()
    )
    assert version.stdout.startswith("swarm ")


def test_the_installed_swarm_runs_the_demo_outside_the_checkout(
    installed: Path, tmp_path: Path, tmux_socket: str
) -> None:
    env = _clean_env(PATH=f"{installed}{os.pathsep}{_clean_env()['PATH']}", SWARM_TMUX_SOCKET=tmux_socket)
    demo = subprocess.run(
        ["swarm", "demo", "--pace", "0", "--dir", str(tmp_path)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
        timeout=180,
        env=env,
    )
    out = demo.stdout
    assert demo.returncode == 0, out + demo.stderr
    assert "3 scripted agents work an 8-task backlog" in out
    assert f"tmux socket '{tmux_socket}'" in out  # SWARM_TMUX_SOCKET is honoured
    assert f"SWARM_TMUX_SOCKET={tmux_socket} swarm attach agent-1" in out
    # It ends with swarm merge on its result: every task on the integration branch.
    assert "branch swarm/DEMO/integration is at" in out
    assert "8 tasks merged" in out
    assert "calc/cli.py" in out.split("branch swarm/DEMO/integration is at", 1)[1]
    assert "8/8 tasks done" in out
    # Proper English: no "(s)", and teardown does not report the sessions that closed by themselves.
    assert "(s)" not in out
    assert "closed 0" not in out
    assert "no swarm process is left running" in out
    assert not private_socket_file(tmux_socket).exists()  # the socket file the demo made is removed
    assert not any(tmp_path.glob("swarm-demo-*")), "the throwaway repository is removed"


def test_the_installed_doctor_and_init_work_outside_the_checkout(installed: Path, tmp_path: Path) -> None:
    env = _clean_env(SWARM_AGENT_KIND="command")
    doctor = subprocess.run(
        [str(installed / "swarm"), "doctor", "--json"],
        check=False,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env=env,
    )
    assert doctor.returncode == 0, doctor.stdout + doctor.stderr
    checks = {c["name"]: c for c in json.loads(doctor.stdout)["checks"]}
    assert Path(checks["python"]["detail"]).is_relative_to(installed.parent)
    assert {"agent aider", "agent claude", "agent codex", "agent command"} <= set(checks)
    repo = tmp_path / "mine"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    init = subprocess.run(
        [str(installed / "swarm"), "init"], check=False, cwd=repo, capture_output=True, text=True, env=env
    )
    assert init.returncode == 0, init.stdout + init.stderr
    assert (repo / "swarm.toml").is_file()
    assert list((repo / "specs").rglob("*.md"))
