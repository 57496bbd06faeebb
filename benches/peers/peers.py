"""Peer input pipelines for side-by-side comparison with `sluice bench`.

Each peer builds the same pipeline definitions as sluice's built-in workloads (see README.md in
this folder for the exact correspondence), runs one warm-up epoch, then times EPOCHS epochs and
prints one JSON line: {"peer", "workload", "images", "seconds", "images_per_second"} or, when the
peer cannot run here, {"peer", "workload", "skipped": reason}.

usage: peers.py PEER WORKLOAD DATA_DIR --threads N --batch B --epochs E
"""

import argparse
import glob
import json
import os
import sys
import time

MEAN = [0.485, 0.456, 0.406]
STD = [0.229, 0.224, 0.225]


def timed_epochs(make_epoch, epochs):
    """One warm-up epoch, then `epochs` timed ones; returns (images, seconds)."""
    for _ in make_epoch():
        pass
    images = 0
    start = time.perf_counter()
    for _ in range(epochs):
        for n in make_epoch():
            images += n
    return images, time.perf_counter() - start


def run_torch(workload, root, threads, batch, epochs):
    import torch
    from torch.utils.data import DataLoader
    from torchvision import datasets
    from torchvision import transforms as T

    normalize = [T.ToTensor(), T.Normalize(MEAN, STD)]
    if workload == "rn50-train":
        tf = [T.RandomResizedCrop(224), T.RandomHorizontalFlip()]
    elif workload == "rn50-val":
        tf = [T.Resize(256), T.CenterCrop(224)]
    elif workload == "simclr":
        tf = [
            T.RandomResizedCrop(224),
            T.RandomHorizontalFlip(),
            T.RandomApply([T.ColorJitter(0.4, 0.4, 0.4, 0.1)], p=0.8),
            T.RandomGrayscale(p=0.2),
            T.RandomApply([T.GaussianBlur(23, sigma=(0.1, 2.0))], p=0.5),
        ]
    else:
        raise ValueError(workload)
    dataset = datasets.ImageFolder(root, transform=T.Compose(tf + normalize))
    loader = DataLoader(
        dataset,
        batch_size=batch,
        shuffle=workload != "rn50-val",
        num_workers=threads,
        persistent_workers=True,
        prefetch_factor=2,
    )
    torch.manual_seed(0)

    def epoch():
        for images, labels in loader:
            yield images.shape[0]

    return timed_epochs(epoch, epochs)


def run_tf(workload, root, threads, batch, epochs):
    import tensorflow as tf

    files = sorted(glob.glob(os.path.join(root, "*", "*.jpg")))
    classes = sorted({os.path.basename(os.path.dirname(f)) for f in files})
    labels = [classes.index(os.path.basename(os.path.dirname(f))) for f in files]
    mean = tf.constant(MEAN) * 255.0
    std = tf.constant(STD) * 255.0

    def rrc(img):
        begin, size, _ = tf.image.sample_distorted_bounding_box(
            tf.shape(img),
            bounding_boxes=tf.constant([[[0.0, 0.0, 1.0, 1.0]]]),
            min_object_covered=0.0,
            aspect_ratio_range=(3 / 4, 4 / 3),
            area_range=(0.08, 1.0),
            max_attempts=10,
            use_image_if_no_bounding_boxes=True,
        )
        img = tf.slice(img, begin, size)
        return tf.image.resize(img, (224, 224), antialias=True)

    def jitter(img):
        # torchvision semantics: multiplicative brightness, contrast and saturation, hue shift,
        # in a random order (SimCLR's TensorFlow recipe does the same).
        def b(x):
            return x * tf.random.uniform([], 0.6, 1.4)

        def c(x):
            return tf.image.adjust_contrast(x, tf.random.uniform([], 0.6, 1.4))

        def s(x):
            return tf.image.adjust_saturation(x, tf.random.uniform([], 0.6, 1.4))

        def h(x):
            return tf.image.adjust_hue(x, tf.random.uniform([], -0.1, 0.1))

        fns = [b, c, s, h]
        order = tf.random.shuffle(tf.range(4))
        for i in range(4):
            img = tf.switch_case(order[i], [lambda f=f: f(img) for f in fns])
            img = tf.clip_by_value(img, 0.0, 255.0)
        return img

    def blur(img):
        sigma = tf.random.uniform([], 0.1, 2.0)
        x = tf.range(-11.0, 12.0)
        k = tf.exp(-0.5 * tf.square(x / sigma))
        k = k / tf.reduce_sum(k)
        kh = tf.tile(tf.reshape(k, [1, 23, 1, 1]), [1, 1, 3, 1])
        kv = tf.tile(tf.reshape(k, [23, 1, 1, 1]), [1, 1, 3, 1])
        x = tf.pad(img[None], [[0, 0], [11, 11], [11, 11], [0, 0]], mode="REFLECT")
        x = tf.nn.depthwise_conv2d(x, kh, [1, 1, 1, 1], "VALID")
        x = tf.nn.depthwise_conv2d(x, kv, [1, 1, 1, 1], "VALID")
        return x[0]

    def maybe(p, f, img):
        return tf.cond(tf.random.uniform([]) < p, lambda: f(img), lambda: img)

    def load(path, label):
        img = tf.io.decode_jpeg(tf.io.read_file(path), channels=3)
        if workload == "rn50-val":
            shape = tf.cast(tf.shape(img)[:2], tf.float32)
            scale = 256.0 / tf.reduce_min(shape)
            size = tf.cast(shape * scale, tf.int32)
            img = tf.image.resize(img, size, antialias=True)
            img = tf.image.resize_with_crop_or_pad(img, 224, 224)
        else:
            img = tf.image.random_flip_left_right(rrc(img))
            if workload == "simclr":
                img = maybe(0.8, jitter, img)
                img = maybe(0.2, lambda x: tf.tile(tf.image.rgb_to_grayscale(x), [1, 1, 3]), img)
                img = maybe(0.5, blur, img)
        img = (img - mean) / std
        return tf.transpose(img, [2, 0, 1]), label

    ds = tf.data.Dataset.from_tensor_slices((files, labels))
    if workload != "rn50-val":
        ds = ds.shuffle(len(files), seed=0, reshuffle_each_iteration=True)
    ds = ds.map(load, num_parallel_calls=tf.data.AUTOTUNE).batch(batch)
    ds = ds.prefetch(tf.data.AUTOTUNE)
    options = tf.data.Options()
    options.threading.private_threadpool_size = threads
    ds = ds.with_options(options)

    def epoch():
        for images, labels in ds:
            yield int(images.shape[0])

    return timed_epochs(epoch, epochs)


