"""Where a training step's time goes, on this machine: one step of a recipe split into its phases.

The phases of a sentence-transformers training step, run by hand with cftune's own pieces (the recipe's model,
design, LoRA and loss), each timed on its own:

  prepare : the batch's texts through the template and the tokenizer (``model.preprocess``), per column
  forward : the loss's forward: the body and pooling of every column (the anchors in one pass, the positives
            and negatives merged into a second, as sentence-transformers does) and InfoNCE, under bf16
            autocast where the CPU has it
  backward: ``loss.backward()``
  optimizer: AdamW's step and zeroing the gradients

It leaves out what the trainer adds around them (its sampler, collator, logging and callbacks); the full
trainer's speed is ``benchmarks/train_throughput.py``. The model's arithmetic per step (4 x the weights a token
meets x the positions the body computed, padding included: forward and the backward's input gradients) over the
forward and backward seconds gives its rate, read against this device's best square matrix product in the same
precision (the share of that peak). With ``--ops N``, torch.profiler records the timed steps too and the N
operators with the most self time are listed, per step (the profiler's own cost slows the step a little: the
phase times of such a run are not the ones to quote). With ``--compile`` and ``--pack``, the same batches run
again after ``cftune.training.compile_blocks`` and packed (``cftune.packing``), in the same process, each
variant's speed read against the eager padded one. ``--device cuda`` times on a GPU (each phase waits for the
device to finish; peak GPU memory per variant; operators by their GPU time).

Usage: python benchmarks/train_step_profile.py [--recipe cpu-gemma3-270m] [--data-dir ../shared/data]
       [--steps 3] [--batch N] [--compile] [--pack] [--ops N] [--device cpu|cuda] [--set KEY=VALUE]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch
from sentence_transformers.util import batch_to_device

from cftune.config import load_config
from cftune.data import load_training_data
from cftune.design import lm_body, weights_per_token
from cftune.encoding import autocast, resolve_precision
from cftune.io import machine
from cftune.models import load_embedder
from cftune.packing import packed_batches
from cftune.training import add_lora, build_loss, compile_blocks


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", default="cpu-gemma3-270m")
    parser.add_argument("--data-dir", default="../shared/data")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="any training setting over the recipe's, as `cftune train --set` (repeatable)")
    parser.add_argument("--steps", type=int, default=3, help="timed steps, after one untimed warm-up step")
    parser.add_argument("--batch", type=int, help="triplets per step (default: the recipe's)")
    parser.add_argument("--compile", action="store_true",
                        help="then torch.compile each transformer block and time the same batches again")
    parser.add_argument("--pack", action="store_true",
                        help="time the same batches packed too (cftune.packing), eager and compiled")
    parser.add_argument("--ops", type=int, default=0,
                        help="list the N operators with the most self time (on the device's clock on a GPU)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()

    config = load_config(args.recipe, [f"data_dir={args.data_dir}", *args.set])
    batch = args.batch or config.batch_size
    rows = load_training_data(config.data, config.data_dir, max_rows=batch * (args.steps + 1))
    batches = [{name: column[step * batch:(step + 1) * batch] for name, column in rows.columns.items()}
               for step in range(args.steps + 1)]
    torch.manual_seed(config.seed)
    model = load_embedder(config.model, config.design, device=args.device)
    model.max_seq_length = config.max_length
    add_lora(model, config)
    results = {}
    for compiled in (False, True) if args.compile else (False,):
        if compiled:
            compile_blocks(model)
        for packed in (False, True) if args.pack else (False,):
            with packed_batches(model, packed):
                name = "+".join(["compiled" if compiled else "eager"] + (["packed"] if packed else []))
                results[name] = profile_steps(model, config, batches, args.ops)
    precision = resolve_precision(config.precision, model.device)
    peak = matmul_peak_gflops(precision, model.device)
    for result in results.values():
        # Model arithmetic: each computed position (padding included) meets every weight outside the token
        # embeddings twice in the forward pass (multiply, add) and twice in the backward (the input's gradient;
        # LoRA's own gradients are ~1% more); attention's products are left out.
        flop = 4 * weights_per_token(model) * result["positions_per_step"]
        compute = result["median_seconds"]["forward"] + result["median_seconds"]["backward"]
        result["model_gflop_per_step"] = round(flop / 1e9, 1)
        result["model_gflop_per_second"] = round(flop / 1e9 / compute, 1)
        result["share_of_matmul_peak"] = round(flop / 1e9 / compute / peak, 2)
        result["vs_eager"] = round(result["triplets_per_second"] / results["eager"]["triplets_per_second"], 2)
    summary = {"recipe": args.recipe, "model": config.model, "batch": batch, "machine": machine(),
               "precision": precision, "timed_steps": args.steps,
               "matmul_peak_gflop_per_second": round(peak, 1), **results}
    print(json.dumps(summary, indent=2))


def profile_steps(model, config, batches: list[dict], ops: int) -> dict:
    """Train on ``batches`` one step each, timing every phase; the first step is left out of the medians (it
    pays one-time costs: compilation, first allocations)."""
    loss_fn = build_loss(model, config)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=config.learning_rate)
    precision = resolve_precision(config.precision, model.device)
    model.train()
    phases: dict[str, list[float]] = {"prepare": [], "forward": [], "backward": [], "optimizer": []}
    tokens: list[int] = []
    positions = [0]  # computed by the body this step, padding included (counted at its token embeddings, the
    # module the body calls first: sentence-transformers calls the body's forward directly, past any hook on it)
    counter = lm_body(model).get_input_embeddings().register_forward_pre_hook(
        lambda module, args: positions.append(positions.pop() + args[0].numel()))
    step_positions: list[int] = []
    device = model.device
    activities = [torch.profiler.ProfilerActivity.CPU] + ([torch.profiler.ProfilerActivity.CUDA]
                                                          if device.type == "cuda" else [])
    profiler = torch.profiler.profile(activities=activities) if ops else None
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    for step, texts in enumerate(batches):
        if step == 1 and profiler is not None:
            profiler.start()  # the timed steps only
        positions[0] = 0
        started = clock(device)
        features = [batch_to_device(model.preprocess(column), device) for column in texts.values()]
        prepared = clock(device)
        with autocast(precision, model.device):  # as the trainer calls it: candidate columns in one pass
            loss = loss_fn(features, None)
        forward = clock(device)
        loss.backward()
        backward = clock(device)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        done = clock(device)
        if step == 0:
            first_step = done - started
            continue
        for name, seconds in zip(phases, (prepared - started, forward - prepared, backward - forward,
                                          done - backward), strict=True):
            phases[name].append(seconds)
        tokens.append(sum(int(f["attention_mask"].sum()) for f in features))
        step_positions.append(positions[0])
    counter.remove()
    step_s = sum(statistics.median(v) for v in phases.values())
    return {"first_step_seconds": round(first_step, 1), "tokens_per_step": statistics.median(tokens),
            "positions_per_step": statistics.median(step_positions),
            "median_seconds": {name: round(statistics.median(v), 3) for name, v in phases.items()},
            "share": {name: round(statistics.median(v) / step_s, 3) for name, v in phases.items()},
            "triplets_per_second": round(len(batches[0]["anchor"]) / step_s, 2),
            **({"peak_gpu_memory_gib": round(torch.cuda.max_memory_allocated(device) / 2**30, 2)}
               if device.type == "cuda" else {}),
            **(top_operators(profiler, ops, len(batches) - 1, device) if profiler is not None else {})}


def clock(device: torch.device) -> float:
    """Seconds, once the device has finished what it was given (a GPU runs behind the Python that feeds it)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter()


