#!/usr/bin/env bash
# Packs what one call of a lent GPU machine needs to measure training throughput (issue 22), into
# .cache/gpu-kit (ignored by git; name it in the device tool's `carry`), under 64 MiB:
#   wheels/   cftune's pinned versions of the libraries that machine has older or lacks (constraints.txt),
#             for its Python 3.12, manylinux x86-64
#   model/    Gemma 3 270M's config and tokenizer, no weights: measure.sh builds random weights there (speed
#             does not depend on the weights' values, and 241 MiB of GGUF would take five calls to carry)
#   data/     the NLI triplets and the STS sets (../shared/data does not travel)
# Usage (in the repo root, with the gemma3-270m GGUF converted once, e.g. by `make demo`):
#   bash benchmarks/gpu/prepare.sh [../shared/data]
set -euo pipefail
data=${1:-../shared/data}
kit=.cache/gpu-kit
rm -rf "$kit.tmp" && mkdir -p "$kit.tmp/wheels" "$kit.tmp/model" "$kit.tmp/data"
pins=()
# (its huggingface_hub 1.33 and typer serve these versions; huggingface_hub 2.x would need httpx2 too)
for name in transformers sentence-transformers peft tokenizers datasets dill multiprocess; do
  pins+=("$(grep -i -m1 "^${name}==" constraints.txt)")
done
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
  -d "$kit.tmp/wheels" "${pins[@]}"
# the architecture only: config and tokenizer of the converted GGUF (cftune.sources resolves the alias)
folder=$(.venv/bin/python -c "from cftune.sources import resolve_source; print(resolve_source('gemma3-270m')[0])")
cp "$folder"/config.json "$folder"/tokenizer_config.json "$kit.tmp/model/"
gzip -c "$folder"/tokenizer.json > "$kit.tmp/model/tokenizer.json.gz"  # 33 MB -> 6
cp -r "$data/nli" "$data/sts" "$kit.tmp/data/"
rm -rf "$kit" && mv "$kit.tmp" "$kit"
du -sh "$kit"/* "$kit"
