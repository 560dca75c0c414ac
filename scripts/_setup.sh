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

# The agent CLIs the tests run for real (tests/acceptance/test_{claude,codex,aider}_agent.py) against the
# scripted API stand-ins in ../shared/tools, each installed once under .cache/ (git-ignored), at pinned versions.
# To try newer ones: CODEX_VERSION=x.y.z AIDER_VERSION=x.y.z ./scripts/test (after rm -rf .cache/codex .cache/aider-venv).
CODEX_VERSION="${CODEX_VERSION:-0.171.0}"
AIDER_VERSION="${AIDER_VERSION:-0.86.2}"

# In CI (CI=true) every piece must be there: a test that cannot run its CLI fails, so say why here, first.
agent_cli_missing() {
    if [ "${CI:-}" = "true" ]; then
        die "CI: $*"
    fi
    say "warning: $*; the test of that agent will fail"
}

# The real Claude Code CLI, installed once into .cache/claude-code.
ensure_claude_cli() {
    local prefix="$ROOT/.cache/claude-code"
    [ -x "$prefix/node_modules/.bin/claude" ] && return 0
    command -v npm >/dev/null 2>&1 || die "npm is needed to install the Claude Code CLI for the tests; install Node.js (apt-get install nodejs npm) and run this again"
    say "installing the Claude Code CLI into .cache/claude-code (once)"
    npm install --prefix "$prefix" --no-audit --no-fund --loglevel=error @anthropic-ai/claude-code >&2 \
        || die "npm could not install @anthropic-ai/claude-code; see the messages above"
}

# The real Codex CLI (npm), installed once into .cache/codex.
ensure_codex_cli() {
    local prefix="$ROOT/.cache/codex"
    [ -x "$prefix/node_modules/.bin/codex" ] && return 0
    if ! command -v npm >/dev/null 2>&1; then
        agent_cli_missing "npm is needed to install the Codex CLI for the tests; install Node.js (apt-get install nodejs npm)"
        return 0
    fi
    say "installing the Codex CLI $CODEX_VERSION into .cache/codex (once)"
    npm install --prefix "$prefix" --no-audit --no-fund --loglevel=error "@openai/codex@$CODEX_VERSION" >&2 \
        || agent_cli_missing "npm could not install @openai/codex@$CODEX_VERSION; see the messages above"
}

# Aider (PyPI) in a venv of its own, .cache/aider-venv: its pinned dependencies would clash with the project's.
ensure_aider_cli() {
    local venv="$ROOT/.cache/aider-venv"
    [ -x "$venv/bin/aider" ] && return 0
    local python
    # aider 0.86 supports Python 3.10 to 3.12.
    python="$(PYTHON="${AIDER_PYTHON:-}" find_python_for_aider)" || {
        agent_cli_missing "aider needs Python 3.10, 3.11 or 3.12 (or set AIDER_PYTHON=/path/to/python)"
        return 0
    }
    say "installing aider $AIDER_VERSION into .cache/aider-venv with $python (once)"
    { "$python" -m venv "$venv" &&
        "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "aider-chat==$AIDER_VERSION" >&2; } \
        || { rm -rf "$venv"; agent_cli_missing "pip could not install aider-chat==$AIDER_VERSION; see the messages above"; }
}

find_python_for_aider() {
    local candidate
    for candidate in "${PYTHON:-}" python3.12 python3.11 python3.10 python3; do
        [ -n "$candidate" ] || continue
        if command -v "$candidate" >/dev/null 2>&1 &&
            "$candidate" -c 'import sys; sys.exit(0 if (3, 10) <= sys.version_info[:2] <= (3, 12) else 1)' 2>/dev/null; then
            command -v "$candidate"
            return 0
        fi
    done
    return 1
}

# bubblewrap, for the sandbox tests ([swarm] sandbox = "bwrap", tests/acceptance/test_sandbox.py). As root with
# apt-get it is installed; otherwise the missing piece is named (a failure in CI, a warning elsewhere). It must
# also work here: a kernel or container that refuses user or pid namespaces makes every sandbox fail.
bwrap_missing() {
    if [ "${CI:-}" = "true" ]; then
        die "CI: $*"
    fi
    say "warning: $*; the sandbox tests will fail"
}

ensure_bwrap() {
    if ! command -v bwrap >/dev/null 2>&1; then
        if [ "$EUID" = 0 ] && command -v apt-get >/dev/null 2>&1; then
            say "installing bubblewrap (apt-get, once)"
            { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq bubblewrap; } >&2 \
                || { bwrap_missing "apt-get could not install bubblewrap; see the messages above"; return 0; }
        else
            bwrap_missing "bwrap is missing: install bubblewrap (apt-get install bubblewrap, dnf install bubblewrap, pacman -S bubblewrap)"
            return 0
        fi
    fi
    local err
    if ! err="$(bwrap --ro-bind / / --unshare-pid --proc /proc --dev /dev true 2>&1)"; then
        bwrap_missing "bwrap cannot create a sandbox here (${err:-no message}); user namespaces may be disabled"
    fi
}

# Every agent CLI the tests need; quick (three file checks) once installed.
ensure_agent_clis() {
    ensure_claude_cli
    ensure_codex_cli
    ensure_aider_cli
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
    # The distribution was called "swarm" before it became "coding-agent-swarm" (the PyPI name "swarm" is another
    # project's): remove that install first, or two distributions would claim the same files.
    if "$VENV/bin/python" -m pip show --quiet swarm >/dev/null 2>&1; then
        "$VENV/bin/python" -m pip uninstall --quiet --yes swarm >&2 || die "pip could not remove the old 'swarm' install"
    fi
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -e "$ROOT[dev]" \
        || die "pip could not install the project; see the messages above"
    printf '%s' "$want" >"$STAMP"
    compile_package
}
