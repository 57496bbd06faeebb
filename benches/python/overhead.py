"""The cost of driving sluice from Python: `sluice bench WORKLOAD` (the Rust loop) against the
same pipeline iterated from Python into torch tensors (`torch.from_dlpack`), in one run,
alternating A/B so drift on a noisy machine hits both. Reports steady-state images/s (the first
epoch of each run is warm-up) and the ratio Python / Rust.

usage: python benches/python/overhead.py [--workload rn50-train] [--threads 2] [--batch 64]
                                         [--epochs 3] [--rounds 3] [--images 1024]
"""

import argparse
import json
import pathlib
import statistics
import subprocess
import time

import torch

import sluice

REPO = pathlib.Path(__file__).resolve().parents[2]


def rust_rate(args, data):
    out = subprocess.run(
        [str(REPO / "target" / "release" / "sluice"), "bench", args.workload, "--data", str(data),
         "--threads", str(args.threads), "--batch", str(args.batch),
         "--epochs", str(args.epochs + 1), "--json"],
        check=True, capture_output=True, text=True,
    )
    report = json.loads(out.stdout)
    return report["steady_images_per_second"], report["checksum"]


def python_rate(args, data):
    pipe = sluice.workload(args.workload, data=data, batch_size=args.batch, threads=args.threads)
    checksum = sluice.Checksum()
    images, start = 0, None
    for epoch in range(args.epochs + 1):
        if epoch == 1:
            start = time.perf_counter()  # epoch 0 is warm-up, as in the Rust report
        for batch in pipe.epoch(epoch):
            x = torch.from_dlpack(batch["images"])
            torch.from_dlpack(batch["labels"])
            checksum.update(batch)  # the Rust loop hashes every batch too
            if epoch >= 1:
                images += x.shape[0]
    return images / (time.perf_counter() - start), checksum.hexdigest()


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workload", default="rn50-train")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--images", type=int, default=1024)
    args = ap.parse_args()
    data = sluice.generated_dataset(images=args.images)
    rust, py = [], []
    for r in range(args.rounds):
        rate, rust_sum = rust_rate(args, data)
        rust.append(rate)
        rate, py_sum = python_rate(args, data)
        py.append(rate)
        same = "same checksum" if rust_sum == py_sum else f"CHECKSUMS DIFFER {rust_sum} {py_sum}"
        print(f"round {r + 1}: rust {rust[-1]:.0f} images/s, python {py[-1]:.0f} images/s ({same})")
    r, p = statistics.median(rust), statistics.median(py)
    print(f"{args.workload}, {args.threads} threads, batch {args.batch}: median rust {r:.0f}, "
          f"python {p:.0f} images/s; python/rust = {p / r:.3f}")


if __name__ == "__main__":
    main()
