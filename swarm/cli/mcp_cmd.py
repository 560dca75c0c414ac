"""``swarm mcp``: the queue and thread verbs as MCP tools, served on stdio to one agent (or, with ``--lead``, the
lead's verbs to the lead)."""

from __future__ import annotations

import typer


def mcp_cmd(
    lead: bool = typer.Option(
        False,
        "--lead",
        help="Serve the lead's tools instead (swarm_launch, swarm_status, swarm_teardown, queue_init, queue_cancel, "
        "queue_retry, msg_list, msg_wait, msg_reply, questions); every call must prove the lead.",
    ),
) -> None:
    """Serve the queue and thread verbs as MCP tools on stdio (server name "swarm").

    Meant to be started by an MCP client such as Claude Code (launch passes it with --mcp-config), not typed
    by hand: it speaks JSON-RPC on stdin/stdout until the client closes the connection. It acts as the
    identity of its environment: inside an agent its worker's channel (SWARM_CHANNEL; the database is never
    opened), else SWARM_AGENT_ID proven by SWARM_TOKEN (no token: the lead), claims scoped to SWARM_ID, on
    SWARM_DATABASE_URL (default: the database configured for the repository around the cwd).

    Tools: queue_claim, queue_heartbeat, queue_release, queue_status, queue_add, msg_send, msg_list,
    msg_wait, msg_ask.

    With --lead (server name "swarm-lead"), for a lead that is itself an agent session: start it in the
    repository's main checkout, e.g. 'claude mcp add swarm -- swarm mcp --lead'. Each tool returns what the
    matching command prints with --json; waits take at most 25 s a call.
    """
    # Imported here so that every other command starts without loading the MCP SDK and its web stack.
    if lead:
        from swarm.mcp_lead import serve as serve_lead

        serve_lead()
        return
    from swarm.mcp_server import serve

    serve()


def register(app: typer.Typer) -> None:
    """Attach ``swarm mcp`` to the root app."""
    app.command("mcp")(mcp_cmd)
