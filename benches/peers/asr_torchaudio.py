#!/usr/bin/env python3
"""The speech peer: sluice's asr-val and cedar-asr front ends written with torchaudio + a PyTorch
DataLoader.

    asr_torchaudio.py bench DATA [--workload asr-val|cedar-asr] [--peer torchaudio|librosa]
                      [--workers N] [--batch 32] [--epochs 2]
        files/s over EPOCHS timed epochs after one untimed warm-up epoch (as benches/peers);
        prints one JSON line. `--peer librosa` (cedar-asr only) runs the pipeline with librosa
        in the same DataLoader, as cedar's librosa baseline did.
    asr_torchaudio.py compare DUMP
        recomputes with torchaudio the samples of a batch that `sluice bench asr-val --dump DUMP`
        wrote and prints the largest differences (frames, values) as one JSON line.
    asr_torchaudio.py compare-cedar DATA [--files 16]
        runs cedar-asr's deterministic part (everything but the two random masks) through the
        sluice Python package and through torchaudio on the same files and prints the largest
        relative difference as one JSON line.

cedar-asr is: WAV → mono → resample to 8 kHz → complex STFT (n_fft 400, hop 100, periodic Hann,
centred, reflect) → TimeStretch(hop 100, 201 bins, rate 0.8) → |z|^2 → TimeMasking(80) →
FrequencyMasking(80) → MelScale(256 bins, 8 kHz, htk, no norm). (torchaudio's tutorial, which
cedar used, writes `TimeStretch(stretch_factor, fixed_rate=True)`: that passes the factor as the
hop and rate 1, a no-op; here the stretch is the one the pipeline means.)

The pipeline is torchaudio's recipe at its best, not a literal translation: one
`transforms.Resample` per source rate (its sinc kernel made once, as sluice does), one
`MelSpectrogram`, workers holding them for the run. asr-val is: WAV → mono (mean of channels)
→ resample to 16 kHz (sinc_interp_hann, width 6, rolloff 0.99) → pre-emphasis 0.97 → STFT
(n_fft 512, window 400, hop 160, periodic Hann, centred, reflect) power 2 → 80 slaney mel bins
over 0–8 kHz, slaney norm → ln(x + 2^-24) → per-bin (x − mean) / (unbiased std + 1e-5).
WAV files are read with scipy, FLAC with soundfile (torchaudio 2.9+ hands file I/O to
torchcodec).
"""
import argparse
import json
import os
import sys
import time

import numpy as np
import torch
import torchaudio
from scipy.io import wavfile

RATE = 16_000


def load_wav(path):
    """(rate, mono f32 tensor) with PCM scaled as symphonia does (integer / 2^(bits-1)). FLAC
    files (a third of the generated integer ones) are read with soundfile, same scaling."""
    if path.lower().endswith(".flac"):
        import soundfile

        data, rate = soundfile.read(path, dtype="float32", always_2d=True)
        return rate, torch.from_numpy(np.ascontiguousarray(data.mean(axis=1, dtype=np.float32)))
    rate, data = wavfile.read(path)
    if data.dtype == np.uint8:
        x = (data.astype(np.float32) - 128.0) / 128.0
    elif data.dtype == np.int16:
        x = data.astype(np.float32) / 32768.0
    elif data.dtype == np.int32:  # 24- and 32-bit PCM, left-justified by scipy
        x = data.astype(np.float32) / 2147483648.0
    else:
        x = data.astype(np.float32)
    if x.ndim == 2:
        x = x.mean(axis=1, dtype=np.float32)
    return rate, torch.from_numpy(np.ascontiguousarray(x))


class FrontEnd:
    def __init__(self):
        self.resamplers = {}
        self.mel = torchaudio.transforms.MelSpectrogram(
            sample_rate=RATE, n_fft=512, win_length=400, hop_length=160, f_min=0.0,
            f_max=8000.0, n_mels=80, window_fn=torch.hann_window, power=2.0, center=True,
            pad_mode="reflect", norm="slaney", mel_scale="slaney")

    def __call__(self, rate, x):
        if rate != RATE:
            resample = self.resamplers.get(rate)
            if resample is None:
                resample = torchaudio.transforms.Resample(
                    rate, RATE, resampling_method="sinc_interp_hann",
                    lowpass_filter_width=6, rolloff=0.99)
                self.resamplers[rate] = resample
            x = resample(x)
        x = torchaudio.functional.preemphasis(x, 0.97)
        f = torch.log(self.mel(x) + 2.0 ** -24)
        mean = f.mean(dim=1, keepdim=True)
        std = f.std(dim=1, keepdim=True)
        return (f - mean) / (std + 1e-5)


