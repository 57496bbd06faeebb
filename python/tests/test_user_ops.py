"""ops.Lambda: a Python function as a pipeline operator on images, audio and features; random
ones reproducible whatever the threads; failures are sample errors naming the operator."""

import math
import wave

import numpy as np
import pytest
import sluice
from sluice import ops


def _images(pipe, epoch=0):
    out = {}
    for batch in pipe.epoch(epoch):
        images = batch["images"].numpy()
        for i, index in enumerate(batch["indices"].numpy()):
            out[int(index)] = images[i].copy()
    return out


def test_an_image_lambda_runs_where_it_is_declared(data):
    crop = [ops.CenterCrop(32), ops.Cast(layout="hwc")]
    plain = _images(sluice.Pipeline(data, crop, batch_size=8, threads=2))
    inverted = _images(
        sluice.Pipeline(data, [ops.Lambda(lambda x: 255 - x)] + crop, batch_size=8, threads=2)
    )
    assert plain.keys() == inverted.keys() and len(plain) == 64
    for index, image in plain.items():
        assert (inverted[index] == 255 - image).all(), index


def test_a_lambda_may_change_the_size(data):
    half = ops.Lambda(lambda x: x[::2, ::2], name="Halve")
    pipe = sluice.Pipeline(data, [half, ops.CenterCrop(16), ops.Cast(layout="hwc")],
                           batch_size=4, threads=2)
    assert "Halve" in pipe.describe()
    batch = next(iter(pipe.epoch(0)))
    assert batch["images"].numpy().shape == (4, 16, 16, 3)


def _noise(x, rng):
    return np.clip(x.astype(np.int16) + rng.integers(-20, 21, size=x.shape), 0, 255).astype(np.uint8)


def test_a_random_lambda_draws_per_sample_whatever_the_threads(data):
    def run(threads, epoch):
        pipe = sluice.Pipeline(
            data,
            [ops.CenterCrop(24), ops.Lambda(_noise, random=True, size="same"),
             ops.Cast(layout="hwc")],
            batch_size=5,
            threads=threads,
            seed=3,
        )
        return _images(pipe, epoch)

    one, two, again = run(1, 0), run(2, 0), run(2, 0)
    for index in one:
        assert (one[index] == two[index]).all() and (two[index] == again[index]).all()
    other_epoch = run(2, 1)
    assert any((one[i] != other_epoch[i]).any() for i in one), "epochs draw differently"


def test_a_failing_lambda_names_the_sample_and_operator_or_is_skipped(data):
    def picky(x):
        # About a third of the images, decided by their own bytes.
        if int(x.sum()) % 3 == 0:
            raise ValueError("a multiple of three")
        return x

    declared = [ops.Lambda(picky, name="Picky"), ops.CenterCrop(8), ops.Cast()]
    with pytest.raises(sluice.SampleError) as info:
        for _ in sluice.Pipeline(data, declared, batch_size=8, threads=2).epoch(0):
            pass
    assert info.value.operator == "Picky"
    assert "a multiple of three" in info.value.reason
    skip = sluice.Pipeline(data, declared, batch_size=8, threads=2, on_error="skip")
    skipped = [s for b in skip.epoch(0) for s in b.skipped]
    kept = sum(b.size for b in skip.epoch(0))
    assert skipped and all(s.operator == "Picky" for s in skipped)
    assert kept + len(skipped) == 64


def test_a_lambda_returning_the_wrong_shape_is_a_sample_error(data):
    declared = [ops.Lambda(lambda x: x[:, :, 0]), ops.CenterCrop(8), ops.Cast()]
    with pytest.raises(sluice.SampleError, match=r"\(height, width, 3\)"):
        for _ in sluice.Pipeline(data, declared, batch_size=8).epoch(0):
            pass
    # A declared size is checked on every sample.
    declared = [ops.Lambda(lambda x: x[1:], size="same"), ops.Cast()]
    with pytest.raises(sluice.SampleError, match="its size rule says"):
        for _ in sluice.Pipeline(data, declared, batch_size=8).epoch(0):
            pass


def test_lambda_settings_are_checked(data):
    with pytest.raises(ValueError, match="Lambda.input"):
        sluice.Pipeline(data, [ops.Lambda(abs, input="video")])
    with pytest.raises(ValueError, match="Lambda.fn"):
        sluice.Pipeline(data, [ops.Lambda(3)])
    # Pinned to the GPU: it has no kernel there.
    with pytest.raises(ValueError, match="no GPU kernel"):
        sluice.Pipeline(data, [ops.Lambda(abs, on="wgpu"), ops.Cast()])


@pytest.fixture(scope="module")
def speech(tmp_path_factory):
    root = tmp_path_factory.mktemp("speech") / "class_0"
    root.mkdir()
    noise = np.random.default_rng(9)
    for i, seconds in enumerate([0.6, 1.1, 0.8]):
        t = np.arange(int(16000 * seconds)) / 16000
        x = 0.4 * np.sin(2 * math.pi * (300 + 100 * i) * t) + 0.05 * noise.standard_normal(t.size)
        with wave.open(str(root / f"u{i}.wav"), "wb") as w:
            w.setnchannels(1)
            w.setsampwidth(2)
            w.setframerate(16000)
            w.writeframes((x * 32767).astype("<i2").tobytes())
    return root.parent


def test_audio_and_feature_lambdas(speech):
    front = [ops.DecodeAudio(), ops.Spectrogram(n_fft=256, hop_length=128), ops.Log()]
    plain = next(iter(sluice.Pipeline(speech, front, batch_size=3).epoch(0)))
    gained = next(iter(sluice.Pipeline(
        speech,
        [ops.DecodeAudio(), ops.Lambda(lambda a: a[0] * 2.0, input="audio")] + front[1:]
        + [ops.Lambda(lambda f: f - 1.0, input="features", name="Shift")],
        batch_size=3,
    ).epoch(0)))
    assert (plain["lengths"].numpy() == gained["lengths"].numpy()).all()
    a, b = plain["features"].numpy(), gained["features"].numpy()
    for i, n in enumerate(plain["lengths"].numpy()):
        # Doubling the signal multiplies the power by 4: log + ln 4, then the shift of -1
        # (where the power is well above Log's eps).
        loud = a[i, :, :n] > -10
        assert loud.mean() > 0.9
        np.testing.assert_allclose(
            b[i, :, :n][loud], a[i, :, :n][loud] + math.log(4.0) - 1.0, atol=1e-3
        )
