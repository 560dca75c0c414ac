"""swarm: run a team of coding agents on one git repository in parallel."""

from __future__ import annotations

__version__ = "0.1.0"
