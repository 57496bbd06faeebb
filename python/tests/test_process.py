"""Process-level behaviour: Ctrl-C while waiting, fork, memory over many epochs, and the
training-loop consumers."""

import os
import signal
import threading
import time

import jax.numpy as jnp
import numpy as np
import pytest
import torch

import sluice
from sluice import ops


def test_ctrl_c_interrupts_a_blocked_next(tmp_path, data):
    """A read that never finishes (a FIFO with no writer) blocks next(); SIGINT must still
    raise KeyboardInterrupt in the waiting thread, and the epoch is cancelled."""
    fifo = tmp_path / "stuck.jpg"
    os.mkfifo(fifo)
    listing = tmp_path / "list.csv"
    listing.write_text(f"{fifo},0\n")
    pipe = sluice.Pipeline(sluice.FileList(listing), [ops.CenterCrop(8), ops.Cast()],
                           batch_size=1, threads=1, on_error="skip")
    sent, interrupted = {}, threading.Event()

    def unblock():
        # Let the stuck read finish (one byte, then EOF: a decode error, skipped) so the work
        # can wind down. Non-blocking: with no reader waiting there is nothing to unblock.
        for _ in range(40):
            try:
                fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
            except OSError:  # ENXIO: no reader (yet)
                time.sleep(0.05)
                continue
            os.write(fd, b"x")
            os.close(fd)
            return

    def interrupt():
        sent["at"] = time.monotonic()
        os.kill(os.getpid(), signal.SIGINT)
        # Watchdog: if next() ignored the signal, unblock the read so the test fails instead
        # of hanging.
        if not interrupted.wait(30):
            sent["watchdog"] = True
            unblock()

    # Python's own Ctrl-C handler, whatever this process inherited (a shell that starts a job in
    # the background without job control leaves SIGINT ignored).
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    timer = threading.Thread(target=lambda: (time.sleep(0.3), interrupt()), daemon=True)
    timer.start()
    it = pipe.epoch(0)
    try:
        with pytest.raises(KeyboardInterrupt):
            next(it)
        interrupted.set()
        assert "watchdog" not in sent, "next() ignored SIGINT until its read was unblocked"
        latency_ms = (time.monotonic() - sent["at"]) * 1e3
        print(f"KeyboardInterrupt {latency_ms:.1f} ms after SIGINT")
        # The iterator is finished: the epoch was cancelled.
        with pytest.raises(StopIteration):
            next(it)
    finally:
        interrupted.set()
        timer.join()
        unblock()
        signal.signal(signal.SIGINT, previous)


def test_a_forked_child_gets_an_error_not_a_hang(data):
    pipe = sluice.Pipeline(data, [ops.CenterCrop(8), ops.Cast()], batch_size=8, threads=2)
    next(iter(pipe.epoch(0)))
    pid = os.fork()
    if pid == 0:  # the child
        code = 3
        try:
            next(iter(pipe.epoch(0)))
            code = 1
        except RuntimeError as e:
            code = 0 if "fork" in str(e) else 2
        finally:
            os._exit(code)
    # Watchdog: a child that hangs is killed and reported, not waited for forever.
    for _ in range(600):
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        time.sleep(0.05)
    else:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        pytest.fail("the forked child hung using the parent's pipeline")
    assert os.waitstatus_to_exitcode(status) == 0
    # The parent's pipeline still works.
    assert sum(b.size for b in pipe.epoch(1)) == 64


def rss_mib():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def test_rss_stays_flat_over_20_epochs(data):
    pipe = sluice.Pipeline(
        data, [ops.RandomResizedCrop(96), ops.RandomHorizontalFlip(), ops.Normalize.imagenet()],
        batch_size=16, shuffle=True, threads=2,
    )
    samples = []
    for epoch in range(20):
        for batch in pipe.epoch(epoch):
            x = torch.from_dlpack(batch["images"])
            float(x.mean())
        if epoch in (2, 19):
            samples.append(rss_mib())
    grown = samples[1] - samples[0]
    print(f"RSS epoch 2: {samples[0]:.1f} MiB, epoch 19: {samples[1]:.1f} MiB")
    # One batch is 1.7 MiB: growth of a few batches would be a leak.
    assert grown < 4.0, f"RSS grew {grown:.1f} MiB over 17 epochs"


def test_torch_jax_and_numpy_consumers_agree(data):
    pipe = sluice.workload("rn50-val", data=data, batch_size=8, threads=2)
    for batch in pipe.epoch(0):
        t = torch.from_dlpack(batch["images"])
        j = jnp.from_dlpack(batch["images"])
        n = np.from_dlpack(batch["images"])
        assert t.shape == (8, 3, 224, 224)
        assert np.array_equal(t.numpy(), n)
        assert np.array_equal(np.asarray(j), n)
        labels = torch.from_dlpack(batch["labels"])
        assert labels.dtype == torch.int64
        assert np.array_equal(labels.numpy(), np.asarray(jnp.from_dlpack(batch["labels"])))
