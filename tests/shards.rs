//! Sharded data: WebDataset shards written from an ImageFolder give the same batches as the
//! folder; ranks cover every epoch exactly once; a saved state resumes byte for byte; remote
//! shards over HTTP (with injected faults) and S3 equal the local run; malformed tars are
//! refused with errors naming shard and member.

mod common;

use common::http::{serve, Faults};
use sluice::gen::{write_dataset, DatasetSpec};
use sluice::ops::{CenterCrop, Normalize, RandomHorizontalFlip, RandomResizedCrop};
use sluice::rng::Uneven;
use sluice::source::shards::{
    open_shards, write_shards, IoConfig, Manifest, ShardWriterSpec, WebDataset,
};
use sluice::source::{ImageFolder, Source};
use sluice::{Pipeline, PipelineBuilder};
use std::path::Path;
use std::sync::Arc;

type Batches = Vec<(Vec<u8>, Vec<i64>, Vec<u64>)>;

/// A small ImageFolder and its shards (a few samples each, so there are many shards).
fn dataset(dir: &Path, images: usize) -> (ImageFolder, std::path::PathBuf) {
    let spec = DatasetSpec {
        images,
        classes: 3,
        ..DatasetSpec::default()
    };
    write_dataset(&dir.join("folder"), &spec, &|_| {}).unwrap();
    let folder = ImageFolder::open(dir.join("folder")).unwrap();
    let shard_spec = ShardWriterSpec {
        shard_bytes: 40 << 10,
        prefix: "train".into(),
    };
    let shards = dir.join("shards");
    write_shards(&folder, &shards, &shard_spec, &|_| {}).unwrap();
    (folder, shards)
}

fn augment(b: PipelineBuilder) -> PipelineBuilder {
    b.op(RandomResizedCrop::new(48))
        .op(RandomHorizontalFlip::new(0.5))
        .op(Normalize::imagenet())
        .batch_size(8)
        .shuffle(true)
        .seed(11)
        .threads(2)
}

fn batches(iter: sluice::exec::EpochIter) -> Batches {
    iter.map(|b| {
        let b = b.unwrap();
        (
            b.bytes().to_vec(),
            b.labels.clone(),
            b.sample_indices.clone(),
        )
    })
    .collect()
}

fn run(
    source: Arc<dyn Source>,
    epoch: u32,
    tune: impl Fn(PipelineBuilder) -> PipelineBuilder,
) -> Batches {
    let p = tune(augment(Pipeline::builder_shared(source)))
        .build()
        .unwrap();
    batches(p.epoch(epoch).unwrap())
}

#[test]
fn local_shards_deliver_the_image_folders_batches() {
    let dir = tempfile::tempdir().unwrap();
    let (folder, shards) = dataset(dir.path(), 40);
    let shards_src = open_shards(&shards.display().to_string(), IoConfig::default()).unwrap();
    assert!(
        shards_src.shard_starts().unwrap().len() > 3,
        "several shards"
    );
    assert_eq!(shards_src.len(), folder.len());
    for i in 0..folder.len() as u64 {
        assert_eq!(shards_src.label(i), folder.label(i));
    }
    let want = run(Arc::new(folder), 1, |b| b);
    assert_eq!(run(Arc::new(shards_src), 1, |b| b), want);
    // Scanning the shards (no manifest) gives the same dataset as the manifest.
    let pattern = format!("{}/train-{{000000..000002}}.tar", shards.display());
    let scanned = open_shards(&pattern, IoConfig::default()).unwrap();
    let listed = Manifest::load(
        &shards.join("sluice-index.json").display().to_string(),
        &Arc::new(IoConfig::default()),
    )
    .unwrap();
    let first_three: u64 = listed.shards[..3]
        .iter()
        .map(|s| s.samples.len() as u64)
        .sum();
    assert_eq!(scanned.len() as u64, first_three);
}

