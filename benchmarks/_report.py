"""The one result format of the benchmarks and the one renderer of it.

A benchmark script measures and returns a :class:`Result`: its figures as :class:`Record` s (the ones of the
summary, each with its baseline and goal when it has one, and the section's other figures) and its section
as prose and :class:`Table` s holding values, not text. ``--json`` prints that result; without it the script
prints :func:`render_result`, the same section ``run_all.py`` writes. ``run_all.py`` keeps each run as a
:class:`Run` and writes RESULTS.md with :func:`render_results`. Every number is formatted here, only here.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

#: A value as measured: a number, a text (``"clean"``), a series of numbers, or None when not measured.
Cell = float | int | str | list[float] | None


@dataclass(frozen=True)
class Record:
    """One figure: ``value`` in ``unit`` (``digits`` decimals); with the baseline measured beside it and what
    that baseline is, and the goal it is held to (``met`` None: no verdict) with what limits it when missed.
    ``summary`` False keeps it to the benchmark's own section."""

    figure: str
    value: Cell
    unit: str = ""
    digits: int = 1
    baseline: float | None = None
    baseline_of: str = ""
    goal: str = ""
    met: bool | None = None
    limit: str = ""
    summary: bool = True


@dataclass(frozen=True)
class Table:
    """A table of values; ``digits`` and ``units`` per column (1 decimal and no unit where not given)."""

    header: list[str]
    rows: list[list[Cell]]
    digits: list[int] = field(default_factory=list)
    units: list[str] = field(default_factory=list)

    def column(self, name: str) -> list[Cell]:
        """The values of the column headed ``name``."""
        index = self.header.index(name)
        return [row[index] for row in self.rows]


#: A piece of a section: a paragraph or a table.
Block = str | Table


@dataclass
class Result:
    """What one benchmark run returns: where it ran, the sizes it ran at, its figures and its section."""

    name: str
    title: str
    machine: dict[str, Any]
    params: dict[str, Any]
    records: list[Record]
    section: list[Block]

    def record(self, figure: str) -> Record:
        """The record named ``figure`` (KeyError when there is none)."""
        for r in self.records:
            if r.figure == figure:
                return r
        raise KeyError(f"{self.name}: no record {figure!r}; there are {[r.figure for r in self.records]}")

    def table(self, first_header: str) -> Table:
        """The section's table whose first column is headed ``first_header``."""
        for block in self.section:
            if isinstance(block, Table) and block.header[0] == first_header:
                return block
        raise KeyError(f"{self.name}: no table headed {first_header!r}")

    def to_json(self) -> str:
        """One line of strict JSON (a value that could not be measured becomes null)."""
        return json.dumps(_finite(asdict(self)), allow_nan=False)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Result:
        """The result :meth:`to_json` wrote (TypeError or KeyError for anything else)."""
        return cls(
            name=str(data["name"]),
            title=str(data["title"]),
            machine=dict(data["machine"]),
            params=dict(data["params"]),
            records=[Record(**r) for r in data["records"]],
            section=[Table(**b) if isinstance(b, dict) else str(b) for b in data["section"]],
        )


def _finite(value: Any) -> Any:
    """NaN and infinities (figures that could not be measured) become None: strict JSON has neither."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


def emit(result: Result, as_json: bool) -> None:
    """Print the result: as JSON (``--json``, what run_all.py reads) or as its section for a reader."""
    print(result.to_json() if as_json else render_result(result))


# -- formatting --------------------------------------------------------------------------------------------


def number(value: Any) -> float | None:
    """A finite float, or None (missing, null, NaN, not a number)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def fmt(value: Cell, digits: int = 1, unit: str = "") -> str:
    """A value for a table, with its unit: a count as it is, a measure rounded (thousands whole, with commas);
    "n/a" when not measured."""
    if isinstance(value, list):
        return ", ".join(fmt(v, digits) for v in value) + (unit if value else "")
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value}{unit}"  # a count stays as counted
    n = number(value)
    if n is None:
        return "n/a" if value is None or isinstance(value, float) else f"{value}{unit}"
    whole = digits == 0 or (abs(n) >= 1000 and digits <= 1)
    return f"{n:,.0f}{unit}" if whole else f"{n:,.{digits}f}{unit}"


