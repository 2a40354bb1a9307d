"""How the engine benchmarks measure and report: timing, result tables, and their section of RESULTS.md."""

from __future__ import annotations

import contextlib
import datetime
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
RESULTS_MD = Path(__file__).resolve().parent / "RESULTS.md"


def log(message: str) -> None:
    """Progress on stderr, so stdout carries only the result tables."""
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    """Wall time of one call, and what it returned."""
    t0 = time.perf_counter()
    value = fn()
    return time.perf_counter() - t0, value


def median(values: list[float]) -> float:
    """The median as a plain float."""
    return float(statistics.median(values))


def verdict(ok: bool) -> str:
    """A target's cell: PASS or MISS (the summary counts these)."""
    return "PASS" if ok else "MISS"


def fmt_s(seconds: float) -> str:
    """Milliseconds below a second, seconds above."""
    return f"{seconds * 1000:.1f} ms" if seconds < 1 else f"{seconds:.2f} s"


@dataclass
class Table:
    """One result table: printed to stdout and written to RESULTS.md."""

    title: str
    header: list[str]
    rows: list[list[str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def markdown(self) -> str:
        """The table as it appears in RESULTS.md."""
        lines = [f"### {self.title}", "", "| " + " | ".join(h.replace("|", "\\|") for h in self.header) + " |",
                 "|" + "|".join("---" for _ in self.header) + "|"]
        lines += ["| " + " | ".join(str(c).replace("|", "\\|") for c in row) + " |" for row in self.rows]
        if self.notes:
            lines.append("")
            lines += [f"- {n}" for n in self.notes]
        return "\n".join(lines) + "\n"

    def text(self) -> str:
        """The table as printed on stdout, columns padded."""
        cells = [self.header] + [[str(c) for c in r] for r in self.rows]
        widths = [max(len(r[i]) for r in cells) for i in range(len(self.header))]
        out = [f"== {self.title} =="]
        for k, row in enumerate(cells):
            out.append("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip())
            if k == 0:
                out.append("  ".join("-" * w for w in widths))
        out += [f"  * {n}" for n in self.notes]
        return "\n".join(out) + "\n"


# --- the machine the numbers come from ---------------------------------------------------------

def foreign_cpu(seconds: float = 1.0) -> float:
    """Cores used by other processes over `seconds` while this process sleeps (shared machines)."""
    def busy() -> tuple[float, float]:
        fields = [float(v) for v in Path("/proc/stat").read_text().split("\n")[0].split()[1:]]
        own = [float(v) for v in Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()[11:15]]
        return sum(fields[:8]) - fields[3] - fields[4], sum(own)  # all but idle/iowait; own incl. children

    try:
        tick = os.sysconf("SC_CLK_TCK")
        (b0, o0), t0 = busy(), time.perf_counter()
        time.sleep(seconds)
        (b1, o1), t1 = busy(), time.perf_counter()
        return max(0.0, (b1 - b0 - (o1 - o0)) / tick / (t1 - t0))
    except (OSError, ValueError, IndexError):
        return float("nan")


@dataclass
class Contention:
    """Other processes' CPU use, sampled for 1 s before each benchmark."""

    samples: list[tuple[str, float]] = field(default_factory=list)

    def sample(self, label: str) -> None:
        """Samples now, before benchmark `label`."""
        self.samples.append((label, foreign_cpu(1.0)))
        log(f"other processes used {self.samples[-1][1]:.2f} cores just before benchmark {label}")

    def line(self) -> str:
        """The environment line of RESULTS.md."""
        values = ", ".join(f"{label}: {cores:.2f}" for label, cores in self.samples)
        return (f"- CPU used by other processes, sampled for 1 s before each benchmark (cores of "
                f"{os.cpu_count()}): {values}")


def code_state() -> str:
    """quant_core's git commit, and whether its files have uncommitted changes."""
    try:
        commit = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True,
                                text=True, check=False).stdout.strip() or "unknown"
        dirty = subprocess.run(["git", "-C", str(REPO), "status", "--porcelain", "--", "quant_core"],
                               capture_output=True, text=True, check=False).stdout.strip()
    except OSError:
        return "unknown"
    return commit + (" with uncommitted changes in quant_core/" if dirty else "")


def environment_lines(code: str) -> list[str]:
    """RESULTS.md's lines on the code, CPU, Python and package versions."""
    from quant_core.env import describe_environment

    env = describe_environment(threads=1)
    flags = ""
    try:
        text = Path("/proc/cpuinfo").read_text()
        found = [f for f in ("avx2", "avx512f", "avx512_vnni", "avx_vnni") if f" {f}" in text]
        flags = f" ({', '.join(found)})" if found else ""
    except OSError:
        pass
    packages = dict(env.packages)
    for extra in ("pillow",):
        with contextlib.suppress(metadata.PackageNotFoundError):
            packages[extra] = metadata.version(extra)
    return [
        f"- quant_core: {code} (when the run started)",
        f"- CPU: {env.cpu}{flags}, {env.cpu_count} logical cores; {platform.platform()}",
        f"- Python {env.python}; " + ", ".join(f"{k} {v}" for k, v in packages.items()),
    ]


# --- RESULTS.md -------------------------------------------------------------------------------

def write_results(command: str, kind: str, tables: list[Table], started: datetime.datetime, seconds: float,
                  env_lines: list[str]) -> None:
    """Replaces (or appends) the `kind` section ("full" or "quick") of RESULTS.md, leaving the rest alone."""
    marker_start, marker_end = f"<!-- bench:{kind}:start -->", f"<!-- bench:{kind}:end -->"
    body = [marker_start, f"## {kind.capitalize()} run", "",
            f"- Command: `{command}`",
            f"- Date: {started.isoformat(timespec='seconds')} (took {seconds / 60:.1f} min)",
            *env_lines, "",
            "Ratios compare measurements taken in this same run; nothing here is asserted by tests.", ""]
    body += [t.markdown() for t in tables]
    summary = []
    for t in tables:
        verdicts = [c for row in t.rows for c in row if c.startswith(("PASS", "MISS"))]
        if verdicts:
            summary.append(f"| {t.title.split(' (')[0]} | {sum(v.startswith('PASS') for v in verdicts)} | "
                           f"{sum(v.startswith('MISS') for v in verdicts)} |")
    body += ["### Summary", "", "| benchmark | PASS | MISS |", "|---|---|---|", *summary, "", marker_end]
    section = "\n".join(body) + "\n"
    text = RESULTS_MD.read_text() if RESULTS_MD.exists() else "# quant_core engine benchmarks\n\n" \
        "Written by `bench/bench_engine.py`; see bench/README.md.\n\n"
    if marker_start in text and marker_end in text:
        head, rest = text.split(marker_start, 1)
        text = head + section + rest.split(marker_end, 1)[1].lstrip("\n")
    else:
        text = text.rstrip("\n") + "\n\n" + section
    RESULTS_MD.write_text(text)
