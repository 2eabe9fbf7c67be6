"""Command line: thin subcommands that parse arguments and call the library."""

from __future__ import annotations

import argparse
import logging
import shlex
import sys
import time

from cftune.errors import CftuneError


def _eval(args: argparse.Namespace) -> None:
    from cftune.evaluation import evaluate_sts
    from cftune.models import load_embedder
    from cftune.reports import machine, sts_table, write_sts_report

    started = time.perf_counter()
    model = load_embedder(args.model, adapter=args.adapter, prompt=args.prompt, device=args.device)
    result = evaluate_sts(model, args.tasks, data_dir=args.data_dir, batch_size=args.batch_size,
                          precision=args.precision)
    result.meta = {
        "model": args.model + (f" + adapter {args.adapter}" if args.adapter else ""),
        "command": args.command_line,
        "machine": machine(),
        "wall seconds": round(time.perf_counter() - started, 1),
    }
    print(sts_table(result))
    if args.out:
        for path in write_sts_report(result, args.out):
            print(f"wrote {path}")


def _train(args: argparse.Namespace) -> None:
    from cftune.config import load_config
    from cftune.training import train

    flags = {"model": args.model, "data": args.data, "data_dir": args.data_dir, "max_steps": args.max_steps,
             "prompt": args.prompt}
    overrides = [f"{key}={value}" for key, value in flags.items() if value is not None] + args.set
    config = load_config(args.config, overrides)
    out = train(config, args.out, resume=args.resume)
    print(f"trained model: {out}  (evaluate: cftune eval --model {out})")


def _export(args: argparse.Namespace) -> None:
    from cftune.training import export

    print(f"wrote {export(args.run_dir, args.out, merge=args.merge)}")


def _reproduce(args: argparse.Namespace) -> None:
    from cftune.experiments import reproduce

    models = [m.strip() for m in args.models.split(",") if m.strip()] if args.models else None
    report = reproduce(args.out, recipe=args.recipe, models=models, data_dir=args.data_dir, tasks=args.tasks,
                       settings=args.set, command=args.command_line)
    print(f"wrote {report}")


def _ablate(args: argparse.Namespace) -> None:
    from cftune.experiments import ablate, parse_grid

    report = ablate(args.out, grid=parse_grid(args.grid), steps=args.steps, model=args.model, recipe=args.config,
                    data_dir=args.data_dir, tasks=args.tasks, settings=args.set, command=args.command_line)
    print(f"wrote {report}")


