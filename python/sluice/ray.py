"""Run a sluice pipeline on a Ray cluster: extra CPU machines prepare the batches, the trainer
receives them in the epoch's order, byte for byte what one machine delivers::

    import ray, sluice, sluice.ray
    ray.init()                      # or ray.init(address="auto") on a cluster
    pipe = sluice.Pipeline("data/train", ops=[...], batch_size=256, shuffle=True, seed=0)
    loader = sluice.ray.Loader(pipe, num_workers=4)
    for batch in loader.epoch(0):
        x = torch.from_numpy(batch["images"])

How: each worker is a Ray actor running its own copy of the pipeline (rebuilt from the
declaration, which pickles), on its own threads. The epoch's batches are split by position —
worker w of W builds batches w, w + W, w + 2W, ... (`Pipeline.epoch_strided`) — and every
batch is a pure function of (seed, epoch, position), so the split changes no byte. The trainer
asks each worker for its next batches, at most `in_flight` requests per worker at a time
(backpressure: a slow trainer stops the workers instead of filling memory), and yields them in
order. Batches travel through Ray's object store: the worker's batch is copied into it once,
and the trainer reads numpy arrays that view that shared memory (read-only, no copy on the same
node).

A worker that dies mid-epoch is restarted by Ray (`max_restarts`) and its unfinished requests
run again on the new actor, which rebuilds its iterator at the requested position: no batch is
lost, none is delivered twice, and the bytes are unchanged. `state_dict()` /
`load_state_dict()` work as on a `Pipeline` (the same dictionary, interchangeable with it).
`stats()` reports the trainer's data stall and how many workers would remove it.
"""

from __future__ import annotations

import math
import os
import time
from collections import deque
from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np

import sluice

__all__ = ["Batch", "Loader"]


def _ray():
    try:
        import ray
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError("sluice.ray needs Ray: pip install 'ray[default]>=2.9'") from e
    return ray


class ReadOnlyArray(np.ndarray):
    """A read-only numpy array (a view of Ray's object store) that any DLPack consumer can take:
    consumers of DLPack ≥ 1.0 (numpy, torch ≥ 2.4) get the memory itself, flagged read-only; an
    older consumer (e.g. JAX today) cannot be told the memory is read-only, and numpy would refuse
    it, so it gets a copy instead."""

    def __dlpack__(self, *, stream=None, max_version=None, dl_device=None, copy=None):
        base = self.view(np.ndarray)
        if (max_version is not None and tuple(max_version) >= (1, 0)) or self.flags.writeable:
            return base.__dlpack__(
                stream=stream, max_version=max_version, dl_device=dl_device, copy=copy
            )
        return np.array(base, copy=True).__dlpack__(stream=stream)


def _read_only(value: Any) -> Any:
    return value.view(ReadOnlyArray) if isinstance(value, np.ndarray) else value