#[test]
fn shard_windows_shuffle_within_windows_and_ranks_split_epochs_evenly() {
    let dir = tempfile::tempdir().unwrap();
    let (_, shards) = dataset(dir.path(), 37);
    let source: Arc<dyn Source> =
        Arc::new(open_shards(&shards.display().to_string(), IoConfig::default()).unwrap());
    let starts = source.shard_starts().unwrap().to_vec();
    let shard_of = |i: u64| starts.partition_point(|&s| s <= i) - 1;
    let order = sluice::rng::shard_window_order(&starts, 37, 2, 5, 0, true);
    let mut sorted = order.clone();
    sorted.sort();
    assert_eq!(sorted, (0..37).collect::<Vec<_>>(), "a permutation");
    // Each window holds the samples of two whole shards.
    let mut at = 0;
    while at < order.len() {
        let shard = shard_of(order[at]);
        let size = |s: usize| starts.get(s + 1).copied().unwrap_or(37) - starts[s];
        let window: std::collections::BTreeSet<usize> = order[at..]
            .iter()
            .take(size(shard) as usize)
            .map(|&i| shard_of(i))
            .collect();
        assert!(window.len() <= 2, "window mixes {window:?}");
        let partner = window.iter().copied().find(|&s| s != shard);
        at += (size(shard) + partner.map_or(0, size)) as usize;
    }

    for world in 1..=8 {
        for uneven in [Uneven::Wrap, Uneven::Drop] {
            let mut seen = Vec::new();
            let mut counts = Vec::new();
            for rank in 0..world {
                let got = run(source.clone(), 0, |b| {
                    b.shard_window(2).shard(rank, world).uneven(uneven)
                });
                counts.push(got.len());
                seen.extend(got.into_iter().flat_map(|(_, _, idx)| idx));
            }
            assert!(
                counts.windows(2).all(|w| w[0] == w[1]),
                "{world} ranks: {counts:?} batches"
            );
            let mut unique = seen.clone();
            unique.sort();
            unique.dedup();
            match uneven {
                Uneven::Wrap => {
                    assert_eq!(unique.len(), 37, "{world} ranks cover the epoch");
                    assert_eq!(seen.len(), 37usize.div_ceil(world) * world);
                }
                Uneven::Drop => {
                    assert_eq!(unique.len(), seen.len(), "no sample twice");
                    assert_eq!(seen.len(), 37 / world * world);
                }
            }
        }
    }
    // A sample's augmentation does not depend on the world size.
    let alone = run(source.clone(), 0, |b| b.shard_window(2).batch_size(1));
    let ranked = run(source.clone(), 0, |b| {
        b.shard_window(2).batch_size(1).shard(1, 3)
    });
    for (bytes, _, idx) in &ranked {
        let same = alone.iter().find(|(_, _, i)| i == idx).unwrap();
        assert_eq!(&same.0, bytes, "sample {idx:?}");
    }
}

#[test]
fn a_saved_state_resumes_byte_for_byte() {
    let dir = tempfile::tempdir().unwrap();
    let (_, shards) = dataset(dir.path(), 30);
    let source: Arc<dyn Source> =
        Arc::new(open_shards(&shards.display().to_string(), IoConfig::default()).unwrap());
    let build = || {
        augment(Pipeline::builder_shared(source.clone()))
            .shard_window(3)
            .shard(1, 2)
            .build()
            .unwrap()
    };
    let p = build();
    let whole = batches(p.epoch(2).unwrap());
    for stop in 0..=whole.len() {
        let mut it = p.epoch(2).unwrap();
        for _ in 0..stop {
            it.next().unwrap().unwrap();
        }
        let state = sluice::state::PipelineState::from_json(&it.state().to_json()).unwrap();
        assert_eq!((state.epoch, state.position), (2, stop as u64));
        drop(it);
        let resumed = batches(build().resume(&state).unwrap());
        assert_eq!(resumed, whole[stop..], "resumed after {stop} batches");
    }
    // Another declaration or other data is refused.
    let state = p.epoch(2).unwrap().state();
    let other = augment(Pipeline::builder_shared(source.clone()))
        .shard_window(2)
        .shard(1, 2)
        .build()
        .unwrap();
    let err = other.resume(&state).err().expect("refused").to_string();
    assert!(err.contains("fingerprint"), "{err}");
    // Approximate decode changes the pixels: an exact pipeline's state does not resume it.
    let approx = augment(Pipeline::builder_shared(source.clone()))
        .shard_window(3)
        .shard(1, 2)
        .allow_approx(true)
        .build()
        .unwrap();
    let err = approx.resume(&state).err().expect("refused").to_string();
    assert!(err.contains("fingerprint"), "{err}");
    let rank0 = augment(Pipeline::builder_shared(source.clone()))
        .shard_window(3)
        .shard(0, 2)
        .build()
        .unwrap();
    let err = rank0.resume(&state).err().expect("refused").to_string();
    assert!(err.contains("rank 1 of 2"), "{err}");
}

