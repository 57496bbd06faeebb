"""Speech pipelines from Python: DecodeAudio first, features and lengths out, the same bytes as
`sluice bench asr-val`, bad settings named."""

import json
import math
import subprocess
import wave

import numpy as np
import pytest
import sluice
from sluice import ops


def _write_wav(path, rate, samples):
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes((np.clip(samples, -1, 1) * 32767).astype("<i2").tobytes())


@pytest.fixture(scope="module")
def audio_data(tmp_path_factory):
    root = tmp_path_factory.mktemp("audio")
    rng = np.random.default_rng(4)
    for i, (rate, seconds) in enumerate([(16000, 1.0), (8000, 0.7), (44100, 1.3), (22050, 0.5), (48000, 0.9)]):
        cls = root / f"class_{i % 2}"
        cls.mkdir(exist_ok=True)
        t = np.arange(int(rate * seconds)) / rate
        x = 0.5 * np.sin(2 * math.pi * (200 + 50 * i) * t) + 0.05 * rng.standard_normal(t.size)
        _write_wav(cls / f"utt_{i}.wav", rate, x)
    return root


ASR_VAL = [
    ops.DecodeAudio(),
    ops.Resample(16000),
    ops.PreEmphasis(0.97),
    ops.Spectrogram(n_fft=512, win_length=400, hop_length=160),
    ops.MelScale(n_mels=80, f_max=8000.0, mel_scale="slaney", norm="slaney"),
    ops.Log(),
    ops.FeatureNormalize(),
]


def test_audio_batches_hold_padded_features_and_lengths(audio_data):
    pipe = sluice.Pipeline(audio_data, ASR_VAL, batch_size=3, threads=2)
    batches = list(pipe.epoch(0))
    assert [b.size for b in batches] == [3, 2]
    seen = 0
    for b in batches:
        assert list(b.keys()) == ["features", "lengths", "labels", "indices"]
        assert "images" not in b
        feats, lengths = b["features"].numpy(), b["lengths"].numpy()
        assert feats.dtype == np.float32 and lengths.dtype == np.int64
        assert feats.shape[:2] == (b.size, 80) and feats.shape[2] == lengths.max()
        for i, n in enumerate(lengths):
            valid = feats[i, :, :n]
            # FeatureNormalize: each row has mean 0 and unbiased std 1 over its frames.
            assert np.abs(valid.mean(axis=1)).max() < 1e-4
            assert np.abs(valid.std(axis=1, ddof=1) - 1).max() < 1e-3
            assert (feats[i, :, n:] == 0).all(), "padding is zero"
            seen += 1
    assert seen == 5
    # T = 1 + samples_at_16k // 160 for the 1.0 s, 16 kHz file.
    first = next(iter(sluice.Pipeline(audio_data, ASR_VAL, batch_size=5, threads=1).epoch(0)))
    assert 101 in first["lengths"].numpy().tolist()


def test_padding_to_a_multiple_with_a_value(audio_data):
    pipe = sluice.Pipeline(audio_data, ASR_VAL, batch_size=3, threads=2, pad_multiple=16,
                           pad_value=-3.0)
    plain = sluice.Pipeline(audio_data, ASR_VAL, batch_size=3, threads=2)
    for b, p in zip(pipe.epoch(0), plain.epoch(0), strict=True):
        feats, lengths = b["features"].numpy(), b["lengths"].numpy()
        assert feats.shape[2] % 16 == 0 and feats.shape[2] - lengths.max() < 16
        want = p["features"].numpy()
        for i, n in enumerate(lengths):
            assert np.array_equal(feats[i, :, :n], want[i, :, :n])
            assert (feats[i, :, n:] == -3.0).all()
    with pytest.raises(ValueError, match="pad_multiple"):
        sluice.Pipeline(audio_data, ASR_VAL, pad_multiple=0)


def test_transcripts_from_a_json_lines_manifest(audio_data, tmp_path):
    files = sorted(audio_data.rglob("*.wav"))
    manifest = tmp_path / "train.jsonl"
    manifest.write_text("".join(
        json.dumps({"audio_filepath": str(f), "duration": 1.0, "text": f"words of {f.stem}, ok"}) + "\n"
        for f in files))
    pipe = sluice.Pipeline(str(manifest), ASR_VAL, batch_size=2, shuffle=True, seed=3, threads=2)
    seen = []
    for b in pipe.epoch(0):
        assert list(b.keys()) == ["features", "lengths", "labels", "indices", "text"]
        assert b["labels"].numpy().tolist() == [-1] * b.size
        for index, text in zip(b["indices"].numpy().tolist(), b["text"], strict=True):
            assert text == f"words of {files[index].stem}, ok"
            seen.append(index)
    assert sorted(seen) == list(range(len(files)))
    # Folders have no transcripts: no "text" key.
    assert "text" not in next(iter(sluice.Pipeline(audio_data, ASR_VAL, batch_size=2)))


