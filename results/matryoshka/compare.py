"""Draws results/matryoshka/compare.png and prints the table from the two committed eval results:
    .venv/bin/python results/matryoshka/compare.py"""

import json
from pathlib import Path

from cftune.evaluation import StsResult
from cftune.reports import plot_dimensions

here = Path(__file__).parent
series = {label: [StsResult.from_dict(d) for d in json.loads((here / f"{name}.json").read_text())["dimensions"]]
          for label, name in (("Matryoshka-trained", "matryoshka"), ("plain", "plain"))}
plot_dimensions(series, here / "compare.png")
print("| dimensions | " + " | ".join(series) + " |\n|---:|" + "---:|" * len(series))
for row in zip(*series.values(), strict=True):
    print(f"| {row[0].dimension} | " + " | ".join(f"{r.average:.2f}" for r in row) + " |")