/// The shards served over HTTP, read through a manifest naming their URLs.
fn remote_manifest(shards: &Path, base: &str) -> String {
    let mut manifest = Manifest::load(
        &shards.join("sluice-index.json").display().to_string(),
        &Arc::new(IoConfig::default()),
    )
    .unwrap();
    for s in &mut manifest.shards {
        let name = Path::new(&s.url)
            .file_name()
            .unwrap()
            .to_string_lossy()
            .to_string();
        s.url = format!("{base}/{name}");
        s.etag = format!("\"{:x}\"", s.size); // the test server's tags
    }
    let path = shards.join("remote-index.json").display().to_string();
    manifest
        .save(&path, &Arc::new(IoConfig::default()))
        .unwrap();
    path
}

#[test]
fn shards_over_http_with_faults_equal_the_local_run() {
    let dir = tempfile::tempdir().unwrap();
    let (_, shards) = dataset(dir.path(), 40);
    let local: Arc<dyn Source> =
        Arc::new(open_shards(&shards.display().to_string(), IoConfig::default()).unwrap());
    let want = run(local, 0, |b| b.shard_window(2));
    let io = || IoConfig {
        backoff: std::time::Duration::from_millis(1),
        window_bytes: 64 << 10, // a few samples: the window is refilled many times
        ..IoConfig::default()
    };
    for faults in [
        Faults::default(),
        Faults {
            fail_every: 3,
            cut_every: 5,
            delay: std::time::Duration::from_millis(2),
        },
    ] {
        let faulty = faults.fail_every > 0;
        let server = serve(shards.clone(), faults);
        let manifest = remote_manifest(&shards, &server.url);
        let remote = WebDataset::from_manifest(&manifest, io()).unwrap();
        let (requests_before, _) = remote.io_counts();
        let remote = Arc::new(remote);
        let got = run(remote.clone(), 0, |b| b.shard_window(2));
        assert_eq!(got, want, "over HTTP (faults: {faulty})");
        let (requests, bytes) = remote.io_counts();
        assert!(requests > requests_before && bytes > 0);
        // Memory: the read-ahead never held more than its window (plus the one sample that
        // may overshoot it), however many shards the epoch read.
        let longest = (0..remote.len() as u64)
            .map(|i| remote.length_hint(i).unwrap())
            .max()
            .unwrap();
        let peak = remote.peak_read_ahead_bytes();
        assert!(
            peak > 0 && peak <= io().window_bytes + longest,
            "peak read-ahead {peak} bytes, window {}",
            io().window_bytes
        );
        if faulty {
            assert!(
                server.failures.load(std::sync::atomic::Ordering::SeqCst) > 0,
                "faults were injected"
            );
        }
        // Scanning remote shards by pattern reads them whole and finds the same samples.
        let pattern = format!("{}/train-{{000000..000001}}.tar", server.url);
        let scanned = open_shards(&pattern, io()).unwrap();
        let first_two = WebDataset::from_manifest(&manifest, io()).unwrap();
        let n = first_two.shard_starts().unwrap()[2];
        assert_eq!(scanned.len() as u64, n);
    }
    // A server that keeps failing: a clear error naming the shard and the byte range.
    let server = serve(
        shards.clone(),
        Faults {
            fail_every: 1,
            ..Faults::default()
        },
    );
    let manifest = remote_manifest(&shards, &server.url);
    let remote = WebDataset::from_manifest(&manifest, IoConfig { retries: 2, ..io() }).unwrap();
    let mut buf = Vec::new();
    let err = remote.read(0, &mut buf).unwrap_err().to_string();
    assert!(
        err.contains("train-000000.tar bytes") && err.contains("after 3 attempts"),
        "{err}"
    );
}