def run_dali(workload, root, threads, batch, epochs):
    from nvidia.dali import fn, pipeline_def, types

    try:
        from nvidia.dali.plugin.pytorch import DALIGenericIterator
    except ImportError:  # DALI without torch: the plain pipeline loop below
        DALIGenericIterator = None

    train = workload != "rn50-val"

    @pipeline_def(
        batch_size=batch,
        num_threads=threads,
        device_id=None,
        seed=0,
        enable_conditionals=workload == "simclr",
    )
    def pipe():
        jpegs, labels = fn.readers.file(file_root=root, random_shuffle=train, name="reader")
        if train:
            images = fn.decoders.image_random_crop(
                jpegs,
                device="cpu",
                output_type=types.RGB,
                random_area=[0.08, 1.0],
                random_aspect_ratio=[3 / 4, 4 / 3],
                num_attempts=10,
            )
            images = fn.resize(images, resize_x=224, resize_y=224, antialias=True)
            mirror = fn.random.coin_flip(probability=0.5)
        else:
            images = fn.decoders.image(jpegs, device="cpu", output_type=types.RGB)
            images = fn.resize(images, resize_shorter=256, antialias=True)
            mirror = 0
        if workload == "simclr":
            # DALI's color_twist applies the four adjustments in a fixed order (torchvision
            # randomises it); the factors are drawn per sample from the same ranges.
            if fn.random.coin_flip(probability=0.8):
                images = fn.color_twist(
                    images,
                    brightness=fn.random.uniform(range=[0.6, 1.4]),
                    contrast=fn.random.uniform(range=[0.6, 1.4]),
                    saturation=fn.random.uniform(range=[0.6, 1.4]),
                    hue=fn.random.uniform(range=[-36.0, 36.0]),  # degrees: 0.1 of a turn
                )
            if fn.random.coin_flip(probability=0.2):
                images = fn.hsv(images, saturation=0.0)
            if fn.random.coin_flip(probability=0.5):
                images = fn.gaussian_blur(
                    images, window_size=23, sigma=fn.random.uniform(range=[0.1, 2.0])
                )
        images = fn.crop_mirror_normalize(
            images,
            dtype=types.FLOAT,
            output_layout="CHW",
            crop=(224, 224),
            mean=[m * 255 for m in MEAN],
            std=[s * 255 for s in STD],
            mirror=mirror,
        )
        return images, labels

    p = pipe()
    p.build()
    if DALIGenericIterator is None:
        # No torch: run the pipeline directly, one epoch = the reader's size in batches (the
        # last one padded by DALI, counted as the images it holds).
        size = p.epoch_size("reader")

        def epoch():
            for start in range(0, size, batch):
                images, _ = p.run()
                yield min(batch, size - start) if len(images) else 0

        return timed_epochs(epoch, epochs)
    it = DALIGenericIterator(p, ["images", "labels"], reader_name="reader", auto_reset=True)

    def epoch():
        for out in it:
            yield out[0]["images"].shape[0]

    return timed_epochs(epoch, epochs)


def run_sluice_python(workload, root, threads, batch, epochs):
    """sluice driven from Python like every other peer: each batch into torch tensors."""
    import torch

    import sluice

    pipe = sluice.workload(workload, data=root, batch_size=batch, threads=threads)
    state = {"epoch": 0}

    def epoch():
        for b in pipe.epoch(state["epoch"]):
            images = torch.from_dlpack(b["images"])
            torch.from_dlpack(b["labels"])
            yield images.shape[0]
        state["epoch"] += 1

    return timed_epochs(epoch, epochs)


PEERS = {"torch": run_torch, "tf": run_tf, "dali": run_dali, "sluice-py": run_sluice_python}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("peer", choices=sorted(PEERS))
    ap.add_argument("workload", choices=["rn50-train", "rn50-val", "simclr"])
    ap.add_argument("data")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--epochs", type=int, default=2)
    a = ap.parse_args()
    row = {"peer": a.peer, "workload": a.workload}
    try:
        images, seconds = PEERS[a.peer](a.workload, a.data, a.threads, a.batch, a.epochs)
        row.update(images=images, seconds=seconds, images_per_second=images / seconds)
    except Exception as e:  # a peer that cannot run here is reported, not fatal
        row["skipped"] = f"{type(e).__name__}: {e}"[:300]
    print(json.dumps(row), flush=True)


if __name__ == "__main__":
    sys.exit(main())
