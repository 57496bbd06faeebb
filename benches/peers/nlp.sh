#!/usr/bin/env bash
# Side by side on the same corpus and cores: `sluice bench nlp` against the PyTorch DataLoader
# + Hugging Face tokenizers pipeline (benches/peers/nlp_torch.py, both recipes), interleaved
# for ROUNDS rounds; prints each run's samples/s and the medians. WORKLOAD=bert-mlm races
# `sluice bench bert-mlm` against transformers' DataCollatorForLanguageModeling
# (benches/peers/mlm_torch.py; python also needs transformers); WORKLOAD=gpt-pack races
# `sluice bench gpt-pack` against the constant-length packing IterableDataset
# (benches/peers/pack_torch.py).
# Usage: benches/peers/nlp.sh [THREADS] [ROUNDS] [BATCH] [CORPUS]   (python needs torch, tokenizers)
set -euo pipefail
cd "$(dirname "$0")/../.."
threads=${1:-2}
rounds=${2:-3}
batch=${3:-64}
corpus=${4:-target/sluice-data/gen-text-n4096-s0/corpus.txt}
python=${PYTHON:-python3}
workload=${WORKLOAD:-nlp}
case "$workload" in
  nlp) peer=benches/peers/nlp_torch.py recipes="batch sample" ;;
  bert-mlm) peer=benches/peers/mlm_torch.py recipes="batch sample" ;;
  gpt-pack) peer=benches/peers/pack_torch.py recipes="batch" ;;
  *) echo "WORKLOAD must be nlp, bert-mlm or gpt-pack" >&2; exit 2 ;;
esac
cargo build --release --quiet
[ -f "$corpus" ] || target/release/sluice gen-data "$(dirname "$corpus")" --kind text --n 4096
out=$(mktemp)
for r in $(seq "$rounds"); do
  target/release/sluice bench "$workload" --data "$corpus" --threads "$threads" --batch "$batch" \
    --epochs 3 --json |
    "$python" -c 'import json,sys; d=json.load(sys.stdin); print(json.dumps({"peer":"sluice","samples_per_second":d["steady_images_per_second"]}))' >> "$out"
  for recipe in $recipes; do
    "$python" "$peer" "$corpus" --workers "$threads" --batch "$batch" \
      --epochs 2 --recipe "$recipe" >> "$out"
  done
done
"$python" - "$out" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
by = {}
for r in rows:
    by.setdefault(r["peer"], []).append(r["samples_per_second"])
base = statistics.median(by["sluice"])
for peer, v in by.items():
    m = statistics.median(v)
    print(f"{peer:14s} median {m:8.1f} samples/s  runs {[round(x) for x in v]}  sluice/peer {base / m:.2f}x")
PY
