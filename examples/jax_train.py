"""A small JAX training loop fed by sluice: a linear classifier on average-pooled image
features, plain gradient descent (no optax), on the generated dataset. Batches go into JAX
through DLPack without a copy.

    pip install ./python jax
    python examples/jax_train.py --steps 40
"""

import argparse
import time

import jax
import jax.numpy as jnp

import sluice
from sluice import ops


def features(images):
    # [B, 3, H, W] -> [B, 3 * 4 * 4]: 4x4 average pooling per channel.
    b, c, h, w = images.shape
    pooled = images.reshape(b, c, 4, h // 4, 4, w // 4).mean(axis=(3, 5))
    return pooled.reshape(b, -1)


def loss_fn(params, x, y):
    logits = x @ params["w"] + params["b"]
    logp = jax.nn.log_softmax(logits)
    return -jnp.mean(jnp.take_along_axis(logp, y[:, None].astype(jnp.int32), axis=1))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--batch", type=int, default=32)
    args = parser.parse_args()

    source = sluice.ImageFolder(sluice.generated_dataset(images=512))
    classes = len(source.classes)
    pipe = sluice.Pipeline(
        source,
        ops=[ops.RandomResizedCrop(64), ops.RandomHorizontalFlip(), ops.Normalize.imagenet()],
        batch_size=args.batch, shuffle=True, seed=0,
    )
    dim = 3 * 4 * 4
    key = jax.random.PRNGKey(0)
    params = {"w": 0.01 * jax.random.normal(key, (dim, classes)), "b": jnp.zeros(classes)}
    grad = jax.jit(jax.value_and_grad(loss_fn))

    step, waited, start = 0, 0.0, time.perf_counter()
    epoch = 0
    while step < args.steps:
        batches = pipe.epoch(epoch)
        while True:
            asked = time.perf_counter()
            batch = next(batches, None)
            waited += time.perf_counter() - asked
            if batch is None:
                break
            x = features(jnp.from_dlpack(batch["images"]))  # zero copy into XLA
            y = jnp.from_dlpack(batch["labels"])
            loss, g = grad(params, x, y)
            params = jax.tree_util.tree_map(lambda p, d: p - 0.5 * d, params, g)
            step += 1
            if step % 10 == 0:
                print(f"step {step:4d}  epoch {epoch}  loss {float(loss):.3f}")
            if step == args.steps:
                break
        epoch += 1
    wall = time.perf_counter() - start
    print(f"{step} steps in {wall:.1f} s, data stall {100 * waited / wall:.1f}%")


if __name__ == "__main__":
    main()
