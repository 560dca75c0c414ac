"""``python -m swarm``."""

from __future__ import annotations

from swarm.cli.main import main

main()
