"""``swarm mcp``: the queue and thread verbs as MCP tools, served on stdio to one agent."""

from __future__ import annotations

import typer


def mcp_cmd() -> None:
    """Serve the queue and thread verbs as MCP tools on stdio (server name "swarm").

    Meant to be started by an MCP client such as Claude Code (launch passes it with --mcp-config), not typed
    by hand: it speaks JSON-RPC on stdin/stdout until the client closes the connection. It acts as the
    identity of its environment: SWARM_AGENT_ID proven by SWARM_TOKEN (no token: the lead), claims scoped to
    SWARM_ID, on SWARM_DATABASE_URL (default: the database configured for the repository around the cwd).

    Tools: queue_claim, queue_heartbeat, queue_release, queue_status, queue_add, msg_send, msg_list,
    msg_wait, msg_ask.
    """
    # Imported here so that every other command starts without loading the MCP SDK and its web stack.
    from swarm.mcp_server import serve

    serve()


def register(app: typer.Typer) -> None:
    """Attach ``swarm mcp`` to the root app."""
    app.command("mcp")(mcp_cmd)
