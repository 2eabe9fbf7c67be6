"""Encoding throughput: cftune's batched encode vs the paper's loop vs sentence-transformers' defaults.

All three run in this one process on the same model and the same sentences (real STS sentences):

  (a) the paper's evaluation loop: one sentence per forward pass through the causal LM (LM head included,
      output_hidden_states=True), last layer at the last token; fp32 as written, and once more under the
      same bf16 autocast cftune uses, so the ratio is not only a precision effect;
  (b) sentence-transformers' own encode with default settings (batch 32, fp32) on the cftune-built model;
  (c) cftune.encode: body only, longest-first batches of 32, bf16 autocast where the CPU has it natively.

Then a fine-tuned model's paths, in fp32 and (where the CPU has it natively) bf16: the base model, the
model with a LoRA on all linear layers (rank 8, as the cpu-gemma3-270m recipe trains it) left unmerged,
as PEFT runs it, and merged into the weights, as cftune's inference loads do; where bf16 is native, the
merged model once more with its weights cast to bf16 (what inference loads do there now, instead of
autocast); and the merged model in int8 (``--quantize int8``).
``--tuned RUN`` uses a trained run folder; without it the adapter is a fresh one with random B (the same
arithmetic).

Usage: python benchmarks/encode_throughput.py [--model gemma3-270m] [--n 512] [--data-dir ../shared/data]
                                              [--tuned RUN] [--skip-paper]
"""

from __future__ import annotations

import argparse
import copy
import time
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM

from cftune import encode, load_embedder
from cftune.config import load_config
from cftune.data import load_sts_task, parse_tasks, resolve_data_dir
from cftune.design import EmbedderDesign
from cftune.encoding import autocast, resolve_precision
from cftune.io import machine
from cftune.models import merge_lora, prepare_for_inference, quantize_int8
from cftune.prompts import prompt_of
from cftune.sources import resolve_source
from cftune.training import add_lora


