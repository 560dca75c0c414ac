# Sourced by scripts/test and scripts/demo: check the machine, then create .venv and install the project
# when missing or when pyproject.toml changed since the last install. Fast (no pip call) when set up.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv"
STAMP="$VENV/.swarm-install-stamp"

say() { printf 'swarm setup: %s\n' "$*" >&2; }
die() { say "$*"; exit 1; }

find_python() {
    local candidate
    for candidate in "${PYTHON:-}" python3.13 python3.12 python3.11 python3; do
        [ -n "$candidate" ] || continue
        if command -v "$candidate" >/dev/null 2>&1 &&
            "$candidate" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' 2>/dev/null; then
            command -v "$candidate"
            return 0
        fi
    done
    return 1
}

check_tools() {
    local missing=()
    command -v git >/dev/null 2>&1 || missing+=("git (apt-get install git)")
    command -v tmux >/dev/null 2>&1 || missing+=("tmux (apt-get install tmux)")
    if [ ${#missing[@]} -gt 0 ]; then
        die "missing required tool(s): ${missing[*]}; install them and run this again"
    fi
}

# The real Claude Code CLI, for the test that proves the `claude` template end to end against the scripted
# API stand-in in ../shared/tools. Installed once into .cache/claude-code (git-ignored).
ensure_claude_cli() {
    local prefix="$ROOT/.cache/claude-code"
    [ -x "$prefix/node_modules/.bin/claude" ] && return 0
    command -v npm >/dev/null 2>&1 || die "npm is needed to install the Claude Code CLI for the tests; install Node.js (apt-get install nodejs npm) and run this again"
    say "installing the Claude Code CLI into .cache/claude-code (once)"
    npm install --prefix "$prefix" --no-audit --no-fund --loglevel=error @anthropic-ai/claude-code >&2 \
        || die "npm could not install @anthropic-ai/claude-code; see the messages above"
}

# Every `swarm` process (each agent's `swarm msg`, each worker, each test's subprocess) imports the package
# afresh. Where PYTHONDONTWRITEBYTECODE is set (as on these machines), Python never caches the bytecode of the
# editable checkout and compiles every module again on each start. Compile it once here; compileall skips
# files whose bytecode is current, so this is quick when nothing changed.
compile_package() {
    "$VENV/bin/python" -m compileall -q -j 0 "$ROOT/swarm" >/dev/null \
        || die "could not compile the swarm package; see the messages above"
}

ensure_venv() {
    check_tools
    local want
    want="$(cat "$ROOT/pyproject.toml" "$ROOT/scripts/_setup.sh" | sha256sum | cut -d' ' -f1)"
    if [ -x "$VENV/bin/python" ] && [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$want" ]; then
        compile_package
        return 0
    fi
    local python
    python="$(find_python)" || die "Python 3.11 or newer is required but was not found; install it (or set PYTHON=/path/to/python3.11) and run this again"
    if [ ! -x "$VENV/bin/python" ]; then
        say "creating $VENV with $python"
        "$python" -m venv "$VENV" || die "could not create the virtual environment; install python3-venv and run this again"
    fi
    say "installing swarm and its development tools into .venv (once)"
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -e "$ROOT[dev]" \
        || die "pip could not install the project; see the messages above"
    printf '%s' "$want" >"$STAMP"
    compile_package
}
