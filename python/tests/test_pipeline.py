"""The Python pipeline gives the Rust pipeline's bytes, validates its settings, reports bad
samples, resumes exactly, and survives pickling."""

import json
import os
import pickle
import subprocess

import numpy as np
import pytest

import sluice
from sluice import ops


def checksum(batches):
    c = sluice.Checksum()
    for b in batches:
        c.update(b)
    return c.hexdigest()


# The speech workloads read audio, the text ones text: test_audio.py and test_text.py check
# them against the bench.
SPEECH_WORKLOADS = {"asr", "asr-val", "cedar-asr"}
TEXT_WORKLOADS = {"nlp", "bert-mlm", "gpt-pack"}
IMAGE_WORKLOADS = [w for w in sluice.workloads() if w not in SPEECH_WORKLOADS | TEXT_WORKLOADS]


def test_the_workload_list_has_the_speech_and_text_ones():
    assert SPEECH_WORKLOADS | TEXT_WORKLOADS <= set(sluice.workloads())
    assert len(IMAGE_WORKLOADS) == 4


@pytest.mark.parametrize("name", IMAGE_WORKLOADS)
def test_every_workload_matches_sluice_bench(name, data, sluice_bin):
    """sluice.workload(NAME) is the pipeline `sluice bench NAME` runs: same checksum."""
    out = subprocess.run(
        [str(sluice_bin), "bench", name, "--data", str(data), "--threads", "2", "--batch", "16",
         "--epochs", "2", "--seed", "5", "--json"],
        check=True, capture_output=True, text=True,
    )
    want = json.loads(out.stdout)["checksum"]
    pipe = sluice.workload(name, data=data, batch_size=16, threads=2, seed=5)
    got = checksum(b for e in range(2) for b in pipe.epoch(e))
    assert got == want


def test_workload_ops_are_the_declared_ones():
    pipe = sluice.workload("simclr", data=sluice.generated_dataset(images=64), threads=1)
    kinds = [type(o).__name__ for o in pipe.ops]
    assert kinds == ["RandomResizedCrop", "RandomHorizontalFlip", "ColorJitter",
                     "RandomGrayscale", "GaussianBlur", "Normalize"]
    assert pipe.settings["shuffle"] is True and pipe.settings["batch_size"] == 64
    with pytest.raises(ValueError, match="unknown workload"):
        sluice.workload("resnet")


def test_same_bytes_for_any_thread_count(data):
    def run(threads):
        pipe = sluice.workload("simclr", data=data, batch_size=16, threads=threads, seed=1)
        return checksum(pipe.epoch(0))

    assert run(1) == run(2)


@pytest.mark.parametrize(
    "kwargs, setting",
    [
        ({"batch_size": 0}, "batch_size"),
        ({"threads": 0}, "threads"),
        ({"prefetch": -1}, "prefetch"),
        ({"placement": "gpu"}, "placement"),
        ({"on_error": "ignore"}, "on_error"),
        ({"cache_mib": -5}, "cache_mib"),
        ({"cuda_device": -1}, "cuda_device"),
        ({"ops": [ops.Normalize.imagenet(dtype="float64")]}, "Normalize.dtype"),
        ({"ops": [ops.Normalize.imagenet(layout="nchw")]}, "Normalize.layout"),
        ({"ops": [ops.RandomResizedCrop(0)]}, "RandomResizedCrop.size"),
        ({"ops": [ops.RandomHorizontalFlip(p=1.5)]}, "RandomHorizontalFlip"),
        ({"ops": [ops.ColorJitter(0.4, p=2.0)]}, "ColorJitter"),
        ({"ops": [ops.GaussianBlur(4)]}, "GaussianBlur"),
        ({"ops": [ops.Resize(32, on="tpu")]}, "Resize.on"),
        ({"ops": ["crop"]}, "ops"),
        ({"ops": [ops.Normalize.imagenet(), ops.CenterCrop(8)]}, "CenterCrop"),
    ],
)
def test_bad_settings_raise_value_error_naming_them(data, kwargs, setting):
    kwargs = dict(kwargs)
    op_list = kwargs.pop("ops", [ops.CenterCrop(32)])
    with pytest.raises(ValueError, match=setting.replace(".", r"\.")):
        sluice.Pipeline(data, op_list, **kwargs)


