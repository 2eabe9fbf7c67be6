"""Where the time of an int8 encode goes: torch's profiler over one encode of STS sentences with
``--quantize int8`` (cftune.int8), the ops with the most time of their own first.

Usage: python benchmarks/int8_profile.py RUN [--n 64] [--data-dir ../shared/data]
"""

from __future__ import annotations

import argparse

from encode_throughput import sample_sentences
from torch.profiler import profile

from cftune import encode, load_embedder
from cftune.data import resolve_data_dir
from cftune.io import machine


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", help="a trained run folder")
    parser.add_argument("--n", type=int, default=64)
    parser.add_argument("--data-dir", default="../shared/data")
    args = parser.parse_args()
    texts = sample_sentences(resolve_data_dir(args.data_dir), args.n)
    model = load_embedder(args.run, inference=True, quantize="int8")
    encode(model, texts[:32])  # warm-up
    with profile() as profiler:
        encode(model, texts)
    print(f"{args.run}, {len(texts)} STS sentences, int8, {machine()}")
    print(profiler.key_averages().table(sort_by="self_cpu_time_total", row_limit=20))


if __name__ == "__main__":
    main()