class Batch(Mapping):
    """One batch from a Ray worker: the same names as `sluice.Batch` (`batch["images"]`,
    `batch["labels"]`, ...), each a read-only numpy array viewing Ray's object store
    (`ReadOnlyArray`: `torch.from_dlpack`, `np.from_dlpack` take it without a copy; consumers of
    older DLPack versions such as `jax.numpy.from_dlpack` get a copy); `batch["text"]` is a list of
    str when the source has transcripts. `epoch`, `index` (position in the epoch), `size`,
    `skipped` (the samples `on_error="skip"` left out: dicts with index, path, operator,
    reason) and `worker` (which worker built it)."""

    def __init__(self, wire: dict, worker: int):
        self._values = {k: _read_only(v) for k, v in wire["values"].items()}
        self.epoch: int = wire["epoch"]
        self.index: int = wire["index"]
        self.size: int = wire["size"]
        self.skipped: list[dict] = wire["skipped"]
        self.worker = worker

    def __getitem__(self, key: str) -> Any:
        return self._values[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def __repr__(self) -> str:
        return f"sluice.ray.Batch(epoch={self.epoch}, index={self.index}, size={self.size})"


def _to_wire(batch: sluice.Batch) -> dict:
    """What a worker sends: numpy arrays (serialized by Ray into its object store) and
    plain values."""
    values = {}
    for key, value in batch.items():
        if isinstance(value, sluice.Tensor):
            try:
                values[key] = np.from_dlpack(value)
            except (BufferError, TypeError, RuntimeError) as e:
                raise TypeError(
                    f"sluice.ray: batch[{key!r}] cannot travel as a numpy array ({e}); "
                    "deliver host tensors numpy can hold (not bfloat16, not device memory)"
                ) from e
        else:
            values[key] = value
    skipped = [
        {"index": s.index, "path": s.path, "operator": s.operator, "reason": s.reason}
        for s in batch.skipped
    ]
    return {
        "epoch": batch.epoch,
        "index": batch.index,
        "size": batch.size,
        "skipped": skipped,
        "values": values,
    }


class _Worker:
    """A Ray actor: one pipeline, handing out the batches it is asked for. Requests come in
    order (w, w + W, ...), so one strided iterator serves them; any other request (after a
    restart, a resize, a resume) starts a new iterator at that position."""

    def __init__(self, source, ops, settings):
        self.pipe = sluice.Pipeline(source, ops, **settings)
        self.iter = None
        self.expect = None  # (epoch, index, step) the open iterator delivers next
        self.end = None  # (epoch, step, index) where a packed epoch was found to end
        self.busy_s = 0.0
        self.batches = 0

    def batch(self, epoch: int, index: int, step: int) -> dict | None:
        started = time.perf_counter()
        if self.end is not None and self.end[:2] == (epoch, step) and index >= self.end[2]:
            return None
        if self.expect != (epoch, index, step):
            if self.iter is not None:
                self.iter.close()
            self.iter = self.pipe.epoch_strided(epoch, index, step)
        batch = next(self.iter, None)
        if batch is None:  # past the end (a packed epoch, whose length is found by running)
            self.iter, self.expect, self.end = None, None, (epoch, step, index)
            return None
        if batch.index != index:
            raise RuntimeError(f"worker delivered batch {batch.index} for request {index}")
        self.expect = (epoch, index + step, step)
        wire = _to_wire(batch)
        self.busy_s += time.perf_counter() - started
        self.batches += 1
        return wire

    def stats(self) -> dict:
        return {"busy_s": self.busy_s, "batches": self.batches, "pid": os.getpid()}


class Loader:
    """Batches of `pipeline` prepared by `num_workers` Ray actors (see the module docs).

    `threads_per_worker` overrides the pipeline's `threads` in each worker;
    `num_cpus_per_worker` is the Ray resource each actor reserves (default: its threads);
    `in_flight` bounds the requests outstanding per worker; `max_restarts` is how often Ray
    restarts a dead worker; `autoscale=(low, high)` resizes the worker set between epochs to
    the suggestion of `stats()`, within those bounds. Ray must be initialized (`ray.init()`)
    or `address` given (it is passed to `ray.init`)."""

    def __init__(
        self,
        pipeline: sluice.Pipeline,
        num_workers: int = 2,
        *,
        threads_per_worker: int | None = None,
        num_cpus_per_worker: float | None = None,
        in_flight: int = 2,
        max_restarts: int = 4,
        autoscale: tuple[int, int] | None = None,
        address: str | None = None,
    ):
        ray = _ray()
        if num_workers < 1:
            raise ValueError(f"num_workers: at least 1, got {num_workers}")
        if in_flight < 1:
            raise ValueError(f"in_flight: at least 1, got {in_flight}")
        if autoscale is not None and not 1 <= autoscale[0] <= autoscale[1]:
            raise ValueError(f"autoscale: (low, high) with 1 <= low <= high, got {autoscale}")
        if not ray.is_initialized():
            ray.init(address=address)
        _, (source, ops, settings) = pipeline.__reduce__()
        settings = dict(settings)
        if settings.get("device_batches"):
            raise ValueError(
                "sluice.ray delivers host batches: build the pipeline without "
                "device_batches and move each batch to the device in the trainer"
            )
        if threads_per_worker is not None:
            settings["threads"] = threads_per_worker
        self._pipe = pipeline
        self._packed = _batches_per_epoch(pipeline) is None
        if self._packed and num_workers > 1:
            raise ValueError(
                "a packed pipeline cannot be split by batch (each block depends on every "
                "document before it): use num_workers=1"
            )
        threads = settings.get("threads") or 1
        self._declaration = (source, ops, settings)
        self._actor_class = ray.remote(
            num_cpus=num_cpus_per_worker if num_cpus_per_worker is not None else threads,
            max_restarts=max_restarts,
            max_task_retries=-1,
        )(_Worker)
        self._in_flight = in_flight
        self._max_restarts = max_restarts
        self._autoscale = autoscale
        self._workers: list = []
        self.resize(num_workers)
        self._epoch, self._position = 0, 0
        self._resume: tuple[int, int] | None = None
        self._next_epoch = 0
        self._stall_s = 0.0
        self._step_s = 0.0
        self._delivered = 0
        self.max_pending = 0

    @property
    def num_workers(self) -> int:
        return len(self._workers)

    def resize(self, num_workers: int) -> None:
        """Use `num_workers` workers from the next epoch on (new actors start; surplus ones
        stop)."""
        ray = _ray()
        if num_workers < 1:
            raise ValueError(f"num_workers: at least 1, got {num_workers}")
        if self._packed and num_workers > 1:
            raise ValueError("a packed pipeline runs on one worker")
        while len(self._workers) > num_workers:
            ray.kill(self._workers.pop())
        while len(self._workers) < num_workers:
            self._workers.append(self._actor_class.remote(*self._declaration))

    def __len__(self) -> int:
        n = _batches_per_epoch(self._pipe)
        if n is None:
            raise TypeError("a packed pipeline has no len(): its batches depend on the tokens")
        return n

    def __iter__(self) -> Iterator[Batch]:
        epoch = self._resume[0] if self._resume else self._next_epoch
        return self.epoch(epoch)

    def epoch(self, epoch: int) -> Iterator[Batch]:
        """The batches of `epoch` in order (from the loaded position after
        `load_state_dict`)."""
        start = 0
        if self._resume is not None and self._resume[0] == epoch:
            start = self._resume[1]
            self._resume = None
        if self._autoscale is not None and self._delivered > 0:
            low, high = self._autoscale
            self.resize(min(high, max(low, self.stats()["suggested_workers"])))
        self._epoch, self._position, self._next_epoch = epoch, start, epoch + 1
        return self._run(epoch, start)

    def _run(self, epoch: int, start: int) -> Iterator[Batch]:
        workers = list(self._workers)
        step = len(workers)
        total = _batches_per_epoch(self._pipe)
        pending: deque = deque()  # (index, worker, ref), in epoch order
        next_request = start

        def request():
            nonlocal next_request
            w = next_request % step
            ref = workers[w].batch.remote(epoch, next_request, step)
            pending.append((next_request, w, ref))
            next_request += 1

        def more():
            return total is None or next_request < total

        while more() and len(pending) < step * self._in_flight:
            request()
        self.max_pending = max(self.max_pending, len(pending))
        while pending:
            index, w, ref = pending.popleft()
            waited = time.perf_counter()
            wire = self._get(ref, epoch, index, w)
            self._stall_s += time.perf_counter() - waited
            if wire is None:  # a packed epoch ended (later requests answer None at once)
                pending.clear()
                break
            if more():
                request()
                self.max_pending = max(self.max_pending, len(pending))
            self._position = index + 1
            self._delivered += 1
            handed = time.perf_counter()
            yield Batch(wire, w)
            self._step_s += time.perf_counter() - handed  # the trainer's own time

    def _get(self, ref, epoch: int, index: int, worker: int):
        """A batch's wire form; Ray retries requests a dead worker had not finished on the
        restarted actor. Once the restarts are used up, a clear error."""
        ray = _ray()
        try:
            return ray.get(ref)
        except ray.exceptions.RayActorError as e:
            raise RuntimeError(
                f"sluice.ray: worker {worker} died building batch {index} of epoch {epoch} "
                f"and could not be restarted (max_restarts={self._max_restarts}): {e}"
            ) from e

    def state_dict(self) -> dict:
        """Where iteration stands, as `Pipeline.state_dict` gives it (the two are
        interchangeable)."""
        state = self._pipe.state_dict()
        epoch, position = self._resume or (self._epoch, self._position)
        state["epoch"], state["position"] = epoch, position
        state.pop("packed", None)  # the pipeline's own stream position, not the loader's
        return state

    def load_state_dict(self, state: dict) -> None:
        """Resume from a `state_dict` (of a Loader or of a Pipeline with the same
        declaration): the next iteration over its epoch starts at its position. ValueError
        for another pipeline's state (checked as `Pipeline.load_state_dict` checks it)."""
        self._pipe.load_state_dict(state)
        self._resume = (int(state["epoch"]), int(state["position"]))

    def stats(self) -> dict:
        """The data stall and a worker count that would remove it: `stall_fraction` (the
        share of the trainer's time spent waiting for batches), `step_s` (the trainer's time
        per batch between batches), `batch_cost_s` (a worker's busy time per batch, measured
        on the workers), `batches_per_s_per_worker`, `workers` and `suggested_workers` =
        ceil(batch_cost_s / step_s) — the workers that build batches as fast as the trainer
        consumes them (cedar's autoscaling rule, on measured costs)."""
        ray = _ray()
        per_worker = ray.get([w.stats.remote() for w in self._workers])
        busy = sum(s["busy_s"] for s in per_worker)
        built = sum(s["batches"] for s in per_worker)
        cost = busy / built if built else 0.0
        delivered = max(self._delivered, 1)
        step = self._step_s / delivered
        wall = self._step_s + self._stall_s
        suggested = len(self._workers)
        if cost > 0 and step > 0:
            suggested = max(1, math.ceil(cost / step))
        return {
            "stall_fraction": self._stall_s / wall if wall > 0 else 0.0,
            "step_s": step,
            "batch_cost_s": cost,
            "batches_per_s_per_worker": 1.0 / cost if cost > 0 else 0.0,
            "workers": len(self._workers),
            "suggested_workers": suggested,
            "delivered": self._delivered,
        }

    def worker_pids(self) -> list[int]:
        """Each worker's process id (for tests and monitoring)."""
        ray = _ray()
        return [s["pid"] for s in ray.get([w.stats.remote() for w in self._workers])]

    def shutdown(self) -> None:
        """Stop the workers."""
        ray = _ray()
        for w in self._workers:
            ray.kill(w)
        self._workers.clear()


def _batches_per_epoch(pipeline: sluice.Pipeline) -> int | None:
    try:
        return len(pipeline)
    except TypeError:
        return None
