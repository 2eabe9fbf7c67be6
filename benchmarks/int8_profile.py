"""Where the time of an int8 encode goes: torch's profiler over one encode of STS sentences with
``--quantize int8`` (cftune.int8), the ops with the most time of their own first.

Usage: python benchmarks/int8_profile.py RUN [--n 64] [--data-dir ../shared/data]
"""

from __future__ import annotations

from encode_throughput import run_and_sentences, warm_up
from torch.profiler import profile

from cftune import encode, load_embedder
from cftune.io import machine
from cftune.models import prepare_for_inference


def main() -> None:
    args, texts = run_and_sentences(__doc__, 64)
    model = prepare_for_inference(load_embedder(args.run), quantize="int8")
    warm_up(model, texts)
    with profile() as profiler:
        encode(model, texts)
    print(f"{args.run}, {len(texts)} STS sentences, int8, {machine()}")
    print(profiler.key_averages().table(sort_by="self_cpu_time_total", row_limit=20))


if __name__ == "__main__":
    main()
