"""Where a training step's time goes, on this machine: one step of a recipe split into its phases, with each
column embedded in one padded pass and in length buckets (``cftune.losses``), alternating, in one process.

The phases of a sentence-transformers training step, run by hand with cftune's own pieces (the recipe's model,
design, LoRA and loss), each timed on its own:

  prepare : the batch's texts through the template and the tokenizer (``model.preprocess``), per column
  forward : the loss's forward: the body and pooling of every column, and InfoNCE (bf16 autocast where native)
  backward: ``loss.backward()``
  optimizer: AdamW's step and zeroing the gradients

It leaves out what the trainer adds around them (its sampler, collator, logging and callbacks); the full
trainer's speed is ``benchmarks/train_throughput.py``. "positions" counts the token positions the body computed
(padding included) against the batch's real tokens; a model-FLOP figure for the forward pass (2 x the body's
parameters outside the token embeddings x the real tokens) gives its useful arithmetic rate.

Usage: python benchmarks/train_step_profile.py [--recipe cpu-gemma3-270m] [--data-dir ../shared/data]
       [--steps 3] [--batch N] [--buckets 1,4]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

from cftune.config import load_config
from cftune.data import load_training_data
from cftune.design import lm_body
from cftune.encoding import autocast, resolve_precision
from cftune.io import machine
from cftune.models import load_embedder
from cftune.training import add_lora, build_loss

PHASES = ("prepare", "forward", "backward", "optimizer")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", default="cpu-gemma3-270m")
    parser.add_argument("--data-dir", default="../shared/data")
    parser.add_argument("--steps", type=int, default=3, help="timed steps of each variant, after one untimed step")
    parser.add_argument("--batch", type=int, help="triplets per step (default: the recipe's)")
    parser.add_argument("--buckets", default="1,4", help="length_buckets values to compare (1: one padded pass)")
    args = parser.parse_args()

    config = load_config(args.recipe, [f"data_dir={args.data_dir}"])
    batch = args.batch or config.batch_size
    rows = load_training_data(config.data, config.data_dir, max_rows=batch * (args.steps + 1))
    torch.manual_seed(config.seed)
    model = load_embedder(config.model, config.design)
    model.max_seq_length = config.max_length
    add_lora(model, config)
    variants = [int(b) for b in args.buckets.split(",")]
    losses = {b: build_loss(model, load_config(args.recipe, [f"data_dir={args.data_dir}", f"length_buckets={b}"]))
              for b in variants}
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=config.learning_rate)
    precision = resolve_precision(config.precision, model.device)
    body = lm_body(model)
    dense = sum(p.numel() for p in body.parameters()) - body.get_input_embeddings().weight.numel()
    positions: list[int] = []
    body.get_input_embeddings().register_forward_hook(lambda _, inputs, out: positions.append(inputs[0].numel()))
    model.train()
    phases = {b: {name: [] for name in PHASES} for b in variants}
    computed: dict[int, list[int]] = {b: [] for b in variants}
    tokens: list[int] = []
    for step in range(args.steps + 1):
        texts = {name: column[step * batch:(step + 1) * batch] for name, column in rows.columns.items()}
        for buckets in variants:  # the same batch each way, in turn: drift on a shared machine hits both
            positions.clear()
            started = time.perf_counter()
            features = [model.preprocess(column) for column in texts.values()]
            prepared = time.perf_counter()
            with autocast(precision, model.device):
                loss = losses[buckets](features, torch.zeros(batch))
            forward = time.perf_counter()
            loss.backward()
            backward = time.perf_counter()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            done = time.perf_counter()
            if step == 0:
                continue  # the first step pays one-time costs
            for name, seconds in zip(PHASES, (prepared - started, forward - prepared, backward - forward,
                                              done - backward), strict=True):
                phases[buckets][name].append(seconds)
            computed[buckets].append(sum(positions))
        if step:
            tokens.append(sum(int(f["attention_mask"].sum()) for f in features))
    real = statistics.median(tokens)
    result = {"recipe": args.recipe, "model": config.model, "batch": batch, "precision": precision,
              "machine": machine(), "timed_steps": args.steps, "real_tokens_per_step": real, "variants": {}}
    for buckets in variants:
        step_s = sum(statistics.median(v) for v in phases[buckets].values())
        result["variants"][f"length_buckets={buckets}"] = {
            "positions_per_step": statistics.median(computed[buckets]),
            "median_seconds": {name: round(statistics.median(v), 3) for name, v in phases[buckets].items()},
            "share": {name: round(statistics.median(v) / step_s, 3) for name, v in phases[buckets].items()},
            "step_seconds": round(step_s, 3),
            "triplets_per_second": round(batch / step_s, 2),
            "useful_forward_gflop_per_second": round(
                2 * dense * real / 1e9 / statistics.median(phases[buckets]["forward"]), 1)}
    first, *others = variants
    base = result["variants"][f"length_buckets={first}"]["step_seconds"]
    result["speedup_against_first"] = {f"length_buckets={b}": round(
        base / result["variants"][f"length_buckets={b}"]["step_seconds"], 2) for b in others}
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