def build_parser() -> argparse.ArgumentParser:
    from cftune.models import ALIASES, DEFAULT_MODEL

    parser = argparse.ArgumentParser(prog="cftune", description="Contrastive fine-tuning of small LMs into "
                                     "text embedders, and their STS evaluation.")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    commands = parser.add_subparsers(dest="command", required=True)

    ev = commands.add_parser("eval", help="Spearman x100 on the 9 STS tasks",
                             description="Score a model on the STS benchmarks (cosine vs gold, Spearman x100).")
    ev.add_argument("--model", default=DEFAULT_MODEL,
                    help=f"alias ({', '.join(ALIASES)}), hub id, HF folder, .gguf file or sentence-transformers "
                         f"folder (default: {DEFAULT_MODEL})")
    ev.add_argument("--adapter", help="PEFT/LoRA adapter folder applied on top of --model")
    ev.add_argument("--prompt", help='none | eol | a template with {text}, e.g. "Query: {text}" '
                                     "(decoders; default: the model's saved prompt, else none)")
    ev.add_argument("--tasks", default="all", help="all, or a comma list such as STS12,SICK-R")
    ev.add_argument("--data-dir", help="folder with sts/<TASK>.jsonl (default: $CFTUNE_DATA_DIR, else the hub)")
    ev.add_argument("--out", help="write OUT.json and OUT.md, e.g. results/NAME")
    ev.add_argument("--batch-size", type=int, default=32, help="32 is fastest on a 2-core CPU (measured)")
    ev.add_argument("--precision", default="auto", choices=["auto", "float32", "bfloat16"],
                    help="auto = bf16 autocast where the hardware supports it")
    ev.add_argument("--device", help="cpu, cuda, ... (default: best available)")
    ev.set_defaults(run=_eval)

    tr = commands.add_parser("train", help="LoRA + InfoNCE fine-tuning on triplets",
                             description="Fine-tune a model into an embedder (recipe file, flags and --set).")
    tr.add_argument("--config", help="recipe: a YAML file or a shipped recipe's name (cpu-gemma3-270m, "
                                     "paper-minicpm-2b, paper-gemma-2b, paper-phi-2)")
    tr.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="override a recipe setting, e.g. --set lora.r=16 (repeatable)")
    tr.add_argument("--model", help="model to fine-tune (any --model of eval)")
    tr.add_argument("--data", help="nli (SimCSE triplets) or a CSV/JSONL of anchor,positive[,negative]")
    tr.add_argument("--data-dir", help="local data folder (nli/*.csv, sts/STSBenchmark.dev.jsonl)")
    tr.add_argument("--prompt", help="none | eol | template with {text}")
    tr.add_argument("--max-steps", type=int)
    tr.add_argument("--out", required=True, help="run folder, e.g. runs/NAME")
    tr.add_argument("--resume", action="store_true", help="continue from the last checkpoint in --out")
    tr.set_defaults(run=_train)

    ex = commands.add_parser("export", help="a trained run -> standalone sentence-transformers folder")
    ex.add_argument("run_dir", help="run folder written by cftune train")
    ex.add_argument("--merge", action="store_true", help="merge LoRA into the weights (no peft needed to load)")
    ex.add_argument("--out", required=True)
    ex.set_defaults(run=_export)

    rp = commands.add_parser("reproduce", help="the paper's experiment: base vs fine-tuned STS, with a report",
                             description="For each model: STS of the base model, fine-tuning, STS of the result; "
                                         "writes OUT/report.md (+ .json, plots). Re-running skips finished stages.")
    rp.add_argument("--recipe", default="cpu-small", choices=["cpu-small", "paper"],
                    help="cpu-small: gemma3-270m on a CPU in about an hour; paper: the paper's three hub models "
                         "and settings (GPU, internet)")
    rp.add_argument("--models", help="comma list of models (default: the recipe's)")
    rp.add_argument("--data-dir", help="local data folder (nli/*.csv, sts/*.jsonl; default: $CFTUNE_DATA_DIR, "
                                       "else the hub)")
    rp.add_argument("--tasks", default="all", help="STS tasks to report (default: all 9)")
    rp.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="override a recipe setting for every model, e.g. --set max_steps=50 (repeatable)")
    rp.add_argument("--out", required=True, help="report folder, e.g. reports/NAME")
    rp.set_defaults(run=_reproduce)

    ab = commands.add_parser("ablate", help="short runs over a grid of settings, with a table and plots",
                             description="Train and evaluate every combination of the --grid levels with a short "
                                         "budget. Re-running skips finished configurations.")
    ab.add_argument("--grid", action="append", default=[], metavar="FACTOR=LEVEL,LEVEL",
                    help="e.g. lr=1e-5,5e-5,2e-4  hard_negatives=on,off  prompt=none,eol  hardness=0,5 "
                         "(any training setting; repeatable)")
    ab.add_argument("--steps", type=int, required=True, help="training steps per configuration")
    ab.add_argument("--model", help="model to fine-tune (default: the recipe's)")
    ab.add_argument("--config", default="cpu-gemma3-270m", help="recipe the grid varies (name or YAML path)")
    ab.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="fix another setting")
    ab.add_argument("--data-dir", help="local data folder (default: $CFTUNE_DATA_DIR, else the hub)")
    ab.add_argument("--tasks", default="all", help="STS tasks to score each configuration on (default: all 9)")
    ab.add_argument("--out", required=True, help="report folder, e.g. reports/NAME")
    ab.set_defaults(run=_ablate)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser().parse_args(argv)
    args.command_line = shlex.join(["cftune", *argv])  # recorded in reports: what produced a result
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        args.run(args)
    except (CftuneError, ValueError) as err:
        print(f"cftune: error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
