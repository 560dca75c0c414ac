"""The one exception family of swarm.

Every error a user can cause or meet is a :class:`SwarmError`. Its message is a single line that says
what went wrong, why, and what to do next; the CLI boundary prints it and exits with ``exit_code``
(2 for bad input or usage, 1 for a runtime failure). Driver errors (sqlite3, psycopg, git, tmux) are
translated into this family once, in the module that owns the driver.
"""

from __future__ import annotations

EXIT_RUNTIME = 1
EXIT_BAD_INPUT = 2


class SwarmError(Exception):
    """Root of every error swarm reports to a user: exit 1 unless a subclass says otherwise."""

    exit_code: int = EXIT_RUNTIME

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        self.message = message
        self.hint = hint
        super().__init__(self.render())

    def render(self) -> str:
        """The one line printed on stderr: the message, then what to do, if known."""
        if self.hint:
            return f"{self.message}; {self.hint}"
        return self.message


class BadInput(SwarmError):
    """The user gave something swarm cannot use (a flag, a file, a name). Exit 2."""

    exit_code = EXIT_BAD_INPUT


class ConfigError(BadInput):
    """``swarm.toml``, an environment variable or a flag holds an invalid value."""


class BacklogError(BadInput):
    """The backlog of spec files is invalid. Carries every problem found, each naming its file."""

    def __init__(self, problems: list[str], *, hint: str | None = None) -> None:
        self.problems = list(problems)
        count = len(self.problems)
        head = f"backlog is invalid ({count} problem{'s' if count != 1 else ''})"
        body = "\n".join(f"  {p}" for p in self.problems)
        super().__init__(
            f"{head}:\n{body}" if body else head,
            hint=hint or "fix the spec files listed above and run the command again; nothing was written",
        )

    def render(self) -> str:
        """Problems on their own lines, the advice on the last one."""
        return f"{self.message}\n{self.hint}" if self.hint else self.message


class UnknownTask(BadInput):
    """A task id that the queue does not hold."""

    def __init__(self, task_id: str) -> None:
        super().__init__(
            f"no task {task_id!r} in the queue",
            hint="run 'swarm queue status' to see the task ids",
        )


class InvalidTransition(BadInput):
    """A by-hand queue operation the task's state does not allow (cancel a done task, retry a ready one)."""


class StoreError(SwarmError):
    """The database failed or could not be reached. Exit 1."""


class StoreBusy(StoreError):
    """The database stayed locked by other writers for longer than the busy deadline."""


class SchemaTooNew(StoreError):
    """The database was written by a newer swarm; this one cannot use it safely."""


class LeaseLost(SwarmError):
    """A write carried a lease token that no longer holds the task. The caller must stop working on it."""

    def __init__(self, task_id: str, why: str) -> None:
        self.task_id = task_id
        self.why = why
        super().__init__(
            f"lease lost on task {task_id}: {why}",
            hint="stop working on this task; another agent may hold it now",
        )
