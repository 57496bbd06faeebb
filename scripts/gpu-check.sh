#!/usr/bin/env bash
# One command for a machine with an NVIDIA GPU: run the GPU tests and benches and print a
# summary table (write the numbers, device named, into docs/PERFORMANCE.md).
#
#   scripts/gpu-check.sh            build here (needs cargo), then run the checks
#   scripts/gpu-check.sh --build    only build: release binary and test executables into
#                                   target/gpu-check/ (carry that folder to a GPU machine that
#                                   has no Rust toolchain)
#   scripts/gpu-check.sh --run      only run, from target/gpu-check/ (no cargo needed)
#
# What runs: the CUDA kernel tests (NVRTC for the device's toolkit, host emulation, the driver
# probe naming the device), the WGSL kernel and placement tests on the GPU's Vulkan driver
# (SLUICE_REQUIRE_WGPU: a missing adapter fails), and `sluice bench` per workload on the CPU and
# with `--backend wgpu --verify` and `--backend cuda --verify` (steady img/s, max error in u8
# steps; the report's placement line says if a backend fell back to the CPU); the device-batch
# tests (SLUICE_REQUIRE_CUDA: a missing device fails); and the overlap measurement,
# `--backend cuda --train-step-ms T` (step time fed by sluice / on pre-made device data, H2D
# GB/s achieved vs a plain pinned copy, kernel ms per batch); and the Python package's device
# batches (python/tests/test_cuda.py: CUDA DLPack tensors equal the CPU's; torch, if present,
# reads them on its own stream); the speech workloads (asr-val, asr, cedar-asr) on the CPU and
# with their spectral chain on CUDA and wgpu (--verify); and, where python3 has torchaudio,
# asr-val's features against torchaudio's and both pipelines' files/s at 2 threads and all;
# the text workloads (nlp, bert-mlm) on the CPU and on CUDA with device batches (--verify).
# The wgpu tests need a Vulkan loader (libvulkan1) beside the NVIDIA driver's ICD.
set -euo pipefail
cd "$(dirname "$0")/.."
out=target/gpu-check
mode="${1:-all}"

