#!/usr/bin/env bash
# SciFact anchors for `mixsearch bench`, written to benchmarks/results/:
#  1. all-MiniLM-L6-v2 on SciFact test (BEIR), text only (setting 3 on a text corpus): NDCG@10 must
#     match the published MTEB figure 0.645 within 0.005. Plain vs GR-calibrated, trec_eval and the
#     paper's NDCG variant.
#  2. Setting 1 on SciFact with screenshots: each of the 5,183 documents replaced by a rendered
#     screenshot of its text with probability p (p = 0, 0.1, ..., 1): timing of the whole run.
#     Model: the project's mixclip-flickr8k when bundled, else a tiny random CLIP made here
#     (then the numbers are timing-only).
# Both runs start from an empty embedding cache (cold: every text and screenshot is encoded),
# at low priority and with THREADS torch threads (default 1: another job may share the CPUs).
#
#   benchmarks/bench_scifact_anchor.sh [SCIFACT_DIR]
#   PARTS=screenshot benchmarks/bench_scifact_anchor.sh     # one part only (anchor, screenshot)
set -euo pipefail
cd "$(dirname "$0")/.."
SCIFACT="${1:-../shared/data/scifact}"
PY="${PY:-.venv/bin/python}"
THREADS="${THREADS:-1}"
PARTS="${PARTS:-anchor screenshot}"
OUT=benchmarks/results
CACHE="$(mktemp -d /tmp/mixsearch-bench-cache.XXXXXX)"
trap 'rm -rf "$CACHE"' EXIT
NPROC_ALL="$(env -u OMP_NUM_THREADS nproc)"
export OMP_NUM_THREADS="$THREADS" MKL_NUM_THREADS="$THREADS" TOKENIZERS_PARALLELISM=false HF_HUB_OFFLINE=1
mkdir -p "$OUT"

{
  echo "--- run of parts: $PARTS"
  echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo "nproc: $NPROC_ALL (all CPUs; the runs use $THREADS torch thread(s))"
  echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //')"
  echo "ram: $(awk '/MemTotal/ {printf "%.1f GiB", $2/1048576}' /proc/meminfo)"
  echo "torch threads: $THREADS (OMP_NUM_THREADS), nice 10"
  echo "load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
  echo "git: $(git rev-parse --short HEAD 2>/dev/null || echo '?')"
} >> "$OUT/scifact_machine.txt"
tail -n 7 "$OUT/scifact_machine.txt"

run() {  # name, then the bench arguments
  local name="$1"; shift
  local start end
  start=$(date +%s.%N)
  nice -n 10 "$PY" -m mixsearch bench "$@" --cache-dir "$CACHE" --out "$OUT/$name" > "$OUT/$name.log" 2>&1
  end=$(date +%s.%N)
  tr '\r' '\n' < "$OUT/$name.log" | grep -v -E '(item|it)/s\]$' > "$OUT/$name.log.tmp" || true  # drop progress bars
  mv "$OUT/$name.log.tmp" "$OUT/$name.log"
  python3 -c "print(f'$name: {$end - $start:.1f} s wall (cold cache; $(date -u +%Y-%m-%dT%H:%MZ))')" | tee -a "$OUT/scifact_times.txt"
}

# 1. the MTEB anchor (text only); GR means: train-split queries + corpus texts (no test labels)
[[ " $PARTS " == *" anchor "* ]] && run scifact_minilm "$SCIFACT" --kind beir --model all-MiniLM-L6-v2 --settings 3 --calibrate-on split:train

# 2. setting 1 with screenshots
[[ " $PARTS " == *" screenshot "* ]] || exit 0
MODEL=mixclip-flickr8k
if [ ! -f src/mixsearch/models/mixclip-flickr8k/config.json ]; then
  MODEL="$CACHE/tiny-random-clip"
  "$PY" -c "import sys; sys.path.insert(0, 'tests'); from conftest import make_tiny_clip; from pathlib import Path; make_tiny_clip(Path('$MODEL'))" >/dev/null 2>&1
  echo "screenshot run model: tiny random CLIP (numbers are timing-only)" | tee -a "$OUT/scifact_times.txt"
else
  echo "screenshot run model: mixclip-flickr8k" | tee -a "$OUT/scifact_times.txt"
fi
run scifact_screenshot_setting1 "$SCIFACT" --kind beir --model "$MODEL" --settings 1 --replace screenshot \
    --calibrate-on split:train
