#!/usr/bin/env bash
# Every calibration method (none, mean, standardize, shift, zscore, rrf) through `mixsearch bench
# --methods`, written to benchmarks/results/methods_<dataset>_<model>/ with the command, the time
# it took and the machine (machine.txt):
#  - flickr8k dev (captions), settings 1-3, the bundled mixclip-flickr8k (means from train.jsonl);
#  - SciFact test (BEIR), setting 3 (text only), all-MiniLM-L6-v2 and mixclip-flickr8k (means from
#    the train split's queries and the corpus texts);
#  - SciFact setting 1 with screenshots, mixclip-flickr8k (image means from screenshots);
#  - gap_flickr8k, gap_scifact_screenshot: the same two with mixclip-gap, the bundled model with CLIP's
#    modality gap (the paper's findings; its flickr8k mean calibration is the file shipped as
#    models/mixclip-gap.calibration.safetensors).
# Paired-bootstrap intervals: python benchmarks/methods_paired.py benchmarks/results/<name>/results.json
# all-MiniLM-L6-v2 is a text model: the flickr8k settings (images) do not apply to it.
#
#   benchmarks/run_methods.sh [PARTS...]     # parts: flickr8k scifact_minilm scifact_mixclip scifact_screenshot
#                                            #        gap_flickr8k gap_scifact_screenshot
set -euo pipefail
cd "$(dirname "$0")/.."
DATA="${DATA:-../shared/data}"
PY="${PY:-.venv/bin/python}"
METHODS=none,mean,standardize,shift,zscore,rrf
export PYTHONPATH=src TOKENIZERS_PARALLELISM=false HF_HUB_OFFLINE=1
PARTS="${*:-flickr8k scifact_minilm scifact_mixclip scifact_screenshot}"

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
    flickr8k) run methods_flickr8k_mixclip "$DATA/flickr8k" --kind captions --model mixclip-flickr8k \
        --settings 1,2,3 --calibrate-on auto --max-queries 500 --max-calibration 2000 ;;
    scifact_minilm) run methods_scifact_minilm "$DATA/scifact" --kind beir --model all-MiniLM-L6-v2 \
        --settings 3 --calibrate-on split:train --max-calibration 2000 ;;
    scifact_mixclip) run methods_scifact_mixclip "$DATA/scifact" --kind beir --model mixclip-flickr8k \
        --settings 3 --calibrate-on split:train --max-calibration 2000 ;;
    scifact_screenshot) run methods_scifact_screenshot_mixclip "$DATA/scifact" --kind beir --model mixclip-flickr8k \
        --settings 1 --replace screenshot --calibrate-on split:train --max-calibration 2000 ;;
    gap_flickr8k) run methods_flickr8k_mixclip-gap "$DATA/flickr8k" --kind captions --model mixclip-gap \
        --settings 1,2,3 --calibrate-on auto --max-calibration 6000 ;;
    gap_scifact_screenshot) run methods_scifact_screenshot_mixclip-gap "$DATA/scifact" --kind beir --model mixclip-gap \
        --settings 1 --replace screenshot --calibrate-on split:train --max-calibration 2000 ;;
    *) echo "unknown part $part" >&2; exit 2 ;;
  esac
done
