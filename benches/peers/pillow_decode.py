"""Decode-only rate of Pillow (libjpeg-turbo, whole-image decode to RGB) on an ImageFolder, with
N worker processes: the plain libjpeg-turbo full-decode-only baseline that issue 15 compares
`sluice bench rn50-train` against on the same files and cores.

    pip install pillow
    python benches/peers/pillow_decode.py [DIR] [--workers 2] [--epochs 3]

DIR defaults to the generated default dataset (target/sluice-data/gen-n1024-s0). Each epoch
decodes every file once (files read from the page cache); the first epoch is a warm-up.
"""

import argparse
import glob
import os
import time
from multiprocessing import Pool

from PIL import Image


def decode(path):
    with Image.open(path) as im:
        im = im.convert("RGB")
        im.load()
        return im.size[0] * im.size[1]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("dir", nargs="?", default="target/sluice-data/gen-n1024-s0")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--epochs", type=int, default=3)
    args = ap.parse_args()
    files = sorted(
        p
        for p in glob.glob(os.path.join(args.dir, "*", "*"))
        if p.lower().endswith((".jpg", ".jpeg", ".png"))
    )
    if not files:
        raise SystemExit(f"no images under {args.dir}")
    with Pool(args.workers) as pool:
        pool.map(decode, files, chunksize=16)  # warm-up
        start = time.perf_counter()
        for _ in range(args.epochs):
            pool.map(decode, files, chunksize=16)
        wall = time.perf_counter() - start
    n = len(files) * args.epochs
    print(f"Pillow decode-only: {n / wall:.1f} images/s ({len(files)} files x {args.epochs} "
          f"epochs, {args.workers} workers)")


if __name__ == "__main__":
    main()