/// A tar with one member `name` of `data`, its header then edited by `edit`.
fn tar_with(name: &str, data: &[u8], edit: impl Fn(&mut Vec<u8>)) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_ustar();
    h.set_size(data.len() as u64);
    h.set_mode(0o644);
    b.append_data(&mut h, name, data).unwrap();
    let mut bytes = b.into_inner().unwrap();
    edit(&mut bytes);
    bytes
}

#[test]
fn malformed_shards_are_refused_naming_shard_and_member() {
    let dir = tempfile::tempdir().unwrap();
    let jpeg = common::jpeg_samples(1, 3).remove(0).0;
    let set_size = |bytes: &mut Vec<u8>, size: u64| {
        let mut h = tar::Header::new_ustar();
        h.as_mut_bytes().copy_from_slice(&bytes[..512]);
        h.set_size(size);
        h.set_cksum();
        bytes[..512].copy_from_slice(h.as_bytes());
    };
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("good", tar_with("a.jpg", &jpeg, |_| {}), ""),
        (
            "truncated",
            tar_with("a.jpg", &jpeg, |b| b.truncate(1024)),
            "truncated",
        ),
        (
            "cut at a member boundary",
            tar_with("a.jpg", &jpeg, |b| {
                b.truncate(512 + jpeg.len().div_ceil(512) * 512)
            }),
            "end-of-archive",
        ),
        (
            "bad checksum",
            tar_with("a.jpg", &jpeg, |b| b[0] = b'b'),
            "checksum",
        ),
        (
            "1 TB member",
            tar_with("a.jpg", &jpeg, |b| set_size(b, 1 << 40)),
            "claims 1099511627776 bytes",
        ),
        (
            "traversal",
            tar_with("a.jpg", &jpeg, |b| {
                // The tar crate refuses to write such a name: put it in the header by hand.
                b[..100].fill(0);
                b[..12].copy_from_slice(b"../etc/a.jpg");
                let mut h = tar::Header::new_ustar();
                h.as_mut_bytes().copy_from_slice(&b[..512]);
                h.set_cksum();
                b[..512].copy_from_slice(h.as_bytes());
            }),
            "`..` path",
        ),
        ("empty member", tar_with("a.jpg", b"", |_| {}), "is empty"),
        (
            "no image",
            tar_with("a.cls", b"3", |_| {}),
            "no data member",
        ),
        (
            "bad label",
            {
                let mut b = tar::Builder::new(Vec::new());
                for (name, data) in [("k.jpg", &jpeg[..]), ("k.cls", b"three")] {
                    let mut h = tar::Header::new_ustar();
                    h.set_size(data.len() as u64);
                    b.append_data(&mut h, name, data).unwrap();
                }
                b.into_inner().unwrap()
            },
            "not an integer",
        ),
        (
            "v7 header",
            tar_with("a.jpg", &jpeg, |b| {
                b[257..265].fill(0);
                let mut h = tar::Header::new_old();
                h.as_mut_bytes().copy_from_slice(&b[..512]);
                h.set_cksum();
                b[..512].copy_from_slice(h.as_bytes());
            }),
            "neither ustar",
        ),
    ];
    for (what, bytes, expect) in cases {
        let path = dir.path().join(format!("{}.tar", what.replace(' ', "_")));
        std::fs::write(&path, bytes).unwrap();
        let result = open_shards(&path.display().to_string(), IoConfig::default());
        match (result, expect) {
            (Ok(ds), "") => assert_eq!(ds.len(), 1, "{what}"),
            (Ok(_), _) => panic!("{what}: accepted"),
            (Err(e), _) => {
                let e = e.to_string();
                assert!(
                    e.contains(expect) && e.contains(&path.display().to_string()),
                    "{what}: {e}"
                );
                assert!(!expect.is_empty(), "{what}: {e}");
            }
        }
    }
}

