"""`swarm doctor` against the real agent CLIs the tests pin (.cache): every option each template passes is one the
installed version accepts, so a template and its CLI cannot drift apart unnoticed.

./scripts/test installs the CLIs; a missing one fails this test, never skips it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from tests.helpers import REPO_ROOT, swarm_cli

CLI_BINS = {
    "claude": REPO_ROOT / ".cache" / "claude-code" / "node_modules" / ".bin",
    "codex": REPO_ROOT / ".cache" / "codex" / "node_modules" / ".bin",
    "aider": REPO_ROOT / ".cache" / "aider-venv" / "bin",
}


def test_doctor_passes_with_the_pinned_clis(tmp_path: Path) -> None:
    for kind, folder in CLI_BINS.items():
        assert (folder / kind).exists(), f"{kind} not found in {folder}; ./scripts/test installs it"
    home = tmp_path / "home"
    home.mkdir()
    env = {
        "PATH": os.pathsep.join([*(str(folder) for folder in CLI_BINS.values()), os.environ.get("PATH", "")]),
        "HOME": str(home),
        "DISABLE_AUTOUPDATER": "1",
        "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
    }
    done = swarm_cli("doctor", "--json", "--agent", "claude", cwd=tmp_path, env=env, timeout=180)
    checks = {c["name"]: c for c in json.loads(done.stdout)["checks"]}
    for kind in CLI_BINS:
        assert checks[f"agent {kind}"]["status"] == "ok", checks[f"agent {kind}"]
        flags = checks[f"flags {kind}"]
        assert (flags["status"], flags["required"]) == ("ok", kind == "claude"), flags
    assert done.returncode == 0, done.stdout + done.stderr