class CedarFrontEnd:
    RATE = 8_000

    def __init__(self, masks=True):
        self.resamplers = {}
        self.spec = torchaudio.transforms.Spectrogram(n_fft=400, hop_length=100, power=None)
        self.stretch = torchaudio.transforms.TimeStretch(hop_length=100, n_freq=201, fixed_rate=0.8)
        self.masks = torch.nn.Sequential(
            torchaudio.transforms.TimeMasking(80), torchaudio.transforms.FrequencyMasking(80)
        ) if masks else torch.nn.Identity()
        self.mel = torchaudio.transforms.MelScale(n_mels=256, sample_rate=self.RATE, n_stft=201)

    def __call__(self, rate, x):
        if rate != self.RATE:
            resample = self.resamplers.get(rate)
            if resample is None:
                resample = torchaudio.transforms.Resample(
                    rate, self.RATE, resampling_method="sinc_interp_hann",
                    lowpass_filter_width=6, rolloff=0.99)
                self.resamplers[rate] = resample
            x = resample(x)
        power = self.stretch(self.spec(x)).abs().pow(2)
        return self.mel(self.masks(power))


class LibrosaCedarFrontEnd:
    """cedar-asr in librosa: soxr resampling (librosa's default), `stft` (reflect padding, as
    torchaudio), `phase_vocoder`, |z|^2, one time and one frequency mask of width < 80 drawn
    with numpy, an htk mel filterbank of 256 bins without norm."""

    RATE = 8_000

    def __init__(self):
        import librosa

        self.librosa = librosa
        self.rng = np.random.default_rng()
        self.mel = librosa.filters.mel(sr=self.RATE, n_fft=400, n_mels=256, htk=True, norm=None)

    def _mask(self, s, axis):
        size = s.shape[axis]
        width = int(self.rng.random() * 80)
        start = int(self.rng.random() * max(size - width, 0))
        index = [slice(None)] * 2
        index[axis] = slice(start, start + width)
        s[tuple(index)] = 0.0

    def __call__(self, rate, x):
        y = x.numpy()
        if rate != self.RATE:
            y = self.librosa.resample(y, orig_sr=rate, target_sr=self.RATE)
        d = self.librosa.stft(y, n_fft=400, hop_length=100, pad_mode="reflect")
        d = self.librosa.phase_vocoder(d, rate=0.8, hop_length=100)
        power = np.abs(d) ** 2
        self._mask(power, 1)
        self._mask(power, 0)
        return torch.from_numpy(self.mel @ power)


def audio_files(root):
    classes = sorted(d for d in os.listdir(root) if os.path.isdir(os.path.join(root, d)))
    files = []
    for label, c in enumerate(classes):
        for name in sorted(os.listdir(os.path.join(root, c))):
            if name.lower().endswith((".wav", ".flac")):
                files.append((os.path.join(root, c, name), label))
    return files


class AudioFolder(torch.utils.data.Dataset):
    def __init__(self, root, front_end):
        self.files = audio_files(root)
        self.front_end = front_end

    def __len__(self):
        return len(self.files)

    def __getitem__(self, i):
        path, label = self.files[i]
        return self.front_end(*load_wav(path)), label


def pad_collate(items):
    """Features padded with zeros to the batch's longest, plus lengths and labels."""
    lengths = torch.tensor([f.shape[1] for f, _ in items])
    out = torch.zeros(len(items), items[0][0].shape[0], int(lengths.max()))
    for k, (f, _) in enumerate(items):
        out[k, :, : f.shape[1]] = f
    return out, lengths, torch.tensor([label for _, label in items])


