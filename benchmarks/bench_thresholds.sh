#!/usr/bin/env bash
# Relevance thresholds (bench --thresholds): per-modality relevance maps fitted on half the judged
# queries, precision / recall per document modality measured on the other half, plain vs
# GR-calibrated raw cosine cut-offs vs the mapped relevance. Results in benchmarks/results/:
#   thresholds_flickr8k_mixclip-flickr8k/          Flickr8k dev, setting 3 mixed corpus, isotonic maps
#   thresholds_flickr8k_mixclip-flickr8k/platt/    the same with Platt maps (the default's evidence)
#   thresholds_scifact_all-MiniLM-L6-v2/           SciFact test, text only (one modality), isotonic
#   thresholds_scifact_all-MiniLM-L6-v2/platt/
#   thresholds_machine.txt                         machine, commands, wall time of each run
# Uses the default embedding cache (a warm cache makes the runs take about a minute each).
#
#   benchmarks/bench_thresholds.sh [SHARED_DATA_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
DATA="${1:-../shared/data}"
PY="${PY:-.venv/bin/python}"
OUT=benchmarks/results
LOG="$OUT/thresholds_machine.txt"
export TOKENIZERS_PARALLELISM=false HF_HUB_OFFLINE=1
{
  echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  lscpu | grep -E "Model name|^CPU\(s\)"
  grep MemTotal /proc/meminfo
  "$PY" -c "import torch, sklearn; print('torch', torch.__version__, 'sklearn', sklearn.__version__)"
} > "$LOG"
run() {  # name, then the bench arguments
  local name="$1"; shift
  local start end
  start=$(date +%s.%N)
  "$PY" -m mixsearch bench "$@" > /dev/null
  end=$(date +%s.%N)
  printf '%s: %.1f s wall: mixsearch bench %s\n' "$name" "$(echo "$end - $start" | bc)" "$*" >> "$LOG"
}
for kind in isotonic platt; do
  sub=$([ "$kind" = isotonic ] && echo "" || echo "/platt")
  run "flickr8k $kind" "$DATA/flickr8k" --kind captions --model mixclip-flickr8k --settings 3 --calibrate-on auto \
    --max-calibration 6000 --thresholds 0.3,0.5,0.7 --relevance-kind "$kind" \
    --out "$OUT/thresholds_flickr8k_mixclip-flickr8k$sub"
  run "scifact $kind" "$DATA/scifact" --kind beir --model all-MiniLM-L6-v2 --settings 3 --calibrate-on split:train \
    --thresholds 0.3,0.5,0.7 --relevance-kind "$kind" --out "$OUT/thresholds_scifact_all-MiniLM-L6-v2$sub"
done
cat "$LOG"
