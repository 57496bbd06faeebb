//! Shards on a real S3 server (moto's, started on 127.0.0.1 by the test, behind a proxy that
//! injects faults): uploaded through object_store, indexed by `sluice index`'s code, then read
//! by pattern and by manifest, without and with faults (503 bursts, bodies cut mid-way,
//! latency); the batches equal the local run's. Skips with a reason when `moto_server` is not installed
//! (`pip install "moto[server]"`), unless SLUICE_REQUIRE_S3 is set (CI).

mod common;

use common::http::{proxy, Faults};
use sluice::gen::{write_dataset, DatasetSpec};
use sluice::ops::{Normalize, RandomResizedCrop};
use sluice::source::shards::{
    open_shards, write_shards, IoConfig, Manifest, Object, ShardWriterSpec, WebDataset,
};
use sluice::source::{ImageFolder, Source};
use sluice::Pipeline;
use std::io::{Read, Write};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

struct Moto {
    child: Child,
    endpoint: String,
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_moto() -> Result<Moto, String> {
    let program = std::env::var("SLUICE_MOTO_SERVER").unwrap_or_else(|_| "moto_server".into());
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_err(|e| e.to_string())?
        .port();
    let child = Command::new(&program)
        .args(["-H", "127.0.0.1", "-p", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| {
            format!("no S3 server: cannot run `{program}` ({e}); pip install \"moto[server]\"")
        })?;
    let moto = Moto {
        child,
        endpoint: format!("http://127.0.0.1:{port}"),
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if Instant::now() > deadline {
            return Err(format!(
                "{program} did not listen on port {port} within 60 s"
            ));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(moto)
}

/// Create a bucket (moto accepts unsigned requests; object_store does not make buckets).
fn create_bucket(endpoint: &str, bucket: &str) {
    let mut conn = std::net::TcpStream::connect(endpoint.trim_start_matches("http://")).unwrap();
    let request = format!(
        "PUT /{bucket} HTTP/1.1\r\nHost: {}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        endpoint.trim_start_matches("http://")
    );
    conn.write_all(request.as_bytes()).unwrap();
    let mut answer = String::new();
    conn.read_to_string(&mut answer).unwrap();
    assert!(
        answer.starts_with("HTTP/1.1 200"),
        "create bucket: {answer}"
    );
}

fn batches(source: Arc<dyn Source>) -> Vec<(Vec<u8>, Vec<i64>, Vec<u64>)> {
    let p = Pipeline::builder_shared(source)
        .op(RandomResizedCrop::new(40))
        .op(Normalize::imagenet())
        .batch_size(8)
        .shuffle(true)
        .shard_window(2)
        .seed(3)
        .threads(2)
        .build()
        .unwrap();
    p.epoch(1)
        .unwrap()
        .map(|b| {
            let b = b.unwrap();
            (
                b.bytes().to_vec(),
                b.labels.clone(),
                b.sample_indices.clone(),
            )
        })
        .collect()
}

/// The longest sample's bytes.
fn max_sample(source: &WebDataset) -> u64 {
    (0..source.len() as u64)
        .map(|i| source.length_hint(i).unwrap())
        .max()
        .unwrap()
}

#[test]
fn shards_on_s3_give_the_local_batches() {
    let Some(moto) = common::or_skip(start_moto(), "SLUICE_REQUIRE_S3") else {
        return;
    };
    // Every request goes through the proxy; its faults are off while the data is uploaded.
    let front = proxy(&moto.endpoint, Faults::default());
    // This test binary holds this one test: setting the environment races with nothing.
    for (k, v) in [
        ("AWS_ENDPOINT_URL", front.url.as_str()),
        ("AWS_ACCESS_KEY_ID", "testing"),
        ("AWS_SECRET_ACCESS_KEY", "testing"),
        ("AWS_REGION", "us-east-1"),
        ("AWS_ALLOW_HTTP", "true"),
    ] {
        std::env::set_var(k, v);
    }
    create_bucket(&moto.endpoint, "data");

    let dir = tempfile::tempdir().unwrap();
    let spec = DatasetSpec {
        images: 48,
        classes: 4,
        ..DatasetSpec::default()
    };
    write_dataset(&dir.path().join("folder"), &spec, &|_| {}).unwrap();
    let folder = ImageFolder::open(dir.path().join("folder")).unwrap();
    let shards_dir = dir.path().join("shards");
    let writer = ShardWriterSpec {
        shard_bytes: 48 << 10,
        prefix: "train".into(),
    };
    let shards = write_shards(&folder, &shards_dir, &writer, &|_| {}).unwrap();
    let config = Arc::new(IoConfig::default());
    let mut urls = Vec::new();
    for path in &shards {
        let name = path.file_name().unwrap().to_string_lossy();
        let url = format!("s3://data/train/{name}");
        Object::open(&url, &config)
            .unwrap()
            .write_all(std::fs::read(path).unwrap())
            .unwrap();
        urls.push(url);
    }
    let local: Arc<dyn Source> =
        Arc::new(open_shards(&shards_dir.display().to_string(), IoConfig::default()).unwrap());
    let want = batches(local);

    // By pattern (each shard scanned whole), then through a manifest stored beside them.
    let pattern = format!(
        "s3://data/train/train-{{000000..{:06}}}.tar",
        shards.len() - 1
    );
    let scanned = Arc::new(open_shards(&pattern, IoConfig::default()).unwrap());
    assert_eq!(batches(scanned), want, "S3 by pattern");
    let manifest = Manifest::build(&urls, &config, &|_| {}).unwrap();
    manifest
        .save("s3://data/train/sluice-index.json", &config)
        .unwrap();
    let indexed =
        WebDataset::from_manifest("s3://data/train/sluice-index.json", IoConfig::default())
            .unwrap();
    let indexed = Arc::new(indexed);
    assert_eq!(batches(indexed.clone()), want, "S3 by manifest");
    let (requests, bytes) = indexed.io_counts();
    let total: u64 = shards
        .iter()
        .map(|p| std::fs::metadata(p).unwrap().len())
        .sum();
    eprintln!("S3: {requests} range requests, {bytes} of {total} shard bytes");
    assert!(
        (requests as usize) < folder.len(),
        "neighbouring samples are fetched together ({requests} requests for {} samples)",
        folder.len()
    );

    // Faults between client and store: retried, the same batches, no sample lost or doubled.
    front.set_faults(Faults {
        fail_every: 4,
        cut_every: 3,
        delay: Duration::from_millis(3),
    });
    let failures = front.failures.load(std::sync::atomic::Ordering::SeqCst);
    let io = || IoConfig {
        backoff: Duration::from_millis(1),
        window_bytes: 40 << 10, // a few samples: many requests, so many faults
        // Half of all requests fail (every 3rd and 4th, counted over concurrent requests), so
        // a request's six default retries can all land on faults now and then (seen once in
        // CI): twelve make that ~1e-4 per request without making the faults rarer.
        retries: 12,
        ..IoConfig::default()
    };
    let faulty = WebDataset::from_manifest("s3://data/train/sluice-index.json", io()).unwrap();
    let faulty = Arc::new(faulty);
    assert_eq!(batches(faulty.clone()), want, "S3 through faults");
    let injected = front.failures.load(std::sync::atomic::Ordering::SeqCst) - failures;
    eprintln!("S3 through faults: {injected} faults injected and retried");
    assert!(injected > 3, "faults were injected ({injected})");
    assert!(faulty.peak_read_ahead_bytes() <= (40 << 10) + max_sample(&faulty));
    front.set_faults(Faults::default());

    // A changed object is refused, not read: the manifest's ETag no longer matches.
    Object::open(&urls[0], &config)
        .unwrap()
        .write_all(std::fs::read(&shards[1]).unwrap())
        .unwrap();
    let stale = WebDataset::from_manifest("s3://data/train/sluice-index.json", IoConfig::default())
        .unwrap();
    let err = stale.read(0, &mut Vec::new()).unwrap_err().to_string();
    eprintln!("changed object: {err}");
    assert!(
        err.contains("train-000000.tar") && err.contains("precondition"),
        "{err}"
    );
}