def sample_sentences(data_dir: Path | None, n: int) -> list[str]:
    """n distinct sentences spread evenly over the 9 STS tasks (so lengths are realistic)."""
    pairs = [load_sts_task(task, data_dir) for task in parse_tasks("all")]
    sentences = list(dict.fromkeys(s for p in pairs for s in p.sentence1 + p.sentence2))
    step = max(1, len(sentences) // n)
    return sentences[::step][:n]


def warm_up(model, texts: list[str], precision: str = "auto") -> None:
    """Two untimed batches of different lengths: allocator and oneDNN kernels settle, and int8 compiles its
    kernels (torch.compile specialises on the first shape and goes dynamic on the second)."""
    encode(model, texts[:32], precision=precision)
    encode(model, texts[-32:], precision=precision)


def run_and_sentences(doc: str, n: int) -> tuple[argparse.Namespace, list[str]]:
    """The command line of a benchmark over one trained run: RUN [--n N] [--data-dir DIR]; returns the
    arguments and the sample of STS sentences they name."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", help="a trained run folder")
    parser.add_argument("--n", type=int, default=n)
    parser.add_argument("--data-dir", default="../shared/data")
    args = parser.parse_args()
    return args, sample_sentences(resolve_data_dir(args.data_dir), args.n)


def paper_loop(causal_lm, tokenizer, texts: list[str], template: str) -> torch.Tensor:
    """The paper's evaluation: each sentence alone, whole causal LM, hidden_states[-1] at the EOS."""
    vectors = []
    with torch.inference_mode():
        for text in texts:
            ids = tokenizer(template.format(text=text))["input_ids"] + [tokenizer.eos_token_id]
            out = causal_lm(input_ids=torch.tensor([ids]), output_hidden_states=True)
            vectors.append(out.hidden_states[-1][0, -1].float())
    return torch.stack(vectors)


def tuned_model(model: str, tuned: str | None):
    """(unmerged, merged) copies of a fine-tuned embedder: a trained run, or a fresh all-linear LoRA."""
    if tuned:
        return load_embedder(tuned), prepare_for_inference(load_embedder(tuned))
    pair = []
    for _ in range(2):
        embedder = load_embedder(model, EmbedderDesign(prompt="eol"))
        torch.manual_seed(0)  # the same adapter (A and B) in both copies
        add_lora(embedder, load_config("cpu-gemma3-270m"))
        with torch.no_grad():
            for name, parameter in embedder.named_parameters():
                if "lora_B" in name:
                    parameter.normal_(0, 0.01)
        pair.append(embedder)
    merge_lora(pair[1])
    return pair[0].eval(), pair[1].eval()


def tuned_rows(args, texts: list[str], precision: str) -> list[tuple[str, float]]:
    """Base vs LoRA unmerged vs merged, in fp32 and in the native precision when it is not fp32; there,
    also the merged model with its weights cast to bf16 once, as inference loads do now."""
    base = prepare_for_inference(load_embedder(args.model, EmbedderDesign(prompt="eol")))
    unmerged, merged = tuned_model(args.model, args.tuned)
    a, b = encode(unmerged, texts[:64], precision="float32"), encode(merged, texts[:64], precision="float32")
    print(f"merged vs unmerged, fp32, 64 sentences: largest relative difference "
          f"{((a - b).norm(dim=1) / a.norm(dim=1)).max().item():.1e}")
    paths = [(f"{name}, {run_precision}" + (" autocast" if run_precision != "float32" else ""), embedder,
              run_precision)
             for run_precision in dict.fromkeys(["float32", precision])
             for name, embedder in (("base", base), ("tuned, LoRA unmerged", unmerged), ("tuned, LoRA merged", merged))]
    if precision == "bfloat16":
        paths.append(("tuned, LoRA merged, bf16 weights", copy.deepcopy(merged).to(torch.bfloat16), precision))
    int8 = copy.deepcopy(merged)
    quantize_int8(int8)  # --quantize int8
    paths.append(("tuned, LoRA merged, int8", int8, "float32"))
    rows = []
    for name, embedder, run_precision in paths:
        warm_up(embedder, texts, run_precision)
        started = time.perf_counter()
        encode(embedder, texts, batch_size=args.batch_size, precision=run_precision)
        rows.append((name, time.perf_counter() - started))
    return rows


def timed(fn):
    start = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="gemma3-270m")
    parser.add_argument("--n", type=int, default=512, help="sentences per measurement")
    parser.add_argument("--data-dir", default="../shared/data")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--tuned", help="a trained run folder (default: a fresh all-linear LoRA, same cost)")
    parser.add_argument("--skip-paper", action="store_true", help="only the fine-tuned model's rows")
    args = parser.parse_args()
    torch.manual_seed(0)

    texts = sample_sentences(resolve_data_dir(args.data_dir), args.n)
    precision = resolve_precision("auto", "cpu")
    print(f"model {args.model}, {len(texts)} STS sentences, {machine()}, cftune precision {precision}")
    if not args.skip_paper:
        paper_rows(args, texts, precision)
    rows = tuned_rows(args, texts, precision)
    print("\n| path | sentences/s | vs fp32 unmerged |\n|---|---:|---:|")
    baseline = dict(rows)["tuned, LoRA unmerged, float32"]
    for name, seconds in rows:
        print(f"| {name} | {len(texts) / seconds:.1f} | {baseline / seconds:.2f}x |")


def paper_rows(args, texts: list[str], precision: str) -> None:
    embedder = load_embedder(args.model)
    template = prompt_of(embedder)
    source, trust_remote_code = resolve_source(args.model)
    causal_lm = AutoModelForCausalLM.from_pretrained(source, dtype=torch.float32,
                                                     trust_remote_code=trust_remote_code).eval()
    tokenizer = embedder.tokenizer

    encode(embedder, texts[:64], batch_size=args.batch_size)  # warm-up (allocator, oneDNN kernels)
    reference, paper_s = timed(lambda: paper_loop(causal_lm, tokenizer, texts, template))
    rows = [("(a) paper loop, fp32", paper_s)]
    if precision != "float32":  # the paper loop with cftune's precision, so the ratio is not only precision
        with autocast(precision, "cpu"):
            _, paper_bf16_s = timed(lambda: paper_loop(causal_lm, tokenizer, texts, template))
        rows.append((f"(a') paper loop, {precision} autocast", paper_bf16_s))
    _, st_s = timed(lambda: embedder.encode(texts))
    ours, ours_s = timed(lambda: encode(embedder, texts, batch_size=args.batch_size))

    agreement = torch.nn.functional.cosine_similarity(ours, reference).min().item()
    rows += [
        ("(b) sentence-transformers encode, defaults", st_s),
        (f"(c) cftune encode, batch {args.batch_size}, {precision}", ours_s),
    ]
    print("\n| path | sentences/s | cftune speed-up |\n|---|---:|---:|")
    for name, seconds in rows:
        print(f"| {name} | {len(texts) / seconds:.1f} | {seconds / ours_s:.1f}x |")
    print(f"\nmin cosine(cftune vector, paper-loop fp32 vector) over all sentences: {agreement:.4f}")


if __name__ == "__main__":
    main()