build() {
  cargo build --release
  mkdir -p "$out"
  cp target/release/sluice "$out/"
  # The GPU test executables, named by test file (cargo prints their paths as JSON).
  cargo test --release --no-run --message-format=json 2>/dev/null |
    python3 -c '
import json, shutil, sys
for line in sys.stdin:
    m = json.loads(line)
    gpu_tests = {"cuda_kernels", "cuda_device", "wgpu_kernels", "placement"}
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["target"]["name"] in gpu_tests:
        shutil.copy(m["executable"], "'"$out"'/test-" + m["target"]["name"])
'
  cp -r docs/profiles "$out/" 2>/dev/null || true
  # The Python package, unpacked so the GPU machine needs no pip or network: an abi3 wheel
  # (CPython >= 3.10), stripped, plus the device test that needs only sluice (torch optional).
  python3 -m pip install -q maturin >/dev/null
  rm -rf "$out/py" && mkdir -p "$out/py"
  python3 -m maturin build --release -m python/Cargo.toml -o "$out/py/wheels" --quiet
  python3 -m pip install -q --no-deps --target "$out/py" "$out"/py/wheels/*.whl
  rm -rf "$out/py/wheels"
  cp python/tests/test_cuda.py "$out/py/"
  mkdir -p "$out/peers" && cp benches/peers/asr_torchaudio.py "$out/peers/"
  # Debug info makes the folder ~700 MB; stripped it is ~40 MB, small enough to carry.
  if command -v strip >/dev/null; then
    strip "$out"/sluice "$out"/test-* 2>/dev/null || true
  fi
  echo "built into $out/ ($(du -sh "$out" | cut -f1))"
}

run() {
  cd "$out"
  export SLUICE_REQUIRE_WGPU=1
  export XDG_RUNTIME_DIR="${XDG_RUNTIME_DIR:-$(mktemp -d)}"
  # NVRTC (12 or 13) from the CUDA toolkit or a pip wheel, if not on the library path already;
  # sluice picks the newest major the driver supports.
  for lib in $(find /usr/local/cuda*/ /opt -name 'libnvrtc.so.1[23]' 2>/dev/null); do
    d=$(dirname "$lib")
    case ":${LD_LIBRARY_PATH:-}:" in *":$d:"*) ;; *) export LD_LIBRARY_PATH="$d${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" ;; esac
  done
  export SLUICE_REQUIRE_NVRTC=1 SLUICE_REQUIRE_CUDA=1 SLUICE_REQUIRE_CXX=1
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || true
  echo "LD_LIBRARY_PATH=${LD_LIBRARY_PATH:-}"
  results=()
  # Each row is printed as it finishes (and again in the table at the end), so a run stopped
  # at its time limit still shows what passed.
  row() {
    results+=("$1|$2|$3")
    printf '%-40s %-6s %s\n' "$1" "$2" "$3"
  }
  # Every check runs under a time limit: a hang shows as FAIL (exit 124), not as a lost run.
  for t in test-cuda_kernels test-cuda_device test-wgpu_kernels test-placement; do
    if timeout 150 ./"$t" --nocapture > "$t.log" 2>&1; then status=pass; else status="FAIL($?)"; fi
    row "$t" "$status" "$(grep -m1 -E 'CUDA device|wgpu adapter' "$t.log" || grep -m1 'test result' "$t.log" || echo -)"
  done
  # Python: CUDA DLPack tensors equal the CPU's; torch reads them on its stream (if installed).
  ./sluice gen-data py-data --n 256 > /dev/null 2>&1 || true
  if PYTHONPATH="$PWD/py" timeout 120 python3 py/test_cuda.py py-data > py-cuda.log 2>&1; then
    status=pass
  else
    status="FAIL($?)"
  fi
  row "python device batches" "$status" "$(tail -n 1 py-cuda.log)"
  for w in rn50-train rn50-val simclr; do
    for backend in cpu wgpu cuda; do
      extra=""
      [ "$backend" != cpu ] && extra="--verify"
      if timeout 120 ./sluice bench "$w" --threads "$(nproc)" --batch 256 --images 2048 --epochs 2 \
           --backend "$backend" $extra --json > "bench-$w-$backend.json" 2> "bench-$w-$backend.log"; then
        rate=$(python3 -c "import json;d=json.load(open('bench-$w-$backend.json'));print(round(d['steady_images_per_second'],1), 'img/s', (d.get('verify') or {}).get('max_error_steps', ''), '--', d['placement'][:60])")
        row "bench $w --backend $backend" pass "$rate"
      else
        row "bench $w --backend $backend" "FAIL($?)" "see bench-$w-$backend.log"
      fi
    done
  done
  # Overlap: a training step of T ms on the loop's stream, fed by device batches.
  for w in rn50-train simclr; do
    for t in 20 60; do
      name="overlap-$w-$t"
      if timeout 120 ./sluice bench "$w" --threads "$(nproc)" --batch 256 --images 4096 --epochs 2 \
           --backend cuda --train-step-ms "$t" --json > "$name.json" 2> "$name.log"; then
        detail=$(python3 -c "
import json; d = json.load(open('$name.json')); f = d.get('device_feed')
print('no device batches: ' + d['placement'][:60] if not f else
      f\"step {f['fed_step_ms']:.2f}/{f['premade_step_ms']:.2f} ms = {f['step_ratio']:.3f}, \"
      f\"H2D {f['h2d_gbps']:.1f}/{f['raw_pinned_gbps']:.1f} GB/s, kernels {f['kernel_ms_per_batch']:.2f} ms, \"
      f\"{d['steady_images_per_second']:.0f} img/s\")")
        row "bench $w cuda --train-step-ms $t" pass "$detail"
      else
        row "bench $w cuda --train-step-ms $t" "FAIL($?)" "see $name.log"
      fi
    done
  done
  speech
  text
  printf '\n%-40s %-6s %s\n' check status detail
  for r in "${results[@]}"; do
    IFS='|' read -r a b c <<< "$r"
    printf '%-40s %-6s %s\n' "$a" "$b" "$c"
  done
}

