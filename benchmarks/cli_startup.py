"""How long `cftune --help` and an argument error take, against a bare `python -c pass`.

Each command runs in a fresh process, --runs times (median reported). For comparison, one run of
`import cftune.models` shows what every command, --help included, used to import before parsing
(torch, transformers, sentence-transformers).

Usage: python benchmarks/cli_startup.py [--runs 5] [--no-heavy]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import time

from cftune.io import cpu_name  # no torch: machine() would import it


def seconds(command: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--no-heavy", action="store_true", help="skip the import cftune.models comparison")
    args = parser.parse_args()

    python = [sys.executable]
    cases = [
        ("`python -c pass`", [*python, "-c", "pass"], args.runs),
        ("`cftune --help`", [*python, "-m", "cftune.cli", "--help"], args.runs),
        ("`cftune train --help`", [*python, "-m", "cftune.cli", "train", "--help"], args.runs),
        ("`cftune eval --no-such-flag` (exit 2)", [*python, "-m", "cftune.cli", "eval", "--no-such-flag"],
         args.runs),
    ]
    if not args.no_heavy:
        cases.append(("`import cftune.models` (torch, transformers, sentence-transformers; what every "
                      "command imported before parsing)", [*python, "-c", "import cftune.models"], 1))
    load = os.getloadavg()[0]
    rows = []
    for label, command, runs in cases:
        seconds(command)  # warm the file cache
        rows.append((label, runs, statistics.median(seconds(command) for _ in range(runs))))
    bare = rows[0][2]
    print("| command | runs | median (ms) | over `python -c pass` (ms) |")
    print("|---|---:|---:|---:|")
    for label, runs, median in rows:
        print(f"| {label} | {runs} | {median * 1000:.0f} | {(median - bare) * 1000:+.0f} |")
    print()
    print(f"machine: {platform.machine()} {cpu_name()}, {os.cpu_count()} cores, Python "
          f"{platform.python_version()}, 1-minute load average {load:.2f} at the start")


if __name__ == "__main__":
    main()
