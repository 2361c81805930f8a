#!/usr/bin/env bash
# Runs the same short runs with two sparsegrad binaries and compares their results: the tensor
# bytes of model.safetensors (the header's JSON metadata may differ when configs gain fields) and
# summary.json without timings. Used to show that a refactor changes no result.
#   tools/same_results.sh OLD_BINARY NEW_BINARY [WORKDIR]
set -euo pipefail
old=$1 new=$2 work=${3:-$(mktemp -d)}
runs=(
  "dense|train --epochs 2"
  "str|train --epochs 2 --method str"
  "str-target|train --epochs 2 --method str --target-sparsity 0.9"
  "str-channel|train --model lenet5 --epochs 1 --method str --str-granularity channel --target-sparsity 0.8"
  "str-global|train --epochs 2 --method str --str-granularity global"
  "str-rank|train --model fastgrnn --width 0.5 --epochs 1 --method str --str-granularity rank --str-g exp"
  "gmp|train --epochs 2 --method gmp --target-sparsity 0.9"
  "gmp-flags|train --model lenet5 --epochs 2 --method gmp --target-sparsity 0.8 --first-layer-dense --prune-every 20"
  "magnitude|train --epochs 2 --method magnitude --target-sparsity 0.9"
  "lenet5|train --model lenet5 --epochs 1"
)
baselines=(magnitude-uniform magnitude-erk magnitude-global magnitude-l2norm lamp)
tensor_hash() { python3 - "$1" <<'PY'
import sys, struct, hashlib
b = open(sys.argv[1], 'rb').read(); n = struct.unpack('<Q', b[:8])[0]
print(hashlib.sha256(b[8 + n:]).hexdigest())
PY
}
summary_digest() { python3 - "$1" <<'PY'
import sys, json
s = json.load(open(sys.argv[1]))
for k in ('wall_seconds', 'optimise_seconds', 'evaluate_seconds', 'config'): s.pop(k, None)
print(json.dumps(s, sort_keys=True))
PY
}
for which in old new; do
  bin=${!which}; mkdir -p "$work/$which"
  for r in "${runs[@]}"; do
    name=${r%%|*}; args=${r#*|}
    "$bin" $args --quiet --force --out "$work/$which/$name" > /dev/null
  done
  for m in fcpts "fcpts --variant code" "${baselines[@]}" "magnitude-erk --no-finetune"; do
    name=post-${m// /_}
    "$bin" posttrain --checkpoint "$work/$which/lenet5/model.safetensors" --target-sparsity 0.9 \
      --iters 64 --calib 256 --method $m --quiet --force --out "$work/$which/$name" > /dev/null
  done
done
status=0
for d in "$work"/old/*/; do
  name=$(basename "$d")
  a=$(tensor_hash "$work/old/$name/model.safetensors"); b=$(tensor_hash "$work/new/$name/model.safetensors")
  sa=$(summary_digest "$work/old/$name/summary.json"); sb=$(summary_digest "$work/new/$name/summary.json")
  if [ "$a" = "$b" ] && [ "$sa" = "$sb" ]; then echo "same      $name"; else echo "DIFFERENT $name"; status=1; fi
done
exit $status