# The speech front end against torchaudio (when the machine's python3 has it): sluice's asr-val
# features equal torchaudio's on one batch, and both run on all cores, side by side.
speech() {
  ./sluice gen-data audio-data --kind audio --n 512 > /dev/null 2>&1 || true
  # The spectral chain on the GPU, checked against the CPU run batch by batch.
  for w in asr-val asr cedar-asr; do
    for backend in cpu cuda wgpu; do
      extra=""
      [ "$backend" != cpu ] && extra="--verify"
      name="speech-$w-$backend"
      if timeout 150 ./sluice bench "$w" --data audio-data --batch 64 --epochs 2 --threads "$(nproc)" \
           --backend "$backend" $extra --json > "$name.json" 2> "$name.log"; then
        row "bench $w --backend $backend" pass "$(python3 -c "import json;d=json.load(open('$name.json'));g=[s for s in d['stages'] if ':' in s['name']];print(round(d['steady_images_per_second'],1), 'files/s', (d.get('verify') or {}).get('max_error_steps', ''), '--', (str(round(g[0]['us_per_call']/1e3, 2)) + ' ms/batch on the GPU') if g else d['placement'][:60])")"
      else
        row "bench $w --backend $backend" "FAIL($?)" "see $name.log"
      fi
    done
  done
  if ! python3 -c 'import torchaudio, scipy' 2> /dev/null; then
    row "speech vs torchaudio" skip "python3 has no torchaudio/scipy"
    return
  fi
  if timeout 120 ./sluice bench asr-val --data audio-data --batch 32 --epochs 1 --threads "$(nproc)" \
       --dump asr-dump > /dev/null 2> asr-dump.log &&
     timeout 120 python3 peers/asr_torchaudio.py compare asr-dump > asr-compare.json 2>> asr-dump.log; then
    status=pass
  else
    status="FAIL($?)"
  fi
  row "asr-val features = torchaudio's" "$status" "$(tail -n 1 asr-compare.json 2>/dev/null)"
  # At 2 threads/workers (the issue's target: >= 4x torchaudio) and on all cores.
  for threads in 2 "$(nproc)"; do
    if timeout 120 ./sluice bench asr-val --data audio-data --batch 32 --epochs 3 --threads "$threads" \
         --json > "asr-sluice-$threads.json" 2> "asr-sluice-$threads.log"; then
      row "asr-val sluice, $threads threads" pass "$(python3 -c "import json;d=json.load(open('asr-sluice-$threads.json'));print(round(d['steady_images_per_second'],1), 'files/s steady')")"
    else
      row "asr-val sluice, $threads threads" "FAIL($?)" "see asr-sluice-$threads.log"
    fi
    if timeout 180 python3 peers/asr_torchaudio.py bench audio-data --workers "$threads" --batch 32 \
         --epochs 2 > "asr-torchaudio-$threads.json" 2> "asr-torchaudio-$threads.log"; then
      row "asr-val torchaudio, $threads workers" pass "$(tail -n 1 "asr-torchaudio-$threads.json")"
    else
      row "asr-val torchaudio, $threads workers" "FAIL($?)" "see asr-torchaudio-$threads.log"
    fi
  done
}

# The text workloads with their token kernels on CUDA (device batches: ids, labels and
# embeddings stay on the device; --verify copies them back and compares them with the CPU's),
# and the optimizer's plan for nlp when its batches stay on the device.
text() {
  ./sluice gen-data text-data --kind text --n 4096 > /dev/null 2>&1 || true
  for w in nlp bert-mlm; do
    for backend in cpu cuda; do
      extra=""
      [ "$backend" != cpu ] && extra="--verify"
      name="text-$w-$backend"
      if timeout 150 ./sluice bench "$w" --data text-data/corpus.txt --batch 64 --epochs 2 \
           --threads "$(nproc)" --backend "$backend" $extra --json > "$name.json" 2> "$name.log"; then
        row "bench $w --backend $backend" pass "$(python3 -c "import json;d=json.load(open('$name.json'));print(round(d['steady_images_per_second'],1), 'samples/s', (d.get('verify') or {}).get('max_error_steps', ''), '--', d['placement'][:70])")"
      else
        row "bench $w --backend $backend" "FAIL($?)" "see $name.log"
      fi
    done
  done
  if timeout 150 ./sluice explain nlp --data text-data/corpus.txt --device-batches > explain-nlp.txt 2>&1; then
    row "explain nlp --device-batches" pass "$(grep -m1 -i 'GPU from' explain-nlp.txt || echo 'no GPU cut')"
  else
    row "explain nlp --device-batches" "FAIL($?)" "see explain-nlp.txt"
  fi
}

case "$mode" in
  --build) build ;;
  --run) run ;;
  *) build; run ;;
esac
