"""CUDA device batches through DLPack (run on a GPU machine by scripts/gpu-check.sh; here they
skip without a CUDA device, or fail when SLUICE_REQUIRE_CUDA is set).

Needs only sluice: it also runs as a script (`python test_cuda.py DATA_DIR`) where pytest is
not installed. With torch present, the batches also go through `torch.from_dlpack` on torch's
current stream."""

import os
import sys

import sluice
from sluice import ops


def _device_pipeline(data, **kw):
    return sluice.Pipeline(
        data, [ops.RandomResizedCrop(96), ops.RandomHorizontalFlip(), ops.Normalize.imagenet()],
        batch_size=16, shuffle=True, seed=2, threads=2, placement="cuda", device_batches=True,
        **kw,
    )


class Skipped(Exception):
    """A check that cannot run here (script mode)."""


def _skip(reason, required=True):
    """Skip with the reason; a missing CUDA device fails under SLUICE_REQUIRE_CUDA."""
    if required and os.environ.get("SLUICE_REQUIRE_CUDA"):
        raise AssertionError(f"SLUICE_REQUIRE_CUDA is set but: {reason}")
    if "pytest" in sys.modules:
        import pytest

        pytest.skip(f"skipped: {reason}")
    raise Skipped(reason)


def check_device_batches_equal_the_cpu(data):
    pipe = _device_pipeline(data)
    if not pipe.device_batches:
        _skip(pipe.placement_reason)
    cpu = sluice.Pipeline(data, pipe.ops, batch_size=16, shuffle=True, seed=2, threads=2)
    for epoch in range(3):
        got, want = sluice.Checksum(), sluice.Checksum()
        for d, c in zip(pipe.epoch(epoch), cpu.epoch(epoch), strict=True):
            t = d["images"]
            assert t.device.startswith("cuda:") and t.__dlpack_device__()[0] == 2
            capsule = t.__dlpack__(stream=1)  # the legacy default stream waits for the batch
            assert capsule is not None
            got.update(d)  # copies the device tensor back
            want.update(c)
            del d, t, capsule
        assert got.hexdigest() == want.hexdigest(), f"epoch {epoch}"


def check_torch_reads_device_batches_on_its_stream(data):
    try:
        import torch
    except ImportError:
        _skip("torch is not installed", required=False)
    if not torch.cuda.is_available():
        _skip("torch sees no CUDA device")
    pipe = _device_pipeline(data)
    if not pipe.device_batches:
        _skip(pipe.placement_reason)
    cpu = sluice.Pipeline(data, pipe.ops, batch_size=16, shuffle=True, seed=2, threads=2)
    for d, c in zip(pipe.epoch(0), cpu.epoch(0), strict=True):
        x = torch.from_dlpack(d["images"])  # waits on torch's current stream, no host sync
        assert x.is_cuda and x.data_ptr() == d["images"].data_ptr
        want = torch.from_dlpack(c["images"])
        # A long step on torch's stream: the slot is reused only after it.
        y = (x * 2).sum()
        assert torch.allclose(x.cpu(), want, rtol=0, atol=1e-6)
        del x, d
        float(y)


def check_speech_and_text_device_batches_equal_the_cpu(data=None):
    """asr-val's features and bert-mlm's ids and labels stay on the device: every key equals
    the CPU pipeline's (features within 1e-3 of the largest |value|, ids and labels exactly)."""
    try:
        import numpy as np
    except ImportError:
        _skip("numpy is not installed", required=False)
    audio = sluice.generated_dataset(images=12, kind="audio")
    text = sluice.generated_dataset(images=48, kind="text")
    for name, corpus, device_keys in (("asr-val", audio, ["features"]),
                                      ("bert-mlm", text, ["input_ids", "labels"])):
        kw = dict(batch_size=4, threads=2, seed=3)
        pipe = sluice.workload(name, corpus, placement="cuda", device_batches=True, **kw)
        if not pipe.device_batches:
            _skip(pipe.placement_reason)
        cpu = sluice.workload(name, corpus, placement="cpu", **kw)
        for d, c in zip(pipe.epoch(0), cpu.epoch(0), strict=True):
            assert list(d.keys()) == list(c.keys())
            for key in d.keys():
                on_device = d[key].device.startswith("cuda:")
                assert on_device == (key in device_keys), (name, key, d[key].device)
                got = np.frombuffer(d[key].tobytes(), dtype=np.uint8)
                want = np.frombuffer(c[key].tobytes(), dtype=np.uint8)
                if key == "features":
                    got, want = got.view(np.float32), want.view(np.float32)
                    tolerance = 1e-3 * max(1.0, float(np.abs(want).max()))
                    assert np.abs(got - want).max() <= tolerance, (name, key)
                else:
                    assert (got == want).all(), (name, key)
            del d


def test_device_batches_equal_the_cpu(data):
    check_device_batches_equal_the_cpu(data)


def test_torch_reads_device_batches_on_its_stream(data):
    check_torch_reads_device_batches_on_its_stream(data)


def test_speech_and_text_device_batches_equal_the_cpu(data):
    check_speech_and_text_device_batches_equal_the_cpu(data)


if __name__ == "__main__":
    data = sys.argv[1] if len(sys.argv) > 1 else sluice.generated_dataset(images=256)
    os.environ.setdefault("SLUICE_REQUIRE_CUDA", "1")
    passed = failed = skipped = 0
    for check in (check_device_batches_equal_the_cpu,
                  check_torch_reads_device_batches_on_its_stream,
                  check_speech_and_text_device_batches_equal_the_cpu):
        try:
            check(data)
            passed += 1
            print(f"{check.__name__}: pass")
        except Skipped as e:
            skipped += 1
            print(f"{check.__name__}: skipped: {e}")
        except Exception as e:  # report every check, then the summary line
            failed += 1
            print(f"{check.__name__}: FAIL: {type(e).__name__}: {e}")
    print(f"{passed} passed, {failed} failed, {skipped} skipped")
    sys.exit(1 if failed else 0)
