"""Positions a training step computes per triplet, by batch size: padded as sentence-transformers batches them,
and packed (``cftune.packing``). A property of the data and the tokenizer, the same on every device.

sentence-transformers runs a step as two passes through the body: the anchors, then the positives and negatives
together, each padded to its longest text. A larger batch holds longer outliers, so each triplet carries more
padding: where a step's time follows the positions it computes, throughput per triplet falls as the batch grows.
Packed (rows of ``ROW_TOKENS`` tokens), a pass computes its tokens plus the short tails of its rows.

The texts are read as the recipe trains them (its template and max_length: ``model.preprocess``), once; the
batches are one epoch of the rows in a seeded random order (the trainer's sampler also keeps duplicates apart,
which changes no length), the last partial batch dropped, as the trainer does.

Usage: python benchmarks/padding_by_batch.py [--recipe cpu-gemma3-270m] [--data-dir ../shared/data]
       [--batches 16,32,64,128,256,512] [--out results/train-profile/padding-by-batch]
"""

from __future__ import annotations

import argparse
import json
import random

from cftune.config import load_config
from cftune.data import load_training_data
from cftune.io import machine, write_atomic
from cftune.models import load_embedder
from cftune.packing import ROW_TOKENS, row_layout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", default="cpu-gemma3-270m")
    parser.add_argument("--data-dir", default="../shared/data")
    parser.add_argument("--batches", default="16,32,64,128,256,512")
    parser.add_argument("--seed", type=int, default=12)
    parser.add_argument("--out", help="write OUT.json and OUT.md")
    args = parser.parse_args()

    config = load_config(args.recipe, [f"data_dir={args.data_dir}"])
    rows = load_training_data(config.data, config.data_dir)
    model = load_embedder(config.model, config.design)
    model.max_seq_length = config.max_length
    lengths = {name: token_lengths(model, texts) for name, texts in rows.columns.items()}
    order = list(range(len(rows)))
    random.Random(args.seed).shuffle(order)
    table = [positions_per_triplet(lengths, order, int(batch)) for batch in args.batches.split(",")]
    result = {"recipe": args.recipe, "model": config.model, "rows": len(rows), "seed": args.seed,
              "row_tokens": ROW_TOKENS, "machine": machine(), "by_batch": table}
    print(json.dumps(result, indent=2))
    if args.out:
        write_atomic(f"{args.out}.json", json.dumps(result, indent=2) + "\n")
        write_atomic(f"{args.out}.md", markdown(result))


def token_lengths(model, texts: list[str], chunk: int = 512) -> list[int]:
    """Each text's tokens as the model reads it in training (template, EOS, truncation)."""
    lengths: list[int] = []
    for start in range(0, len(texts), chunk):
        features = model.preprocess(texts[start:start + chunk])
        lengths += features["attention_mask"].sum(dim=1).tolist()
    return lengths


def positions_per_triplet(lengths: dict[str, list[int]], order: list[int], batch: int) -> dict:
    """One epoch of batches of ``batch`` triplets: tokens, padded and packed positions, each per triplet."""
    tokens = padded = packed = 0
    steps = len(order) // batch
    for step in range(steps):
        rows = order[step * batch:(step + 1) * batch]
        anchors = [lengths["anchor"][i] for i in rows]
        candidates = [lengths[name][i] for name in lengths if name != "anchor" for i in rows]
        for texts in (anchors, candidates):  # the two passes of a step
            tokens += sum(texts)
            padded += len(texts) * max(texts)
            layout_rows, _, width = row_layout(texts, ROW_TOKENS)
            packed += (layout_rows[-1] + 1) * width
    triplets = steps * batch
    return {"batch": batch, "steps": steps, "tokens_per_triplet": round(tokens / triplets, 1),
            "padded_positions_per_triplet": round(padded / triplets, 1),
            "packed_positions_per_triplet": round(packed / triplets, 1),
            "padded_over_tokens": round(padded / tokens, 2), "packed_over_tokens": round(packed / tokens, 2)}


def markdown(result: dict) -> str:
    lines = [f"# Positions computed per triplet, by batch size ({result['recipe']})", "",
             f"`python benchmarks/padding_by_batch.py --recipe {result['recipe']}`: {result['rows']} rows, one "
             f"epoch in a random order (seed {result['seed']}); packed rows of {result['row_tokens']} tokens. "
             f"Machine (for the record; the figures do not depend on it): {result['machine']}.", "",
             "| batch | steps | tokens / triplet | padded positions / triplet | packed positions / triplet | "
             "padded / tokens | packed / tokens |", "|---:|---:|---:|---:|---:|---:|---:|"]
    lines += [f"| {r['batch']} | {r['steps']} | {r['tokens_per_triplet']} | {r['padded_positions_per_triplet']} | "
              f"{r['packed_positions_per_triplet']} | {r['padded_over_tokens']} | {r['packed_over_tokens']} |"
              for r in result["by_batch"]]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
