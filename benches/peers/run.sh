#!/usr/bin/env bash
# Side-by-side: sluice against PyTorch DataLoader + torchvision, tf.data (AUTOTUNE) and NVIDIA
# DALI's CPU pipeline, on the same generated files, the same pipeline definitions (README.md
# here), the same batch size and worker count. Each runs one warm-up epoch, then EPOCHS timed
# epochs; sluice's number is its steady-state rate (after its first epoch).
# Usage: benches/peers/run.sh [THREADS] [EPOCHS] [BATCH]      (installs peers into ./.venv)
set -euo pipefail
cd "$(dirname "$0")/../.."
threads=${1:-2}
epochs=${2:-2}
batch=${3:-64}
venv=.venv
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
for pkg in "torch torchvision pillow" tensorflow-cpu nvidia-dali-cuda120; do
  # shellcheck disable=SC2086
  "$venv/bin/pip" install -q $pkg || echo "note: could not install $pkg; its rows will say skipped"
done
cargo build --release --quiet
"$venv/bin/pip" install -q ./python || echo "note: could not install the sluice Python package"
sluice=target/release/sluice
data=target/sluice-data/gen-n1024-s0
[ -f "$data/.complete" ] || "$sluice" bench decode-only --epochs 1 --json > /dev/null
out=$(mktemp)
for w in rn50-train rn50-val simclr; do
  echo "running $w ..." >&2
  "$sluice" bench "$w" --data "$data" --threads "$threads" --batch "$batch" \
    --epochs $((epochs + 1)) --json |
    python3 -c 'import json,sys; d=json.load(sys.stdin); print(json.dumps({"peer":"sluice","workload":d["workload"],"images_per_second":d["steady_images_per_second"]}))' >> "$out"
  for peer in sluice-py torch tf dali; do
    "$venv/bin/python" benches/peers/peers.py "$peer" "$w" "$data" --threads "$threads" \
      --batch "$batch" --epochs "$epochs" 2>/dev/null | tail -n 1 >> "$out" ||
      echo "{\"peer\":\"$peer\",\"workload\":\"$w\",\"skipped\":\"crashed\"}" >> "$out"
  done
done
"$venv/bin/python" - "$out" "$threads" "$batch" "$epochs" <<'PY'
import json, sys, importlib.metadata as md
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
threads, batch, epochs = sys.argv[2:5]
def version(p):
    try:
        return md.version(p)
    except md.PackageNotFoundError:
        return "not installed"
print(f"threads {threads}, batch {batch}, {epochs} timed epochs after 1 warm-up; "
      f"torch {version('torch')}, torchvision {version('torchvision')}, "
      f"tensorflow-cpu {version('tensorflow-cpu')}, DALI {version('nvidia-dali-cuda120')}")
peers = ["sluice", "sluice-py", "torch", "tf", "dali"]
print("| workload | " + " | ".join(peers) + " |")
print("|---|" + "---:|" * len(peers))
for w in ["rn50-train", "rn50-val", "simclr"]:
    got = {r["peer"]: r for r in rows if r["workload"] == w}
    base = got.get("sluice", {}).get("images_per_second")
    cells = []
    for p in peers:
        r = got.get(p, {})
        if "images_per_second" in r:
            ips = r["images_per_second"]
            ratio = "" if p.startswith("sluice") or not base else f" (sluice {base / ips:.2f}×)"
            cells.append(f"{ips:.0f}{ratio}")
        else:
            cells.append("skipped: " + r.get("skipped", "no result"))
    print(f"| {w} | " + " | ".join(cells) + " |")
PY
