"""The scripted agent of ``swarm demo``: it follows plain instructions in its prompt, no model needed.

Instructions are lines of the spec body, so a reader of the demo's specs sees exactly what the "agent" does:

* ``NEED path`` — fail unless ``path`` exists (proves the dependencies' commits were merged in);
* ``THINK text`` — print a line of progress and pause a moment, as a real agent would;
* a fenced block whose info string is ``file path`` — write that file with the block's content.

Run as ``python -m swarm.demo.agent``; it reads the prompt from ``$SWARM_PROMPT_FILE`` (or stdin).
"""

from __future__ import annotations

import os
import re
import sys
import time
from pathlib import Path

_FENCE = re.compile(r"^```file\s+(\S+)\s*\n(.*?)^```\s*$", re.MULTILINE | re.DOTALL)
#: Pause per THINK line; SWARM_DEMO_PACE scales it (0 in tests that want speed).
_PACE = float(os.environ.get("SWARM_DEMO_PACE", "1.0"))


def say(text: str) -> None:
    """Print one line of the agent's output, flushed so the pane shows it at once."""
    print(f"  demo-agent> {text}", flush=True)


def _safe(worktree: Path, relative: str) -> Path:
    target = (worktree / relative).resolve()
    if worktree.resolve() not in target.parents:
        raise SystemExit(f"refusing to write outside the worktree: {relative}")
    return target


def main() -> int:
    """Follow the prompt's instructions in the current directory (the agent's worktree)."""
    prompt_file = os.environ.get("SWARM_PROMPT_FILE")
    prompt = Path(prompt_file).read_text(encoding="utf-8") if prompt_file else sys.stdin.read()
    worktree = Path.cwd()
    task = os.environ.get("SWARM_TASK_ID", "?")
    say(f"{os.environ.get('SWARM_AGENT_ID', 'agent')} reading task {task}")
    for line in prompt.splitlines():
        if line.startswith("NEED "):
            for need in line.split()[1:]:
                if not (worktree / need).exists():
                    say(f"missing {need}: its dependency's work is not in my branch")
                    return 3
                say(f"found {need} from a dependency")
        elif line.startswith("THINK "):
            say(line[6:].strip())
            time.sleep(0.6 * _PACE)
    written = 0
    for match in _FENCE.finditer(prompt):
        target = _safe(worktree, match.group(1))
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(match.group(2), encoding="utf-8")
        lines = len(match.group(2).splitlines())
        say(f"wrote {match.group(1)} ({lines} line{'' if lines == 1 else 's'})")
        written += 1
    if not written:
        say("no file blocks in the prompt; nothing to write")
    say(f"finished {task}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
