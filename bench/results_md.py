"""Writes one named section of bench/RESULTS.md between its markers, leaving the rest alone."""

from __future__ import annotations

from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "RESULTS.md"


def write_section(name: str, body: str) -> str:
    """Replaces (or appends) the section `name`; returns the section with its markers."""
    begin, end = f"<!-- {name}:begin -->", f"<!-- {name}:end -->"
    section = f"{begin}\n{body.strip()}\n{end}"
    text = RESULTS.read_text() if RESULTS.exists() else "# Benchmark results\n"
    if begin in text:
        text = text[: text.index(begin)] + section + text[text.index(end) + len(end):]
    else:
        text = text.rstrip() + "\n\n" + section + "\n"
    RESULTS.write_text(text)
    return section


def report(name: str, title: str, body: str, *, write: bool) -> None:
    """Prints a bench's section and, with `write`, puts it in bench/RESULTS.md under `## title`."""
    print(body)
    if write:
        write_section(name, f"## {title}\n\n{body}")