def test_a_named_cuda_device_that_does_not_open_falls_back_with_the_reason(data):
    pipe = sluice.Pipeline(
        data, [ops.CenterCrop(32), ops.Normalize.imagenet()], device_batches=True, cuda_device=4096
    )
    assert not pipe.device_batches
    # No driver here, or no such device on a GPU machine: either way the reason says so.
    reason = pipe.placement_reason
    assert "no CUDA driver" in reason or "no CUDA device 4096" in reason, reason
    assert next(iter(pipe))["images"].device == "cpu"


def test_a_missing_source_is_an_os_error(tmp_path):
    with pytest.raises(OSError):
        sluice.ImageFolder(tmp_path / "nowhere")
    with pytest.raises(ValueError, match="source"):
        sluice.Pipeline(42, [])


def test_a_bad_sample_raises_sample_error_naming_file_and_operator(bad_data):
    root, bad = bad_data
    pipe = sluice.Pipeline(root, [ops.CenterCrop(32), ops.Cast()], batch_size=4, threads=2)
    with pytest.raises(sluice.SampleError) as info:
        for _ in pipe.epoch(0):
            pass
    err = info.value
    assert isinstance(err, RuntimeError)
    assert err.operator == "DecodeImage"
    assert any(err.path.endswith(name) for name in bad)
    assert err.path in str(err) and "DecodeImage" in str(err)


def test_skip_policy_reports_and_keeps_bytes_with_labels(bad_data, data):
    root, bad = bad_data
    skip = sluice.Pipeline(root, [ops.CenterCrop(32), ops.Cast(layout="hwc")], batch_size=4,
                           threads=2, on_error="skip")
    skipped, kept = [], {}
    for batch in skip.epoch(0):
        skipped += batch.skipped
        labels = batch["labels"].numpy()
        images = batch["images"].numpy()
        for i, index in enumerate(batch["indices"].numpy()):
            kept[int(index)] = (int(labels[i]), images[i].tobytes())
    assert sorted(s.path.rsplit("/", 1)[-1] for s in skipped) == sorted(bad)
    assert all(s.operator == "DecodeImage" for s in skipped)
    assert len(kept) == 20
    # Each kept sample's bytes are those the same file gives alone, with its own label.
    source = sluice.ImageFolder(root)
    for index, (label, image) in kept.items():
        alone = sluice.Pipeline(source, [ops.CenterCrop(32), ops.Cast(layout="hwc")],
                                batch_size=64, threads=1, on_error="skip")
        for batch in alone.epoch(0):
            where = list(batch["indices"].numpy()).index(index)
            assert int(batch["labels"].numpy()[where]) == label
            assert batch["images"].numpy()[where].tobytes() == image


def test_state_dict_resumes_with_the_same_bytes(data):
    def make():
        return sluice.workload("rn50-train", data=data, batch_size=8, threads=2, seed=9)

    full = [sluice.Checksum() for _ in range(8)]
    for b in make().epoch(1):
        full[b.index].update(b)
    want = [c.hexdigest() for c in full]

    first = make()
    it = first.epoch(1)
    for _ in range(3):
        next(it)
    state = first.state_dict()
    fingerprint = state["fingerprint"]
    assert len(fingerprint) == 16
    assert {k: v for k, v in state.items() if k != "fingerprint"} == {
        "epoch": 1,
        "position": 3,
        "batches_per_epoch": 8,
        "seed": 9,
        "rank": 0,
        "world": 1,
    }
    del it

    resumed = make()
    resumed.load_state_dict(state)
    got = []
    for b in resumed:  # iter(pipeline) resumes the saved epoch
        c = sluice.Checksum()
        c.update(b)
        got.append((b.index, c.hexdigest()))
    assert got == [(i, want[i]) for i in range(3, 8)]
    assert resumed.state_dict()["position"] == 8

    with pytest.raises(ValueError, match="seed"):
        sluice.workload("rn50-train", data=data, batch_size=8, seed=1).load_state_dict(state)
    with pytest.raises(ValueError, match="position"):
        make().load_state_dict({**state, "position": 99})


def test_iterating_the_pipeline_runs_successive_epochs(data):
    pipe = sluice.Pipeline(data, [ops.CenterCrop(16), ops.Cast()], batch_size=32, threads=1)
    assert [b.epoch for _ in range(2) for b in pipe] == [0, 0, 1, 1]


