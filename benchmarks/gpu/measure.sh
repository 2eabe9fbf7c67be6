#!/usr/bin/env bash
# Training throughput on a lent GPU machine, before and after, in one call (issue 22). Run by the device tool
# with `carry: [".cache/gpu-kit"]` after `bash benchmarks/gpu/prepare.sh` here:
#   bash benchmarks/gpu/measure.sh [profile] [train] [ops]      (default: profile train)
# It installs the kit's wheels, builds Gemma 3 270M with random weights (speed does not depend on their
# values), then writes to $OUT:
#   step-b64.json, step-b256.json   benchmarks/train_step_profile.py: one step by phase, eager vs compiled
#                                   blocks vs packed, peak GPU memory, share of the matmul peak
#   train-eager.json, train-fast.json  `cftune train` (LoRA r 64 all-linear, eol prompt, NLI triplets), the
#                                   summary of a run with torch_compile and packing off, then both on
#   step-ops.json                   (stage ops) the eager step at batch 64, its operators by GPU time and the
#                                   GPU's busy time per step against the step's wall time (profiled: long);
#   data-path.json                  (stage ops) the trainer's DataLoader alone on that machine's CPU
#   train-fast-workers.json         (stage ops) train-fast's run with 2 dataloader_workers preparing batches
#   log.txt                         everything printed
# Each stage has a time limit (seconds: PROFILE_LIMIT, TRAIN_LIMIT) so that the call ends inside the device tool's
# 10 minutes whatever happens, with the stages done so far in $OUT.
# A dry run on a CPU (python3 being the venv's): PATH=.venv/bin:$PATH SKIP_WHEELS=1 OUT=/tmp/gpu-out BATCHES=4 STEPS=1 TRAIN_STEPS=2 bash benchmarks/gpu/measure.sh
set -uo pipefail
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
kit=.cache/gpu-kit
OUT=${OUT:?set OUT to a folder for the results}
mkdir -p "$OUT"
exec > >(tee "$OUT/log.txt") 2>&1
if [ -z "${SKIP_WHEELS:-}" ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
    "$kit"/wheels/*.whl || exit 1
  export PYTHONPATH=/tmp/site
fi
export PYTHONPATH=src${PYTHONPATH:+:$PYTHONPATH}
python3 -c "import torch, transformers, sentence_transformers, peft; print('torch', torch.__version__,
  'transformers', transformers.__version__, 'sentence-transformers', sentence_transformers.__version__,
  'peft', peft.__version__, 'cuda', torch.cuda.is_available())"
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
model=/tmp/gemma3-270m-random
[ -d "$model" ] || python3 benchmarks/gpu/random_weights.py "$kit/model" "$model" || exit 1
data=$kit/data
recipe=(--set "model=$model" --set lora.r=64 --set lora.alpha=128)
stages=" ${*:-profile train} "
profile() {  # train_step_profile.py on the kit's model and data; its other arguments: "$@"
  timeout "${PROFILE_LIMIT:-170}" python3 benchmarks/train_step_profile.py --data-dir "$data" "${recipe[@]}" \
    --steps "${STEPS:-5}" "$@"
}
if [[ $stages == *" profile "* ]]; then
  for batch in ${BATCHES:-64 256}; do
    profile --batch "$batch" --compile --pack > "$OUT/step-b$batch.json"
    echo "step profile, batch $batch: exit $?"
  done
fi
train() {  # `cftune train` at batch 64 on the kit's model and data, into $OUT/train-NAME.json; NAME, settings
  local name=$1; shift
  rm -rf "/tmp/run-$name"
  timeout "${TRAIN_LIMIT:-110}" python3 -m cftune.cli train --config cpu-gemma3-270m --data-dir "$data" \
    "${recipe[@]}" --set batch_size=64 --set "max_steps=${TRAIN_STEPS:-40}" --set eval_steps=0 \
    --set save_steps=100000 --set logging_steps=10 "$@" --out "/tmp/run-$name"
  echo "train, $name: exit $?"
  cp "/tmp/run-$name/train_summary.json" "$OUT/train-$name.json"
}
if [[ $stages == *" train "* ]]; then
  train eager --set torch_compile=false --set packing=false
  train fast --set torch_compile=true --set packing=true
fi
if [[ $stages == *" ops "* ]]; then
  batches=${BATCHES:-64 256}
  profile --batch "${batches%% *}" --ops 15 > "$OUT/step-ops.json"  # the first batch size, eager
  echo "operators: exit $?"
  timeout "${PROFILE_LIMIT:-170}" python3 benchmarks/train_data_path.py --data-dir "$data" "${recipe[@]}" \
    --batches 64,256 > "$OUT/data-path.json"
  echo "data path: exit $?"
  train fast-workers --set torch_compile=true --set packing=true --set dataloader_workers=2
fi