#[test]
fn center_crop_workloads_read_shards_too() {
    // rn50-val's shape of pipeline (no randomness) over shards equals the folder's.
    let dir = tempfile::tempdir().unwrap();
    let (folder, shards) = dataset(dir.path(), 12);
    let val = |s: Arc<dyn Source>| {
        let p = Pipeline::builder_shared(s)
            .op(CenterCrop::new(32))
            .batch_size(5)
            .build()
            .unwrap();
        batches(p.epoch(0).unwrap())
    };
    let shards = open_shards(&shards.display().to_string(), IoConfig::default()).unwrap();
    assert_eq!(val(Arc::new(shards)), val(Arc::new(folder)));
}

/// Write `samples` (bytes, label) as an MDS dataset in `dir`: columns `label` (int) and `image`
/// (jpeg; after the label, so the data column is not the first), `per_shard` samples a shard.
fn write_mds(dir: &Path, samples: &[(Vec<u8>, i64)], per_shard: usize) {
    std::fs::create_dir_all(dir).unwrap();
    let mut shards = Vec::new();
    for (s, chunk) in samples.chunks(per_shard).enumerate() {
        let bodies: Vec<Vec<u8>> = chunk
            .iter()
            .map(|(bytes, label)| {
                // The variable column's size, then the columns in order.
                let mut b = (bytes.len() as u32).to_le_bytes().to_vec();
                b.extend(label.to_le_bytes());
                b.extend(bytes);
                b
            })
            .collect();
        let mut file = (chunk.len() as u32).to_le_bytes().to_vec();
        let mut at = 4 + 4 * (chunk.len() as u32 + 1);
        for b in &bodies {
            file.extend(at.to_le_bytes());
            at += b.len() as u32;
        }
        file.extend(at.to_le_bytes());
        bodies.iter().for_each(|b| file.extend(b));
        let name = format!("shard.{s:05}.mds");
        std::fs::write(dir.join(&name), &file).unwrap();
        shards.push(serde_json::json!({
            "column_encodings": ["int", "jpeg"], "column_names": ["label", "image"],
            "column_sizes": [8, null], "compression": null, "format": "mds", "hashes": [],
            "raw_data": {"basename": name, "bytes": file.len(), "hashes": {}},
            "samples": chunk.len(), "size_limit": 1 << 26, "version": 2, "zip_data": null
        }));
    }
    let index = serde_json::json!({"shards": shards, "version": 2});
    std::fs::write(dir.join("index.json"), index.to_string()).unwrap();
}

#[test]
fn mds_datasets_deliver_the_same_batches_and_refuse_bad_shards() {
    let dir = tempfile::tempdir().unwrap();
    let (folder, _) = dataset(dir.path(), 20);
    let mut samples = Vec::new();
    for i in 0..folder.len() as u64 {
        let mut buf = Vec::new();
        folder.read(i, &mut buf).unwrap();
        samples.push((buf, folder.label(i)));
    }
    let mds = dir.path().join("mds");
    write_mds(&mds, &samples, 6);
    let source = open_shards(&mds.display().to_string(), IoConfig::default()).unwrap();
    assert_eq!(source.shard_starts().unwrap(), [0, 6, 12, 18]);
    let want = run(Arc::new(folder), 0, |b| b);
    assert_eq!(run(Arc::new(source), 0, |b| b), want);

    // A shard cut short, and a compressed one, are refused naming the shard.
    let shard = mds.join("shard.00001.mds");
    let bytes = std::fs::read(&shard).unwrap();
    std::fs::write(&shard, &bytes[..bytes.len() - 10]).unwrap();
    let err = open_shards(&mds.display().to_string(), IoConfig::default())
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("shard.00001.mds") && err.contains("sample 5"),
        "{err}"
    );
    std::fs::write(&shard, &bytes).unwrap();
    let index = std::fs::read_to_string(mds.join("index.json")).unwrap();
    let zstd = index.replacen("\"compression\":null", "\"compression\":\"zstd\"", 1);
    std::fs::write(mds.join("index.json"), zstd).unwrap();
    let err = open_shards(
        &mds.join("index.json").display().to_string(),
        IoConfig::default(),
    )
    .err()
    .unwrap()
    .to_string();
    assert!(err.contains("compressed (zstd)"), "{err}");
}

