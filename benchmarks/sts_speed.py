"""Wall time and score of whole STS evaluations of one tuned model, loaded the ways cftune has loaded it.

Every path runs in this one process, one after the other, on the same model and the same tasks:

  fp32-unmerged   fp32, the LoRA left unmerged as PEFT runs it (how `eval` loaded a run before merging)
  fp32            fp32, the LoRA merged into the weights in memory
  bf16-autocast   LoRA merged, fp32 weights, bf16 autocast (how `auto` ran on a native-bf16 CPU before)
  bf16            LoRA merged, weights cast to bf16 once at load (what `auto` does now where bf16 is native)
  int8            LoRA merged, every linear layer in int8 (`--quantize int8`, cftune.int8)

Writes PATH.json and PATH.md (seconds, sentences/s, speed-up over the first path, 9-task average).

Usage: python benchmarks/sts_speed.py RUN [--paths fp32-unmerged,bf16] [--tasks all] [--out results/inference-speed]
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

from cftune import evaluate_sts, load_embedder
from cftune.design import EmbedderDesign
from cftune.io import machine, write_atomic

PATHS = {  # name -> (load_embedder keyword arguments, the precision evaluate_sts is asked for)
    "fp32-unmerged": ({}, "float32"),
    "fp32": ({"inference": True, "precision": "float32"}, "float32"),
    "bf16-autocast": ({"inference": True, "precision": "float32"}, "bfloat16"),
    "bf16": ({"inference": True, "precision": "bfloat16"}, "bfloat16"),
    "int8": ({"inference": True, "quantize": "int8"}, "float32"),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", help="a trained run folder (a LoRA one shows the merge)")
    parser.add_argument("--paths", default="fp32-unmerged,bf16", help=f"comma list of {', '.join(PATHS)}")
    parser.add_argument("--tasks", default="all")
    parser.add_argument("--data-dir", default="../shared/data")
    parser.add_argument("--out", default="results/inference-speed/sts-speed")
    args = parser.parse_args()
    names = args.paths.split(",")
    if unknown := [n for n in names if n not in PATHS]:
        parser.error(f"unknown path {unknown[0]!r}; choose from {', '.join(PATHS)}")

    rows = []
    for name in names:
        load_arguments, precision = PATHS[name]
        model = load_embedder(args.run, EmbedderDesign(**load_arguments))
        started = time.perf_counter()
        result = evaluate_sts(model, args.tasks, data_dir=args.data_dir, precision=precision,
                              show_progress_bar=False)
        seconds = time.perf_counter() - started
        rows.append({"path": name, "seconds": round(seconds, 1), "sentences": result.sentences_encoded,
                     "average": round(result.average, 2), "scores": result.scores})
        print(f"{name}: {seconds / 60:.1f} min, average {result.average:.2f}", flush=True)

    isa_limit = os.environ.get("ONEDNN_MAX_CPU_ISA")  # set to see a CPU class this one is not
    report = {"run": args.run, "tasks": args.tasks, "machine": machine()
              + (f", ONEDNN_MAX_CPU_ISA={isa_limit}" if isa_limit else ""), "rows": rows}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(out.with_suffix(".json"), json.dumps(report, indent=2) + "\n")
    lines = [f"# STS evaluation time by loading path: {args.run}", "",
             f"`python benchmarks/sts_speed.py {args.run} --paths {args.paths} --tasks {args.tasks}`", "",
             f"Machine: {report['machine']}", "",
             "| path | minutes | sentences/s | speed-up | average |", "|---|---:|---:|---:|---:|"]
    for row in rows:
        lines.append(f"| {row['path']} | {row['seconds'] / 60:.1f} | {row['sentences'] / row['seconds']:.1f} | "
                     f"{rows[0]['seconds'] / row['seconds']:.2f}x | {row['average']:.2f} |")
    write_atomic(out.with_suffix(".md"), "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
