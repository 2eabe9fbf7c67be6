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
        "command": shlex.join(["cftune", *args.argv]),
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
    tr.add_argument("--config", help="YAML recipe, e.g. configs/cpu-gemma3-270m.yaml")
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
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser().parse_args(argv)
    args.argv = argv  # recorded in reports: the exact command that produced a result
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
