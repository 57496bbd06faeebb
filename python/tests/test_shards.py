"""Sharded data from Python: WebDataset shards written by `sluice shard` give the same batches
as the folder, ranks split epochs evenly, and state_dict resumes byte for byte (and refuses
another rank's or another pipeline's state)."""

import subprocess

import pytest

import sluice
from sluice import ops


def _shards(tmp_path, data, sluice_bin):
    out = tmp_path / "shards"
    subprocess.run(
        [str(sluice_bin), "shard", str(data), str(out), "--shard-size", "60KiB"],
        check=True,
        capture_output=True,
    )
    return out


def _pipeline(source, **kw):
    augment = [ops.RandomResizedCrop(32), ops.RandomHorizontalFlip(), ops.Normalize.imagenet()]
    return sluice.Pipeline(source, augment, batch_size=8, shuffle=True, seed=5, threads=2, **kw)


def _digest(batch):
    import numpy as np

    return np.from_dlpack(batch["images"]).tobytes(), np.from_dlpack(batch["indices"]).tolist()


def test_shards_equal_the_folder_and_ranks_cover_the_epoch(tmp_path, data, sluice_bin):
    shards = _shards(tmp_path, data, sluice_bin)
    source = sluice.Shards(str(shards))
    assert len(source) == 64 and source.num_shards > 3
    want = [_digest(b) for b in _pipeline(str(data)).epoch(1)]
    assert [_digest(b) for b in _pipeline(source).epoch(1)] == want
    # A path string opens as shards too.
    assert [_digest(b) for b in _pipeline(str(shards)).epoch(1)] == want

    for world in (1, 3, 5):
        seen, counts = [], []
        for rank in range(world):
            p = _pipeline(source, shard_window=2, rank=rank, world=world, uneven="drop")
            got = [_digest(b)[1] for b in p.epoch(0)]
            counts.append(len(got))
            seen += [i for idx in got for i in idx]
        assert len(set(counts)) == 1, counts
        assert len(seen) == len(set(seen)) == 64 // world * world


def test_state_dict_resumes_shards_and_refuses_another_rank(tmp_path, data, sluice_bin):
    source = sluice.Shards(str(_shards(tmp_path, data, sluice_bin)))
    make = lambda rank: _pipeline(source, shard_window=3, rank=rank, world=2)  # noqa: E731
    whole = [_digest(b) for b in make(1).epoch(0)]
    p = make(1)
    it = p.epoch(0)
    first = [_digest(next(it)) for _ in range(2)]
    state = p.state_dict()
    assert state["position"] == 2 and state["rank"] == 1 and state["world"] == 2
    assert len(state["fingerprint"]) == 16
    it.close()
    resumed = make(1)
    resumed.load_state_dict(state)
    assert first + [_digest(b) for b in resumed.epoch(0)] == whole
    with pytest.raises(ValueError, match="rank 1 of 2"):
        make(0).load_state_dict(state)
    other = _pipeline(source, shard_window=2, rank=1, world=2)
    with pytest.raises(ValueError, match="fingerprint"):
        other.load_state_dict(state)
    with pytest.raises(ValueError, match="uneven"):
        _pipeline(source, uneven="pad")


def test_io_settings_are_taken_checked_and_pickled(tmp_path, data, sluice_bin):
    import pickle

    shards = str(_shards(tmp_path, data, sluice_bin))
    s = sluice.Shards(shards, window="1MiB", concurrency=4, retries=2, timeout=5)
    assert s.io_config == {"window": 1 << 20, "concurrency": 4, "retries": 2, "timeout": 5.0}
    assert sluice.Shards(shards).io_config == {
        "window": 256 << 20,
        "concurrency": 16,
        "retries": 6,
        "timeout": 30.0,
    }
    assert sluice.Shards(shards, window=4096).io_config["window"] == 4096
    assert s.peak_read_ahead_bytes == 0, "local shards are read directly"
    copy = pickle.loads(pickle.dumps(s))
    assert copy.io_config == s.io_config and len(copy) == len(s)
    with pytest.raises(ValueError, match="window"):
        sluice.Shards(shards, window="12 parsecs")
    with pytest.raises(ValueError, match="window"):
        sluice.Shards(shards, window=0)
    with pytest.raises(ValueError, match="concurrency"):
        sluice.Shards(shards, concurrency=0)
    with pytest.raises(ValueError, match="timeout"):
        sluice.Shards(shards, timeout=-1.0)