def matmul_peak_gflops(precision: str, device: torch.device, repeats: int = 10) -> float:
    """What this device's matrix product reaches at its best: a square product in the training's precision
    (2048 on a CPU, 8192 on a GPU), GFLOP/s (the ceiling for the model's arithmetic above)."""
    size = 8192 if device.type == "cuda" else 2048
    dtype = torch.bfloat16 if precision == "bfloat16" else torch.float32
    a, b = (torch.randn(size, size, dtype=dtype, device=device) for _ in range(2))
    torch.mm(a, b)
    started = clock(device)
    for _ in range(repeats):
        torch.mm(a, b)
    return 2 * size**3 * repeats / (clock(device) - started) / 1e9


def top_operators(profiler, count: int, steps: int, device: torch.device) -> dict:
    """The ``count`` operators with the most self time over the profiled steps (the CPU's, or on a GPU the
    device's): seconds and calls per step, and their share of all operators' self time; and that time per step
    in all (on a GPU: how long the device was busy, against the step's wall time)."""
    profiler.stop()
    key = "self_device_time_total" if device.type == "cuda" else "self_cpu_time_total"
    averages = [a for a in profiler.key_averages() if getattr(a, key) > 0]
    total = sum(getattr(a, key) for a in averages)
    averages.sort(key=lambda a: getattr(a, key), reverse=True)
    top = [{"operator": a.key, "seconds_per_step": round(getattr(a, key) / 1e6 / steps, 3),
            "calls_per_step": round(a.count / steps), "share": round(getattr(a, key) / total, 3)}
           for a in averages[:count]]
    return {"operators": top, "operator_seconds_per_step": round(total / 1e6 / steps, 3)}


if __name__ == "__main__":
    main()
