#!/usr/bin/env bash
# Side-by-side throughput of the built-in workloads on the generated default dataset, run in
# rounds (interleaved, so machine noise hits every workload alike), with each workload's median
# images/s and its ratio to decode-only (a whole-image libjpeg-turbo decode of every file).
# `rn50-train:whole` is rn50-train with --no-fuse: every image decoded whole (no crop-aware decode);
# `NAME:approx` runs with --allow-approx (JPEGs whose crop shrinks them >= 2x decoded at 1/2-1/8
# scale). ROWS="decode-only rn50-val ..." picks the rows (decode-only first: the ratios' base).
# Usage: scripts/bench-bar.sh [THREADS] [ROUNDS] [EPOCHS]; DATA=DIR benchmarks another dataset
# (e.g. `sluice gen-data DIR --n 128 --long-side 3000`; then pass fewer EPOCHS).
set -euo pipefail
cd "$(dirname "$0")/.."
threads=${1:-2}
rounds=${2:-3}
epochs=${3:-3}
cargo build --release --quiet
bin=target/release/sluice
out=$(mktemp -d)
data=()
if [ -n "${DATA:-}" ]; then data=(--data "$DATA"); fi
rows=${ROWS:-"decode-only rn50-train rn50-train:whole rn50-train:approx rn50-val rn50-val:approx simclr"}
for r in $(seq "$rounds"); do
  for row in $rows; do
    w=${row%%:*}
    case "$row" in
      *:whole) flags=(--no-fuse) ;;
      *:approx) flags=(--allow-approx) ;;
      *) flags=() ;;
    esac
    "$bin" bench "$w" --threads "$threads" --epochs "$epochs" "${data[@]}" "${flags[@]}" --json \
      > "$out/$row.$r.json"
  done
done
python3 - "$out" "$rounds" $rows <<'PY'
import json, statistics, sys
out, rounds = sys.argv[1], int(sys.argv[2])
rows = {}
for w in sys.argv[3:]:
    runs = [json.load(open(f"{out}/{w}.{r}.json")) for r in range(1, rounds + 1)]
    rows[w] = runs
base = statistics.median(r["images_per_second"] for r in next(iter(rows.values())))
print(f"{'workload':<17} {'images/s (median)':>18} {'vs ' + next(iter(rows)):>15} {'CPU ms/img':>11} {'p50 ms':>8} {'p99 ms':>8} {'RSS MiB':>8}  checksum")
for w, runs in rows.items():
    ips = statistics.median(r["images_per_second"] for r in runs)
    mid = sorted(runs, key=lambda r: r["images_per_second"])[len(runs) // 2]
    sums = {r["checksum"] for r in runs}
    print(f"{w:<17} {ips:>18.1f} {ips / base:>14.2f}x {mid['cpu_seconds_per_image']*1e3:>11.3f} "
          f"{mid['batch_latency_p50_ms']:>8.1f} {mid['batch_latency_p99_ms']:>8.1f} {mid['peak_rss_mib']:>8.1f}  "
          f"{'/'.join(sorted(sums))}")
PY
