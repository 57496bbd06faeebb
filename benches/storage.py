"""rn50-train from shards on a local S3 server (moto) vs the same shards as local files, side
by side (alternating runs), with `sluice bench --json`: images/s, peak RSS, checksums.

    pip install "moto[server]" boto3
    cargo build --release
    python benches/storage.py [--images 2048] [--threads 2] [--rounds 3] [--shard-size 8MiB]

Starts moto_server on 127.0.0.1, writes the generated dataset as shards (`sluice shard`),
uploads them, indexes them on S3 (`sluice index`), then runs both sources `--rounds` times.
"""

import argparse
import json
import os
import pathlib
import socket
import statistics
import subprocess
import sys
import tempfile
import time

REPO = pathlib.Path(__file__).resolve().parents[1]
SLUICE = os.environ.get("SLUICE_BIN", str(REPO / "target" / "release" / "sluice"))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def bench(data, args, env):
    out = subprocess.run(
        [SLUICE, "bench", "rn50-train", "--data", data, "--threads", str(args.threads),
         "--epochs", str(args.epochs), "--shard-window", str(args.window), "--json"],
        check=True, capture_output=True, text=True, env=env,
    )
    return json.loads(out.stdout)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--images", type=int, default=2048)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--window", type=int, default=4)
    p.add_argument("--shard-size", default="8MiB")
    args = p.parse_args()

    import boto3

    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    server = subprocess.Popen(
        [os.environ.get("SLUICE_MOTO_SERVER", "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        for _ in range(300):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.1)
        env = dict(os.environ, AWS_ENDPOINT_URL=endpoint, AWS_ACCESS_KEY_ID="testing",
                   AWS_SECRET_ACCESS_KEY="testing", AWS_REGION="us-east-1", AWS_ALLOW_HTTP="true")
        with tempfile.TemporaryDirectory() as tmp:
            tmp = pathlib.Path(tmp)
            subprocess.run([SLUICE, "gen-data", str(tmp / "folder"), "--n", str(args.images)],
                           check=True, capture_output=True)
            subprocess.run([SLUICE, "shard", str(tmp / "folder"), str(tmp / "shards"),
                            "--shard-size", args.shard_size], check=True, capture_output=True)
            s3 = boto3.client("s3", endpoint_url=endpoint, aws_access_key_id="testing",
                              aws_secret_access_key="testing", region_name="us-east-1")
            s3.create_bucket(Bucket="bench")
            shards = sorted((tmp / "shards").glob("*.tar"))
            for f in shards:
                s3.upload_file(str(f), "bench", f"train/{f.name}")
            pattern = f"s3://bench/train/shard-{{000000..{len(shards) - 1:06d}}}.tar"
            subprocess.run([SLUICE, "index", pattern], check=True, capture_output=True, env=env)
            local, remote = str(tmp / "shards"), "s3://bench/train/sluice-index.json"
            rows = {"local": [], "s3": []}
            for _ in range(args.rounds):
                for name, data in (("local", local), ("s3", remote)):
                    rows[name].append(bench(data, args, env))
            total = sum(f.stat().st_size for f in shards)
            print(f"{args.images} images in {len(shards)} shards ({total / 2**20:.1f} MiB), "
                  f"{args.threads} threads, {args.epochs} epochs, shard window {args.window}, "
                  f"{args.rounds} alternating rounds")
            med = {}
            for name, runs in rows.items():
                rates = [r["images_per_second"] for r in runs]
                rss = [r["peak_rss_mib"] for r in runs]
                med[name] = statistics.median(rates)
                sums = {r["checksum"] for r in runs}
                print(f"{name:>5}: images/s {' '.join(f'{x:.0f}' for x in rates)} "
                      f"(median {med[name]:.0f}); peak RSS MiB {max(rss):.0f}; checksum {sums}")
            print(f"s3 / local: {med['s3'] / med['local']:.3f}")
            if {r["checksum"] for r in rows["s3"]} != {r["checksum"] for r in rows["local"]}:
                sys.exit("checksums differ")
    finally:
        server.kill()


if __name__ == "__main__":
    main()
