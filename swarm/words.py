"""Counted nouns in messages: "1 task", "3 tasks", "an 8-task backlog", never "task(s)" or "all 1 task(s)"."""

from __future__ import annotations

#: Plurals that no rule below makes (verbs that agree with a count).
_IRREGULAR = {"was": "were", "is": "are"}


def plural_of(word: str, count: int) -> str:
    """``word`` as it goes with ``count``: "task" for 1, "tasks" otherwise (0 tasks, 2 tasks)."""
    if count == 1:
        return word
    if word in _IRREGULAR:
        return _IRREGULAR[word]
    # The last word of a phrase takes the plural ("undone dependency" -> "undone dependencies").
    if word.endswith("y") and word[-2:-1] not in ("a", "e", "i", "o", "u"):
        return word[:-1] + "ies"
    if word.endswith(("s", "x", "ch", "sh")):
        return word + "es"
    return word + "s"


def plural(count: int, word: str) -> str:
    """The count and its noun: ``plural(1, "task")`` is "1 task", ``plural(3, "task")`` "3 tasks"."""
    return f"{count} {plural_of(word, count)}"


def article(count: int) -> str:
    """The article read before a number: "an" for 8, 11, 18, 80-89, 800..., 11,000...; else "a"."""
    digits = str(abs(count))
    # Read aloud, a number starts with its leading group of up to three digits ("eleven thousand", "eight
    # hundred"): "an" when that group is spoken starting with a vowel (eight..., eleven, eighteen).
    lead = digits[: len(digits) % 3 or 3]
    return "an" if lead.startswith("8") or lead in ("11", "18") else "a"


def all_of(count: int, word: str) -> str:
    """A subject covering every one of ``count`` things: "the only task", "all 3 tasks"."""
    return f"the only {word}" if count == 1 else f"all {plural(count, word)}"


def did(*actions: tuple[str, int, str]) -> str:
    """What was done, leaving out what was done 0 times: ``did(("closed", 2, "session"), ("removed", 0,
    "worktree"))`` is "closed 2 sessions"; "" when nothing was done."""
    return "; ".join(f"{verb} {plural(count, word)}" for verb, count, word in actions if count)