/// Interleave the batches of `step` strided iterators back into epoch order.
fn interleave(parts: Vec<Batches>) -> Batches {
    let mut iters: Vec<_> = parts.into_iter().map(|p| p.into_iter()).collect();
    let mut out = Vec::new();
    'epoch: loop {
        for it in &mut iters {
            match it.next() {
                Some(b) => out.push(b),
                None => break 'epoch,
            }
        }
    }
    assert!(
        iters.iter_mut().all(|it| it.next().is_none()),
        "parts end together"
    );
    out
}

#[test]
fn an_epoch_split_by_batch_interleaves_back_into_the_whole_epoch() {
    let dir = tempfile::tempdir().unwrap();
    let (folder, shards) = dataset(dir.path(), 45); // 6 batches of 8, the last one short
    let folder: Arc<dyn Source> = Arc::new(folder);
    let pipeline = |source: Arc<dyn Source>| {
        let window = if source.shard_starts().is_some() {
            2
        } else {
            0
        };
        augment(Pipeline::builder_shared(source))
            .shard_window(window)
            .build()
            .unwrap()
    };
    let p = pipeline(folder.clone());
    let whole = batches(p.epoch(3).unwrap());
    assert_eq!(whole.len(), 6);
    for step in 1..=4u64 {
        let parts = (0..step)
            .map(|w| batches(p.epoch_strided(3, w, step).unwrap()))
            .collect();
        assert_eq!(interleave(parts), whole, "{step} iterators");
    }
    // Starting later (a worker redoing its batches after a restart) continues its stride.
    let tail = batches(p.epoch_strided(3, 4, 3).unwrap());
    assert_eq!(tail, vec![whole[4].clone()]);
    assert!(p.epoch_strided(3, 0, 0).is_err());

    // Remote shards: the same batches, and each iterator's read-ahead fetches only its own
    // batches' samples (one source per worker, so the counts are its own).
    let server = serve(shards.clone(), Faults::default());
    let manifest = remote_manifest(&shards, &server.url);
    let mut parts = Vec::new();
    let mut fetched = Vec::new();
    for w in 0..3 {
        let remote = Arc::new(WebDataset::from_manifest(&manifest, IoConfig::default()).unwrap());
        let local = shards.display().to_string();
        let p = pipeline(Arc::new(open_shards(&local, IoConfig::default()).unwrap()));
        let want_local = batches(p.epoch_strided(3, w, 3).unwrap());
        let got = batches(pipeline(remote.clone()).epoch_strided(3, w, 3).unwrap());
        assert_eq!(got, want_local);
        parts.push(got);
        fetched.push(remote.io_counts().1);
    }
    let local = open_shards(&shards.display().to_string(), IoConfig::default()).unwrap();
    let want = batches(pipeline(Arc::new(local)).epoch(3).unwrap());
    assert_eq!(interleave(parts), want, "remote, 3 iterators");
    let shard_bytes: u64 = std::fs::read_dir(&shards)
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().len())
        .sum();
    for (w, bytes) in fetched.iter().enumerate() {
        assert!(
            *bytes < shard_bytes * 2 / 3,
            "worker {w} fetched {bytes} of {shard_bytes} shard bytes"
        );
    }
}
