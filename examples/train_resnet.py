"""A real PyTorch training loop fed by sluice: torchvision ResNet-18, SGD, on the generated
dataset, on the CPU. Prints the loss and the data stall (share of time spent waiting for a
batch) per logging interval.

    pip install ./python torch torchvision
    python examples/train_resnet.py --steps 30

sluice runs its own threads (with the GIL released), so there is no DataLoader and no worker
processes: iterate the pipeline directly.
"""

import argparse
import time

import torch
import torchvision

import sluice
from sluice import ops


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", help="ImageFolder directory (default: generated dataset)")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--size", type=int, default=112, help="crop size (224 for ImageNet)")
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()

    data = args.data or sluice.generated_dataset(images=512)
    source = sluice.ImageFolder(data)
    pipe = sluice.Pipeline(
        source,
        ops=[ops.RandomResizedCrop(args.size), ops.RandomHorizontalFlip(),
             ops.Normalize.imagenet()],
        batch_size=args.batch, shuffle=True, seed=0, threads=args.threads, prefetch=4,
        on_error="skip",
    )
    print(pipe.describe(), end="")

    torch.manual_seed(0)
    model = torchvision.models.resnet18(num_classes=len(source.classes))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    loss_fn = torch.nn.CrossEntropyLoss()
    model.train()

    step, waited, since = 0, 0.0, time.perf_counter()
    losses = []
    epoch = 0
    while step < args.steps:
        batches = pipe.epoch(epoch)
        while step < args.steps:
            asked = time.perf_counter()
            batch = next(batches, None)
            if batch is None:
                break
            waited += time.perf_counter() - asked
            x = torch.from_dlpack(batch["images"])  # [B, 3, S, S] float32, no copy
            y = torch.from_dlpack(batch["labels"])  # [B] int64
            optimizer.zero_grad(set_to_none=True)
            loss = loss_fn(model(x), y)
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
            step += 1
            if step % 10 == 0 or step == args.steps:
                wall = time.perf_counter() - since
                print(f"step {step:4d}  epoch {epoch}  loss {sum(losses) / len(losses):.3f}  "
                      f"data stall {100 * waited / wall:.1f}%  ({wall / len(losses):.2f} s/step)")
                waited, since, losses = 0.0, time.perf_counter(), []
        epoch += 1
    print(f"state to resume from: {pipe.state_dict()}")


if __name__ == "__main__":
    main()
