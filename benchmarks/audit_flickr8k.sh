#!/usr/bin/env bash
# `mixsearch audit` on real data: Flickr8k dev (1,000 photos) as a 1:1:1 mixed corpus (text /
# image / image+text, the benchmark's own rule: bench.load_captions + bench.mixed_corpus, seed 0),
# indexed with the bundled mixclip-flickr8k twice — plain (--calibration none) and calibrated with
# the means shipped beside the model (fitted on Flickr8k train) — and each index audited with the
# defaults (200 probes drawn from the corpus's texts, top-10, up to 5,000 parts per modality); the
# plain index once more with real query captions as probes (each photo's held-out caption, 200 of them).
# Writes benchmarks/results/audit_flickr8k_mixclip/{plain,calibrated,plain_caption_probes}/audit.{html,json,txt},
# commands.txt and machine.txt. The indexes live in a temporary folder, removed at the end.
#
#   benchmarks/audit_flickr8k.sh [FLICKR8K_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$PWD"
FLICKR="$(realpath "${1:-../shared/data/flickr8k}")"
PY="${PY:-.venv/bin/python}"
PY="$(cd "$(dirname "$PY")" && pwd)/$(basename "$PY")"  # absolute, the venv link kept
OUT="$ROOT/benchmarks/results/audit_flickr8k_mixclip"
WORK="$(mktemp -d /tmp/mixsearch-audit.XXXXXX)"
trap 'rm -rf "$WORK"' EXIT
export TOKENIZERS_PARALLELISM=false HF_HUB_OFFLINE=1
mkdir -p "$OUT/plain" "$OUT/calibrated" "$OUT/plain_caption_probes"
{
  echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo "nproc: $(nproc)"
  echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //')"
  echo "ram: $(awk '/MemTotal/ {printf "%.1f GiB", $2/1048576}' /proc/meminfo)"
  echo "gpu: none (torch $("$PY" -c 'import torch; print(torch.__version__)'), CPU)"
  echo "load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
  echo "git: $(git rev-parse --short HEAD 2>/dev/null || echo '?')"
} > "$OUT/machine.txt"

"$PY" - "$FLICKR" "$WORK/corpus.jsonl" "$WORK/captions.txt" <<'PYEOF'
import json, sys
from mixsearch.bench import load_captions, mixed_corpus
bench = load_captions(sys.argv[1], split="dev.jsonl")
docs, rule = mixed_corpus(bench, 0)
with open(sys.argv[3], "w", encoding="utf-8") as f:  # the held-out caption of each photo: real queries
    f.writelines(q.text.replace("\n", " ") + "\n" for q in bench.queries)
with open(sys.argv[2], "w", encoding="utf-8") as f:
    for d in docs:
        record = {"id": d.id, "text": d.text, "image": str(d.image) if d.image else None}
        f.write(json.dumps({k: v for k, v in record.items() if v is not None}) + "\n")
print(f"{len(docs)} documents: {rule}")
PYEOF

CAL="$ROOT/src/mixsearch/models/mixclip-flickr8k.calibration.safetensors"
cd "$WORK"
commands=(
  "mixsearch index corpus.jsonl --model mixclip-flickr8k --calibration none --out plain"
  "mixsearch index corpus.jsonl --model mixclip-flickr8k --calibration $CAL --out calibrated"
  "mixsearch audit plain --html $OUT/plain/audit.html --json $OUT/plain/audit.json"
  "mixsearch audit calibrated --html $OUT/calibrated/audit.html --json $OUT/calibrated/audit.json"
  "mixsearch audit plain --probes captions.txt --html $OUT/plain_caption_probes/audit.html --json $OUT/plain_caption_probes/audit.json"
)
: > "$OUT/commands.txt"
for c in "${commands[@]}"; do
  start=$(date +%s.%N)
  name="$(echo "$c" | awk '{print $2"-"$3}')$(echo "$c" | grep -q -- --probes && echo -probes || true)"
  # shellcheck disable=SC2086
  "$PY" -m mixsearch ${c#mixsearch } > "$WORK/$name.out" 2> "$WORK/$name.err"
  end=$(date +%s.%N)
  echo "$c  # $(python3 -c "print(f'{$end - $start:.1f}')") s" | sed "s#$ROOT/##g" | tee -a "$OUT/commands.txt"
done
cp "$WORK/audit-plain.out" "$OUT/plain/audit.txt"
cp "$WORK/audit-calibrated.out" "$OUT/calibrated/audit.txt"
cp "$WORK/audit-plain-probes.out" "$OUT/plain_caption_probes/audit.txt"
cat "$OUT/plain/audit.txt" "$OUT/calibrated/audit.txt" "$OUT/plain_caption_probes/audit.txt"