def ratio(value: Cell, baseline: Cell) -> str:
    """value / baseline as ``0.62x``; "n/a" when either is missing or the baseline is zero."""
    a, b = number(value), number(baseline)
    return "n/a" if a is None or b is None or b == 0 else f"{a / b:.2f}x"


def md_table(header: Sequence[str], rows: Sequence[Sequence[str]], align: str = "") -> list[str]:
    """A markdown table; ``align`` holds one ``l`` or ``r`` per column (default: first left, rest right)."""
    align = align or "l" + "r" * (len(header) - 1)
    rule = ["---:" if a == "r" else ":---" for a in align]
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join(rule) + " |"]
    lines += ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in rows]
    return lines


def verdict(met: bool | None, goal: str) -> str:
    """The summary's "met" column."""
    if met is None:
        return "n/a" if goal else "-"
    return "met" if met else "**NOT met**"


def summary_cells(r: Record) -> list[str]:
    """figure, swarm, baseline, ratio, goal, met."""
    baseline = "-" if r.baseline_of == "" else f"{fmt(r.baseline, r.digits, r.unit)} ({r.baseline_of})"
    shown = ratio(r.value, r.baseline) if r.baseline_of else "-"
    return [r.figure, fmt(r.value, r.digits, r.unit), baseline, shown, r.goal or "-", verdict(r.met, r.goal)]


def table_lines(table: Table) -> list[str]:
    """A :class:`Table` in markdown."""

    def cell(value: Cell, column: int) -> str:
        digits = table.digits[column] if column < len(table.digits) else 1
        return fmt(value, digits, table.units[column] if column < len(table.units) else "")

    return md_table(table.header, [[cell(v, i) for i, v in enumerate(row)] for row in table.rows])


def section_lines(result: Result) -> list[str]:
    """The benchmark's section: its paragraphs and tables, then a table of its figures not in the summary."""
    lines: list[str] = []
    for block in result.section:
        lines += [*(table_lines(block) if isinstance(block, Table) else [block]), ""]
    details = [[r.figure, fmt(r.value, r.digits, r.unit)] for r in result.records if not r.summary]
    if details:
        lines += md_table(["figure", "value"], details)
    return lines[:-1] if lines and not lines[-1] else lines


def miss_note(name: str, r: Record, load: float | None, cpus: int) -> str:
    """The note naming a goal not met, what limits it, and the load the benchmark started under."""
    why = r.limit or "no analysis recorded for this goal; see its section."
    text = f"- **{name}: {r.figure}** is {fmt(r.value, r.digits, r.unit)} against the goal {r.goal}. Limited by: {why}"
    if load is not None and load > 2 * cpus:
        text += (
            f" The load average was {load:.1f} on {cpus} CPUs when it started: its processes got a small share of "
            "the CPUs, so part of this miss may be the machine's; rerun it alone on a quiet machine "
            f"(`benchmarks/run_all --only {name}`)."
        )
    elif load is not None and load > cpus:
        text += f" The load average was {load:.1f} on {cpus} CPUs when it started."
    return text


def render_result(result: Result) -> str:
    """One benchmark's report for a reader: the machine, its figures with their goals, its section."""
    info = ", ".join(f"{k} {v}" for k, v in result.machine.items())
    header = ["figure", "swarm", "baseline", "ratio", "goal", "met"]
    figures = [summary_cells(r) for r in result.records if r.summary]
    misses = [miss_note(result.name, r, None, os.cpu_count() or 1) for r in result.records if r.met is False]
    lines = [f"## {result.title}", "", f"Machine: {info}.", "", *md_table(header, figures, "lrrrll"), ""]
    lines += [*misses, ""] if misses else []
    return "\n".join([*lines, *section_lines(result)]).rstrip() + "\n"


# -- RESULTS.md ------------------------------------------------------------------------------------------


