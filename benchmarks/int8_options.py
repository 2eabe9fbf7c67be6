"""Which int8 inference path is worth shipping? Speed and agreement with fp32, all in this one process.

A tuned model (LoRA merged) encodes the same STS sentences in each of:

  fp32                      the reference
  bf16 weights              weights cast to bf16 once (cftune's inference load where bf16 is native)
  torch.ao dynamic int8     torch's own quantize_dynamic on every linear layer: int8 weights (per output
                            channel) and int8 activations with ONE scale per batch tensor (oneDNN kernels)
  torchao int8, eager       torchao's Int8DynamicActivationInt8WeightConfig: one activation scale per token
                            (only where torchao is installed: pip install torchao)
  torchao int8, bf16 rest   the same on a bf16 model: int8 linear layers, everything else in bf16
  cftune int8               what ``--quantize int8`` ships (cftune.int8): the scheme of torchao's, on
                            torch._int_mm, with the steps around each product, the norms and the MLP
                            blocks compiled (the first batches pay for compiling; not timed here)

and prints sentences/s, the speed-up over fp32 and the lowest and mean cosine to the fp32 vector.
Set ONEDNN_MAX_CPU_ISA=AVX512_CORE_VNNI to see a CPU class with int8 (VNNI) but no native bf16.

Usage: python benchmarks/int8_options.py RUN [--n 256] [--data-dir ../shared/data]
"""

from __future__ import annotations

import copy
import time
import warnings

import torch
from encode_throughput import run_and_sentences, warm_up

from cftune import encode, load_embedder
from cftune.design import lm_body
from cftune.io import machine
from cftune.models import prepare_for_inference, quantize_int8


def torch_ao_int8(model):
    torch.backends.quantized.engine = "onednn"  # measured fastest of x86, fbgemm and onednn here
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.ao.quantization and its qint8 tensors are deprecated for torchao
        torch.ao.quantization.quantize_dynamic(
            lm_body(model), {torch.nn.Linear: torch.ao.quantization.per_channel_dynamic_qconfig},
            dtype=torch.qint8, inplace=True)
    return model


def torchao_int8(model):
    from torchao.quantization import Int8DynamicActivationInt8WeightConfig, quantize_

    quantize_(lm_body(model), Int8DynamicActivationInt8WeightConfig())
    return model


def cftune_int8(model):
    quantize_int8(model)
    return model


def main() -> None:
    args, texts = run_and_sentences(__doc__, 256)
    fp32 = prepare_for_inference(load_embedder(args.run), precision="float32")
    paths = {
        "fp32": lambda: fp32,
        "bf16 weights": lambda: copy.deepcopy(fp32).to(torch.bfloat16),
        "torch.ao dynamic int8": lambda: torch_ao_int8(copy.deepcopy(fp32)),
        "torchao int8, eager": lambda: torchao_int8(copy.deepcopy(fp32)),
        "torchao int8, bf16 rest": lambda: torchao_int8(copy.deepcopy(fp32).to(torch.bfloat16)),
        "cftune int8 (--quantize int8)": lambda: cftune_int8(copy.deepcopy(fp32)),
    }
    print(f"{args.run}, {len(texts)} STS sentences, {machine()}")
    print("\n| path | sentences/s | vs fp32 | min cosine to fp32 | mean cosine |\n|---|---:|---:|---:|---:|")
    reference, reference_seconds = None, None
    for name, build in paths.items():
        try:
            model = build()
        except ImportError as error:  # torchao not installed
            print(f"| {name} | not run: {error} | | | |")
            continue
        warm_up(model, texts, "float32")
        started = time.perf_counter()
        vectors = encode(model, texts, precision="float32")
        seconds = time.perf_counter() - started
        if reference is None:
            reference, reference_seconds = vectors, seconds
        cosine = torch.nn.functional.cosine_similarity(vectors, reference)
        print(f"| {name} | {len(texts) / seconds:.1f} | {reference_seconds / seconds:.2f}x | "
              f"{cosine.min().item():.4f} | {cosine.mean().item():.4f} |", flush=True)


if __name__ == "__main__":
    main()
