"""The trainer's data path alone: how fast sentence-transformers' DataLoader (the no-duplicates sampler, then the
collator: each column's texts through the template and the tokenizer, padded) hands batches of a recipe to a
training step, on this machine's CPU, with no model work beside it.

On a CPU it is a small part of a step (seconds of model arithmetic); on a GPU it runs on the same thread as the
step between batches (``dataloader_num_workers`` 0, the default), so its time per batch is a floor under the
step's. Every batch size is timed in this one process, on the same rows.

Usage: python benchmarks/train_data_path.py [--recipe cpu-gemma3-270m] [--data-dir ../shared/data]
       [--batches 32,64,256] [--count 20] [--set KEY=VALUE] [--out results/train-profile/data-path]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from sentence_transformers import SentenceTransformerTrainer

from cftune.config import load_config
from cftune.io import machine, write_atomic
from cftune.runs import RunFolder
from cftune.training import (
    build_loss,
    build_model,
    load_training_sets,
    trained_columns,
    training_arguments,
    training_dataset,
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", default="cpu-gemma3-270m")
    parser.add_argument("--data-dir", default="../shared/data")
    parser.add_argument("--batches", default="32,64,256")
    parser.add_argument("--count", type=int, default=20, help="timed batches per size, after one untimed")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--out", help="write OUT.json and OUT.md")
    args = parser.parse_args()

    config = load_config(args.recipe, [f"data_dir={args.data_dir}", *args.set])
    columns = {name: trained_columns(config, rows) for name, rows in load_training_sets(config).items()}
    dataset, _, _ = training_dataset(config, columns)
    model, prompts, _ = build_model(config, columns, None)
    results = []
    with tempfile.TemporaryDirectory() as scratch:
        for batch in (int(b) for b in args.batches.split(",")):
            config.batch_size = batch
            training = training_arguments(config, RunFolder(Path(scratch)), (args.count + 1, 0), prompts, False,
                                          model.device)
            trainer = SentenceTransformerTrainer(model=model, args=training, train_dataset=dataset,
                                                 loss=build_loss(model, config))
            results.append(time_batches(trainer.get_train_dataloader(), batch, args.count))
    result = {"recipe": args.recipe, "model": config.model, "machine": machine(), "by_batch": results}
    print(json.dumps(result, indent=2))
    if args.out:
        write_atomic(f"{args.out}.json", json.dumps(result, indent=2) + "\n")
        write_atomic(f"{args.out}.md", markdown(result))


def time_batches(loader, batch: int, count: int) -> dict:
    """Seconds per batch over ``count`` batches, the first (worker start, caches) left out."""
    batches = iter(loader)
    next(batches)
    started = time.perf_counter()
    for _ in range(count):
        next(batches)
    seconds = (time.perf_counter() - started) / count
    return {"batch": batch, "milliseconds_per_batch": round(seconds * 1000, 1),
            "triplets_per_second": round(batch / seconds)}


def markdown(result: dict) -> str:
    lines = [f"# The trainer's data path alone ({result['recipe']})", "",
             f"`python benchmarks/train_data_path.py --recipe {result['recipe']}`: the trainer's DataLoader (sampler "
             f"and collator, tokenization included), one thread, no model work beside it. Machine: "
             f"{result['machine']}.", "", "| batch | ms per batch | triplets/s |", "|---:|---:|---:|"]
    lines += [f"| {r['batch']} | {r['milliseconds_per_batch']} | {r['triplets_per_second']:,} |"
              for r in result["by_batch"]]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