def test_pickle_rebuilds_the_same_pipeline(data):
    pipe = sluice.workload("simclr", data=data, batch_size=16, threads=2, seed=4)
    copy = pickle.loads(pickle.dumps(pipe))
    assert copy.ops == pipe.ops and copy.settings == pipe.settings
    assert checksum(copy.epoch(0)) == checksum(pipe.epoch(0))


def test_explain_and_profile_round_trip(data, tmp_path):
    saved = tmp_path / "profile.json"
    pipe = sluice.Pipeline(
        sluice.ImageFolder(data),
        [ops.RandomResizedCrop(64), ops.RandomHorizontalFlip(), ops.Normalize.imagenet()],
        batch_size=8, threads=2, optimize=True, save_profile=str(saved), epochs=2,
    )
    text = pipe.explain()
    assert "physical plan" in text and "RandomResizedCrop" in text
    assert json.loads(saved.read_text())["ops"]
    again = sluice.Pipeline(data, pipe.ops, batch_size=8, threads=2)
    assert "physical plan" in again.explain(profile=str(saved))
    assert "steps:" in pipe.describe()


def test_pins_reach_the_plan(data):
    # The core sees both pins: a CPU pin after a GPU pin is refused (one CPU-to-GPU cut).
    with pytest.raises(ValueError, match="pinned to the CPU but follows"):
        sluice.Pipeline(data, [ops.CenterCrop(16, on="wgpu"), ops.Cast(on="cpu")], batch_size=8)
    # A GPU pin takes the suffix to wgpu (lavapipe in CI), with the CPU's bytes.
    gpu = sluice.Pipeline(data, [ops.CenterCrop(16, on="wgpu"), ops.Cast()], batch_size=8,
                          threads=1)
    if gpu.gpu_cut != 0:
        assert "wgpu" in gpu.placement_reason
        if os.environ.get("SLUICE_REQUIRE_WGPU"):
            pytest.fail(f"SLUICE_REQUIRE_WGPU is set but: {gpu.placement_reason}")
        pytest.skip(f"skipped: no wgpu adapter ({gpu.placement_reason})")
    cpu = sluice.Pipeline(data, [ops.CenterCrop(16), ops.Cast()], batch_size=8, threads=1)
    assert checksum(gpu.epoch(0)) == checksum(cpu.epoch(0))


def test_device_batches_without_cuda_fall_back_to_host(data):
    pipe = sluice.Pipeline(data, [ops.CenterCrop(16), ops.Normalize.imagenet()], batch_size=8,
                           threads=1, placement="cuda", device_batches=True)
    if pipe.device_batches:
        pytest.skip("a CUDA device is present: scripts/gpu-check.sh runs the device tests")
    assert "device batches off" in pipe.placement_reason
    batch = next(iter(pipe.epoch(0)))
    assert batch["images"].device == "cpu"


def test_crop_aware_decode_is_counted_and_changes_no_byte(data):
    # fuse=True (the default) decodes only what RandomResizedCrop reads; fuse=False decodes
    # every image whole. The batches must be identical.
    def build(fuse):
        return sluice.Pipeline(
            sluice.ImageFolder(data),
            ops=[ops.RandomResizedCrop(64), ops.RandomHorizontalFlip(), ops.Normalize.imagenet()],
            batch_size=8,
            threads=2,
            shuffle=True,
            seed=3,
            fuse=fuse,
        )

    windowed, whole = build(True), build(False)
    assert checksum(windowed.epoch(1)) == checksum(whole.epoch(1))
    assert windowed.stats()["window_decodes"] > 0
    assert whole.stats()["window_decodes"] == 0


def test_allow_approx_decodes_large_photos_scaled_and_close(tmp_path):
    # 6 photos with a 1000-px long side: rn50-val's Resize 256 shrinks them ≥ 2×, so with
    # allow_approx each is decoded at reduced scale; the batch differs a little, never much.
    sluice.gen_data(tmp_path, n=6, classes=2, long_side=1000)

    def run(approx):
        pipe = sluice.workload("rn50-val", tmp_path, batch_size=6, threads=2, allow_approx=approx)
        images = next(iter(pipe.epoch(0)))["images"]
        return np.from_dlpack(images).astype(np.float32), pipe.stats()

    exact, exact_stats = run(False)
    approx, stats = run(True)
    assert exact_stats["scaled_decodes"] == 0
    assert stats["scaled_decodes"] == 6
    # Normalized values: one u8 level is 1 / (255 · std) ≈ 0.017.
    diff = np.abs(exact - approx)
    assert 0 < diff.mean() < 0.03, diff.mean()
