"""Shared fixtures: the generated dataset, a dataset with bad files, and the sluice CLI."""

import os
import pathlib
import shutil

import pytest

import sluice

REPO = pathlib.Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def data():
    """64 generated JPEGs in 10 classes (the dataset `sluice bench --images 64` uses)."""
    return sluice.generated_dataset(images=64)


@pytest.fixture(scope="session")
def sluice_bin():
    """The `sluice` command built from this checkout (SLUICE_BIN overrides)."""
    path = pathlib.Path(os.environ.get("SLUICE_BIN", REPO / "target" / "release" / "sluice"))
    if not path.is_file():
        pytest.fail(f"{path} is missing: run `cargo build --release` first (or set SLUICE_BIN)")
    return path


@pytest.fixture()
def bad_data(tmp_path, data):
    """A copy of the first 20 generated images plus a corrupt JPEG, an empty file and a
    text file, as an ImageFolder; returns (root, {bad file name})."""
    root = tmp_path / "bad"
    for cls in sorted(pathlib.Path(data).iterdir()):
        if cls.is_dir():
            (root / cls.name).mkdir(parents=True)
    good = sorted(pathlib.Path(data).glob("*/*.jpg"))[:20]
    for f in good:
        shutil.copy(f, root / f.parent.name / f.name)
    first = sorted(p for p in root.iterdir())[0]
    (first / "truncated.jpg").write_bytes(good[0].read_bytes()[:300])
    (first / "empty.jpg").write_bytes(b"")
    (first / "notes.png").write_bytes(b"this is not an image\n")
    return root, {"truncated.jpg", "empty.jpg", "notes.png"}
