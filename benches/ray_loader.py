"""simclr through sluice.ray with 1, 2 and 4 Ray workers vs the local pipeline at the same
total CPU count, side by side (alternating rounds): images/s, the Ray/local ratio, the bytes
each batch moves through Ray's object store, and a checksum check (the batches must be equal).

    pip install ./python "ray>=2.9" numpy
    python benches/ray_loader.py [--images 1024] [--cpus 2] [--batch 64] [--epochs 2] [--rounds 2]

With W workers each worker runs max(1, cpus / W) threads and reserves cpus / W Ray CPUs; the
local pipeline runs as many threads in total (W x that), so both sides have the same cores and
the same threads and the ratio is Ray's own overhead. One warm-up epoch on each side (page
cache, actor start-up) is not timed.
"""

import argparse
import hashlib
import statistics
import time

import numpy as np
import ray

import sluice
import sluice.ray


def pipeline(data, args, threads):
    return sluice.workload("simclr", data, batch_size=args.batch, threads=threads, seed=1)


def as_array(value):
    """A local batch's tensor (DLPack) or a Ray batch's numpy array, as numpy."""
    return value if isinstance(value, np.ndarray) else np.from_dlpack(value)


def run(batches, count):
    """(images/s, digest, bytes per batch) over an iterable of `count` epochs' batches."""
    digest = hashlib.blake2b(digest_size=8)
    images, moved, n = 0, 0, 0
    started = time.perf_counter()
    for batch in batches:
        for key in sorted(batch.keys()):
            value = batch[key]
            if key == "text":
                continue
            array = as_array(value)
            digest.update(array.tobytes())
            moved += array.nbytes
        images += as_array(batch["indices"]).shape[0]
        n += 1
    elapsed = time.perf_counter() - started
    return images / elapsed, digest.hexdigest(), moved / max(n, 1)


def epochs(source, first, count):
    for e in range(first, first + count):
        yield from source.epoch(e)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=1024)
    ap.add_argument("--cpus", type=int, default=2)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--workers", default="1,2,4")
    args = ap.parse_args()
    data = str(sluice.generated_dataset(images=args.images))
    ray.init(num_cpus=args.cpus, include_dashboard=False, log_to_driver=False)
    rows = []
    for workers in [int(w) for w in args.workers.split(",")]:
        threads = max(1, args.cpus // workers)
        local = pipeline(data, args, threads * workers)
        run(epochs(local, 0, 1), 1)  # warm-up
        loader = sluice.ray.Loader(
            pipeline(data, args, threads),
            num_workers=workers,
            num_cpus_per_worker=args.cpus / workers,
        )
        run(epochs(loader, 0, 1), 1)  # warm-up: actors start, caches fill
        local_rates, ray_rates = [], []
        for r in range(args.rounds):
            first = 1 + r * args.epochs
            rate_l, digest_l, _ = run(epochs(local, first, args.epochs), args.epochs)
            rate_r, digest_r, moved = run(epochs(loader, first, args.epochs), args.epochs)
            assert digest_l == digest_r, f"{workers} workers: batches differ from the local run"
            local_rates.append(rate_l)
            ray_rates.append(rate_r)
        loader.shutdown()
        ratio = statistics.median(ray_rates) / statistics.median(local_rates)
        rows.append((workers, threads, local_rates, ray_rates, ratio, moved, digest_l))
        print(
            f"{workers} workers x {threads} threads: local {[round(x) for x in local_rates]} "
            f"ray {[round(x) for x in ray_rates]} images/s, ray/local {ratio:.3f}, "
            f"{moved / 2**20:.2f} MiB per batch, checksums equal ({digest_l})",
            flush=True,
        )
    print("\n| workers × threads | local images/s | Ray images/s | Ray / local | MiB per batch |")
    print("|---|---|---|---|---|")
    for workers, threads, lr, rr, ratio, moved, _ in rows:
        print(
            f"| {workers} × {threads} | {' '.join(str(round(x)) for x in lr)} | "
            f"{' '.join(str(round(x)) for x in rr)} | **{ratio:.3f}** | {moved / 2**20:.2f} |"
        )
    ray.shutdown()


if __name__ == "__main__":
    main()
