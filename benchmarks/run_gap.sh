#!/usr/bin/env bash
# The paper's findings with mixclip-gap, the bundled model with CLIP's modality gap: `mixsearch bench`
# with settings 1-3 and every calibration method, written to benchmarks/results/<name>/ with the
# command, the time it took and the machine (machine.txt):
#  - flickr8k: Flickr8k dev (captions), settings 1-3, means from 6,000 train.jsonl items per role
#    (this run's mean calibration is the file shipped as models/mixclip-gap.calibration.safetensors);
#  - scifact_screenshot: SciFact test, setting 1 with rendered screenshots (image means from screenshots).
# Paired-bootstrap intervals: python benchmarks/methods_paired.py benchmarks/results/<name>/results.json
#
#   benchmarks/run_gap.sh [PARTS...]     # parts: flickr8k scifact_screenshot
set -euo pipefail
cd "$(dirname "$0")/.."
DATA="${DATA:-../shared/data}"
PY="${PY:-/work/main/.venv/bin/python}"
METHODS=none,mean,standardize,shift,zscore,rrf
export PYTHONPATH=src TOKENIZERS_PARALLELISM=false HF_HUB_OFFLINE=1
PARTS="${*:-flickr8k scifact_screenshot}"

run() {  # run NAME ARGS... : one bench into benchmarks/results/NAME, timed, with the machine
  local name="$1"; shift
  local out="benchmarks/results/$name"
  mkdir -p "$out"
  {
    echo "command: mixsearch bench $* --methods $METHODS --out $out"
    echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo "git: $(git rev-parse --short HEAD)"
    echo "cpu: $(lscpu | sed -n 's/^Model name: *//p'), nproc $(nproc), ram $(free -g | awk '/Mem:/{print $2}') GiB, no GPU"
    echo "load average at start: $(cut -d' ' -f1-3 /proc/loadavg) (the 2 cores are shared with other jobs)"
  } > "$out/machine.txt"
  local start=$SECONDS
  nice -n 5 "$PY" -m mixsearch bench "$@" --methods "$METHODS" --out "$out" > "/tmp/$name.log" 2>&1 || echo "FAILED (rc $?): see /tmp/$name.log" >> "$out/machine.txt"
  echo "wall time: $((SECONDS - start)) s" >> "$out/machine.txt"
  echo "load average at end: $(cut -d' ' -f1-3 /proc/loadavg)" >> "$out/machine.txt"
}

for part in $PARTS; do
  case "$part" in
    flickr8k) run methods_flickr8k_mixclip-gap "$DATA/flickr8k" --kind captions --model mixclip-gap \
        --settings 1,2,3 --calibrate-on auto --max-calibration 6000 ;;
    scifact_screenshot) run methods_scifact_screenshot_mixclip-gap "$DATA/scifact" --kind beir --model mixclip-gap \
        --settings 1 --replace screenshot --calibrate-on split:train --max-calibration 2000 ;;
    *) echo "unknown part $part" >&2; exit 2 ;;
  esac
done