@dataclass
class Run:
    """One benchmark's run by run_all.py: how and when it ran, and its result or why there is none."""

    name: str
    title: str
    argv: list[str]
    started: str
    commit: str
    load_before: list[float]
    returncode: int | None = None
    seconds: float | None = None
    result: Result | None = None
    error: str | None = None
    quick: bool = False

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Run:
        """A run :func:`dataclasses.asdict` wrote."""
        result = data.get("result")
        return cls(**{**data, "result": Result.from_json(result) if isinstance(result, dict) else None})


def _runs_table(runs: Sequence[Run]) -> list[str]:
    header = ["benchmark", "started", "duration", "load average before (1/5/15 min)", "commit", "outcome", "command"]
    rows = [
        [
            run.name,
            run.started,
            fmt(run.seconds, 0, " s"),
            " / ".join(str(x) for x in run.load_before),
            f"`{run.commit}`",
            "**FAILED**" if run.error else "ok",
            "`" + " ".join(run.argv) + "`",
        ]
        for run in runs
    ]
    return md_table(header, rows, "lllllll")


def _summary_and_notes(runs: Sequence[Run], cpus: int) -> list[str]:
    summary: list[list[str]] = []
    misses: list[str] = []
    for run in runs:
        load = number(run.load_before[0]) if run.load_before else None
        if run.error:
            summary.append([run.name, "**benchmark failed** (see its section)", "-", "-", "-", "-", "**FAILED**"])
            misses.append(f"- **{run.name}** did not complete: {run.error.splitlines()[0]}")
        for r in run.result.records if run.result else []:
            if r.summary:
                summary.append([run.name, *summary_cells(r)])
            if r.met is False:
                misses.append(miss_note(run.name, r, load, cpus))
    header = ["benchmark", "figure", "swarm", "baseline", "ratio", "goal", "met"]
    return [
        "## Summary",
        "",
        *md_table(header, summary, "llrrrll"),
        "",
        "## Note: goals not met",
        "",
        *(misses or ["Every goal measured in this run is met."]),
    ]


def render_results(runs: Sequence[Run], info: dict[str, str], *, now: str, commit: str) -> str:
    """The whole RESULTS.md: the machine and the runs, one summary of every figure, the goals not met with
    what limits them, then a section per benchmark, in the order of ``runs``."""
    cpus = os.cpu_count() or 1
    quick = any(run.quick for run in runs)
    lines = [
        "# Benchmark results",
        "",
        "Generated by `benchmarks/run_all`"
        + (" --quick (smaller sizes than the goals name)" if quick else "")
        + f" on {now}; commit `{commit}`. Every benchmark ran alone, one after the other, with `--json`; "
        "each baseline was measured in the same run as the figure beside it. Rerun a subset with "
        "`benchmarks/run_all --only NAME[,NAME]`: the other sections then come from their last run "
        "(`benchmarks/.results.json`), each with its own date below.",
        "",
        "## Machine",
        "",
        *md_table(["", ""], [[k, v] for k, v in info.items()], "ll"),
        "",
        *_runs_table(runs),
        "",
    ]
    loads = [x for run in runs if run.load_before and (x := number(run.load_before[0])) is not None]
    if loads and max(loads) > cpus:
        lines += [
            f"The machine was shared while these ran: the 1-minute load average reached {max(loads):.1f} on {cpus} "
            "CPUs before a benchmark started (other work running tests). Timings, latency tails and CPU shares "
            "are worse than on an idle machine, and ratios against a baseline measured in the same run suffer too: "
            "Linux shares the CPUs between runnable processes, so a side or a row with more processes gets a "
            "larger share of the machine than one with fewer.",
            "",
        ]
    lines += _summary_and_notes(runs, cpus)
    for run in runs:
        lines += ["", f"## {run.title}", ""]
        if run.error:
            lines += ["**Failed:**", "", "```", run.error, "```", ""]
        if run.result:
            lines += section_lines(run.result)
    return "\n".join(lines).rstrip() + "\n"