def test_the_asr_val_workload_equals_the_cli_bench(audio_data, sluice_bin):
    got = sluice.Checksum()
    for b in sluice.workload("asr-val", audio_data, batch_size=2, threads=2).epoch(0):
        got.update(b)
    out = subprocess.run(
        [str(sluice_bin), "bench", "asr-val", "--data", str(audio_data), "--batch", "2", "--epochs",
         "1", "--threads", "2", "--json"],
        check=True, capture_output=True, text=True,
    )
    assert got.hexdigest() == json.loads(out.stdout)["checksum"]
    # The workload's declaration round-trips through the constructor.
    ops_list = sluice.workload("asr", audio_data).ops
    assert isinstance(ops_list[0], ops.DecodeAudio) and isinstance(ops_list[-1], ops.TimeMasking)
    assert sluice.Pipeline(audio_data, ops_list).ops == ops_list


def test_the_cedar_asr_workload_equals_the_cli_bench_and_round_trips(audio_data, sluice_bin):
    got = sluice.Checksum()
    pipe = sluice.workload("cedar-asr", audio_data, batch_size=2, threads=2)
    for b in pipe.epoch(0):
        assert np.from_dlpack(b["features"]).shape[1] == 256
        got.update(b)
    out = subprocess.run(
        [str(sluice_bin), "bench", "cedar-asr", "--data", str(audio_data), "--batch", "2",
         "--epochs", "1", "--threads", "2", "--json"],
        check=True, capture_output=True, text=True,
    )
    assert got.hexdigest() == json.loads(out.stdout)["checksum"]
    declared = pipe.ops
    assert declared[2] == ops.Spectrogram(n_fft=400, win_length=400, hop_length=100, power=None)
    assert declared[3] == ops.TimeStretch(0.8) and declared[4] == ops.ComplexNorm(2.0)
    assert sluice.Pipeline(audio_data, declared).ops == declared
    # A rate range is drawn per sample and survives the round trip too.
    ranged = declared[:3] + [ops.TimeStretch((0.8, 1.2))] + declared[4:]
    assert sluice.Pipeline(audio_data, ranged).ops == ranged


@pytest.mark.parametrize(
    "op_list, setting",
    [
        ([ops.DecodeAudio(channels="left"), ops.Resample(16000)], "DecodeAudio.channels"),
        ([ops.DecodeAudio(), ops.Resample(0)], "Resample.rate"),
        ([ops.DecodeAudio(), ops.Spectrogram(pad_mode="wrap")], "Spectrogram.pad_mode"),
        ([ops.DecodeAudio(), ops.Spectrogram(), ops.MelScale(mel_scale="bark")], "MelScale.mel_scale"),
        ([ops.Resample(16000), ops.DecodeAudio()], "DecodeAudio must come first"),
        ([ops.DecodeAudio(), ops.Log()], "takes spectral features but DecodeAudio produces audio"),
        ([ops.DecodeAudio(), ops.Normalize.imagenet()], "takes an image"),
        ([ops.DecodeAudio(), ops.Spectrogram(power=None)], "add ComplexNorm"),
        ([ops.DecodeAudio(), ops.Spectrogram(power=None), ops.TimeStretch("fast")], "TimeStretch.rate"),
        ([ops.DecodeAudio(), ops.Spectrogram(power=None), ops.TimeStretch((1.2, 0.8)),
          ops.ComplexNorm()], "TimeStretch"),
    ],
)
def test_bad_audio_declarations_raise_value_error(audio_data, op_list, setting):
    with pytest.raises(ValueError, match=setting):
        sluice.Pipeline(audio_data, op_list)


def test_the_optimizer_plans_speech_pipelines_and_explains_them(audio_data):
    pipe = sluice.Pipeline(audio_data, ASR_VAL, batch_size=4, optimize=True)
    text = pipe.explain()
    assert "DecodeAudio" in text and "rule place" in text, text
    assert "speech and text pipelines are not cached" in text, text
    batch = next(iter(pipe.epoch(0)))
    assert batch["features"].shape[1] == 80


def test_the_spectral_chain_on_wgpu_gives_the_cpu_features(audio_data):
    gpu = sluice.Pipeline(audio_data, ASR_VAL, batch_size=3, threads=2, placement="wgpu")
    described = gpu.describe()
    if "from Spectrogram on" not in described:
        # CI sets SLUICE_REQUIRE_WGPU (lavapipe is installed): there a fallback is a failure.
        import os

        assert "SLUICE_REQUIRE_WGPU" not in os.environ, described
        pytest.skip(f"no wgpu adapter: {described}")
    cpu = sluice.Pipeline(audio_data, ASR_VAL, batch_size=3, threads=2)
    for g, c in zip(gpu.epoch(0), cpu.epoch(0), strict=True):
        assert (g["lengths"].numpy() == c["lengths"].numpy()).all()
        assert (g["indices"].numpy() == c["indices"].numpy()).all()
        diff = np.abs(g["features"].numpy() - c["features"].numpy()).max()
        # The kernels' stated tolerance (tests/common/spectral.rs): 5e-4 on log-mel features.
        assert diff <= 5e-4, diff