def bench(args):
    if args.peer == "librosa":
        if args.workload != "cedar-asr":
            raise SystemExit("--peer librosa runs cedar-asr only")
        front_end = LibrosaCedarFrontEnd()
    else:
        front_end = CedarFrontEnd() if args.workload == "cedar-asr" else FrontEnd()
    data = AudioFolder(args.data, front_end)
    loader = torch.utils.data.DataLoader(
        data, batch_size=args.batch, shuffle=True, num_workers=args.workers,
        collate_fn=pad_collate, persistent_workers=args.workers > 0,
        prefetch_factor=4 if args.workers > 0 else None)
    for _ in loader:  # warm-up epoch: workers start, kernels and plans are made
        pass
    files = 0
    start = time.perf_counter()
    for _ in range(args.epochs):
        for features, lengths, _ in loader:
            files += features.shape[0]
    seconds = time.perf_counter() - start
    print(json.dumps({
        "peer": (f"librosa {front_end.librosa.__version__}" if args.peer == "librosa"
                 else f"torchaudio {torchaudio.__version__}") + " + DataLoader",
        "workload": args.workload,
        "torch": torch.__version__, "workers": args.workers, "batch": args.batch,
        "files": files, "seconds": round(seconds, 3),
        "files_per_second": round(files / seconds, 1)}))


def read_npy(path):
    return np.load(path, allow_pickle=False)


def compare(args):
    features = read_npy(os.path.join(args.dump, "features.npy"))
    lengths = read_npy(os.path.join(args.dump, "lengths.npy"))
    with open(os.path.join(args.dump, "samples.txt")) as f:
        paths = [line.rstrip("\n") for line in f if line.strip()]
    front_end = FrontEnd()
    worst = {"max_abs": 0.0, "frames_differ": 0, "samples": len(paths)}
    errors = []
    for k, path in enumerate(paths):
        ours = features[k, :, : lengths[k]]
        theirs = front_end(*load_wav(path)).numpy()
        if theirs.shape != ours.shape:
            worst["frames_differ"] += 1
            continue
        err = float(np.abs(ours - theirs).max())
        errors.append(err)
        worst["max_abs"] = max(worst["max_abs"], err)
    worst["median_of_max_abs"] = float(np.median(errors)) if errors else None
    print(json.dumps(worst))
    return 0 if worst["frames_differ"] == 0 and worst["max_abs"] < args.tolerance else 1


def compare_cedar(args):
    """cedar-asr without its masks, sluice (Python package) against torchaudio, per file."""
    import tempfile

    import sluice
    from sluice import ops

    files = audio_files(args.data)[: args.files]
    listing = tempfile.NamedTemporaryFile("w", suffix=".csv", delete=False)
    listing.write("".join(f"{path},{label}\n" for path, label in files))
    listing.close()
    pipe = sluice.Pipeline(
        sluice.FileList(listing.name),
        ops=[ops.DecodeAudio(), ops.Resample(8000),
             ops.Spectrogram(n_fft=400, hop_length=100, power=None), ops.TimeStretch(0.8),
             ops.ComplexNorm(2.0), ops.MelScale(n_mels=256)],
        batch_size=1, threads=1)
    theirs_front = CedarFrontEnd(masks=False)
    worst = {"files": 0, "frames_differ": 0, "max_rel": 0.0}
    for (path, _), batch in zip(files, pipe.epoch(0)):
        ours = np.from_dlpack(batch["features"])[0, :, : int(np.from_dlpack(batch["lengths"])[0])]
        theirs = theirs_front(*load_wav(path)).numpy()
        worst["files"] += 1
        if ours.shape != theirs.shape:
            worst["frames_differ"] += 1
            continue
        scale = float(np.abs(theirs).max()) or 1.0
        worst["max_rel"] = max(worst["max_rel"], float(np.abs(ours - theirs).max()) / scale)
    print(json.dumps(worst))
    return 0 if worst["frames_differ"] == 0 and worst["max_rel"] < args.tolerance else 1


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("bench")
    b.add_argument("data")
    b.add_argument("--workload", choices=["asr-val", "cedar-asr"], default="asr-val")
    b.add_argument("--peer", choices=["torchaudio", "librosa"], default="torchaudio")
    b.add_argument("--workers", type=int, default=os.cpu_count())
    b.add_argument("--batch", type=int, default=32)
    b.add_argument("--epochs", type=int, default=2)
    c = sub.add_parser("compare")
    c.add_argument("dump")
    c.add_argument("--tolerance", type=float, default=1e-2)
    cc = sub.add_parser("compare-cedar")
    cc.add_argument("data")
    cc.add_argument("--files", type=int, default=16)
    cc.add_argument("--tolerance", type=float, default=1e-4)
    args = p.parse_args()
    return {"bench": bench, "compare": compare, "compare-cedar": compare_cedar}[args.cmd](args)


if __name__ == "__main__":
    sys.exit(main() or 0)
