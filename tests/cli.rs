//! The `sluice` binary end to end: gen-data, then bench with JSON output; the checksum must not
//! depend on the thread count.

mod common;

use std::process::Command;

fn sluice(args: &[&str]) -> std::process::Output {
    let out = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(args)
        .output()
        .expect("run sluice");
    assert!(
        out.status.success(),
        "sluice {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// `n` generated speech files in 2 classes under `dir`.
fn gen_audio(dir: &std::path::Path, n: usize) {
    let n = n.to_string();
    let args = [
        "gen-data",
        dir.to_str().unwrap(),
        "--kind",
        "audio",
        "--n",
        &n,
    ];
    sluice(&[&args[..], &["--classes", "2"]].concat());
}

fn bench_json(data: &str, workload: &str, threads: &str) -> serde_json::Value {
    let out = sluice(&[
        "bench",
        workload,
        "--data",
        data,
        "--threads",
        threads,
        "--batch",
        "4",
        "--epochs",
        "2",
        "--json",
    ]);
    serde_json::from_slice(&out.stdout).expect("bench --json prints JSON")
}

#[test]
fn bench_reports_the_same_checksum_for_any_thread_count() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let data = data.to_str().unwrap();
    sluice(&["gen-data", data, "--n", "10", "--classes", "2"]);
    for workload in ["rn50-train", "simclr", "rn50-val", "decode-only"] {
        let one = bench_json(data, workload, "1");
        let three = bench_json(data, workload, "3");
        assert_eq!(one["images"], 20, "{workload}: 10 images x 2 epochs");
        assert_eq!(one["checksum"], three["checksum"], "{workload}");
        assert!(one["images_per_second"].as_f64().unwrap() > 0.0);
        let stages = one["stages"].as_array().unwrap();
        assert_eq!(stages[1]["name"], "DecodeImage");
        assert_eq!(stages[1]["calls"], 20);
    }
}

#[test]
fn unknown_workload_is_a_clear_error() {
    let out = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["bench", "resnet9000"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("unknown workload") && err.contains("rn50-train"),
        "{err}"
    );
}

#[test]
fn train_step_stall_and_chart() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let chart = dir.path().join("run.svg");
    let data = data.to_str().unwrap();
    sluice(&["gen-data", data, "--n", "8", "--classes", "2"]);
    let out = sluice(&[
        "bench",
        "rn50-train",
        "--data",
        data,
        "--batch",
        "2",
        "--epochs",
        "2",
        "--train-step-ms",
        "5",
        "--chart",
        chart.to_str().unwrap(),
        "--json",
    ]);
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["train_step_ms"], 5.0);
    let stall = report["stall_fraction"].as_f64().unwrap();
    assert!((0.0..=1.0).contains(&stall), "{stall}");
    assert_eq!(report["warmup_batches"], 4, "warm-up is the first epoch");
    let timeline = report["timeline"].as_array().unwrap();
    assert!(!timeline.is_empty() && timeline.len() <= 40);
    let svg = std::fs::read_to_string(&chart).unwrap();
    assert!(
        svg.starts_with("<svg") && svg.contains("DecodeImage [cpu]") && svg.contains("polyline")
    );

    let png = dir.path().join("run.png");
    sluice(&[
        "bench",
        "rn50-val",
        "--data",
        data,
        "--chart",
        png.to_str().unwrap(),
    ]);
    let bytes = std::fs::read(&png).unwrap();
    assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n");

    let bad = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["bench", "rn50-train", "--data", data, "--chart", "x.gif"])
        .output()
        .unwrap();
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("*.svg or *.png"));
}

/// Whether a wgpu adapter opens (else "skipped: <reason>"; a failure under SLUICE_REQUIRE_WGPU).
fn wgpu_or_skip() -> bool {
    common::or_skip(
        sluice::backend::wgpu::WgpuContext::new(),
        "SLUICE_REQUIRE_WGPU",
    )
    .is_some()
}

#[test]
fn bench_with_the_wgpu_backend_verifies_against_the_cpu() {
    if !wgpu_or_skip() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let data = data.to_str().unwrap();
    sluice(&["gen-data", data, "--n", "12", "--classes", "2"]);
    let cpu = bench_json(data, "simclr", "2");
    let out = sluice(&[
        "bench",
        "simclr",
        "--data",
        data,
        "--threads",
        "2",
        "--batch",
        "4",
        "--epochs",
        "2",
        "--backend",
        "wgpu",
        "--verify",
        "--json",
    ]);
    let gpu: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let verify = &gpu["verify"];
    assert_eq!(verify["pass"], true, "{verify}");
    assert_eq!(verify["batches"], 6);
    assert!(gpu["placement"]
        .as_str()
        .unwrap()
        .contains("from RandomResizedCrop on"));
    let stages = gpu["stages"].as_array().unwrap();
    assert!(stages.last().unwrap()["name"]
        .as_str()
        .unwrap()
        .starts_with("wgpu: "));
    // Exact kernels on these images: the same bytes as the CPU run.
    if verify["max_abs_error"] == 0.0 {
        assert_eq!(gpu["checksum"], cpu["checksum"]);
    }
}

#[test]
fn bench_verify_fails_with_exit_status_1_on_a_wrong_gpu_result() {
    if !wgpu_or_skip() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let data = data.to_str().unwrap();
    sluice(&["gen-data", data, "--n", "8", "--classes", "2"]);
    let run = |fault: Option<&str>| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_sluice"));
        cmd.args([
            "bench",
            "rn50-train",
            "--data",
            data,
            "--threads",
            "2",
            "--batch",
            "4",
            "--epochs",
            "1",
            "--backend",
            "wgpu",
            "--verify",
            "--json",
        ]);
        if let Some(f) = fault {
            cmd.env("SLUICE_FAULT", f);
        }
        cmd.output().unwrap()
    };
    // One wrong value (NaN) per batch of 4×3×224×224: far under 0.5% of values, still a failure.
    let out = run(Some("gpu-output"));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("verify failed"), "{stderr}");
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["verify"]["pass"], false, "{}", report["verify"]);
    // The same run without the fault passes.
    let out = run(None);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn explain_places_simclr_by_the_profile_and_bench_optimize_predicts() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let data = data.to_str().unwrap();
    sluice(&["gen-data", data, "--n", "8", "--classes", "2"]);
    let root = env!("CARGO_MANIFEST_DIR");
    let explain = |profile: &str| {
        let path = format!("{root}/docs/profiles/{profile}");
        let out = sluice(&["explain", "simclr", "--data", data, "--profile", &path]);
        String::from_utf8(out.stdout).unwrap()
    };
    let fast = explain("h100-simclr.json");
    let gpu_line = fast.lines().find(|l| l.contains("[gpu]")).expect(&fast);
    assert!(gpu_line.contains("ColorJitter") && gpu_line.contains("GaussianBlur"));
    assert!(fast.contains("decoded u8 images cross") || fast.contains("'s output cross"));
    let cpu = explain("cpu-simclr.json");
    assert!(!cpu.contains("[gpu]"), "{cpu}");
    assert!(
        cpu.contains("RandomHorizontalFlip+Normalize (fused)"),
        "{cpu}"
    );

    let out = sluice(&[
        "bench",
        "simclr",
        "--data",
        data,
        "--batch",
        "4",
        "--epochs",
        "1",
        "--optimize",
        "--json",
    ]);
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(report["predicted"]["images_per_second"].as_f64().unwrap() > 0.0);
    assert!(report["plan"]
        .as_str()
        .unwrap()
        .contains("RandomHorizontalFlip+Normalize"));
}

/// The shape in an NPY header, and the data after it.
fn npy(path: &std::path::Path) -> (String, Vec<usize>, Vec<u8>) {
    let bytes = std::fs::read(path).unwrap();
    assert_eq!(&bytes[..8], b"\x93NUMPY\x01\x00", "{}", path.display());
    let len = u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
    let header = std::str::from_utf8(&bytes[10..10 + len])
        .unwrap()
        .to_string();
    let dims = header
        .split("'shape': (")
        .nth(1)
        .unwrap()
        .split(')')
        .next()
        .unwrap();
    let shape = dims
        .split(',')
        .filter(|d| !d.trim().is_empty())
        .map(|d| d.trim().parse().unwrap())
        .collect();
    let descr = header
        .split("'descr': '")
        .nth(1)
        .unwrap()
        .split('\'')
        .next()
        .unwrap();
    (descr.to_string(), shape, bytes[10 + len..].to_vec())
}

#[test]
fn bench_dump_writes_the_first_batch_as_npy_and_sample_paths() {
    let dir = tempfile::tempdir().unwrap();
    let images = dir.path().join("images");
    let audio = dir.path().join("audio");
    sluice(&[
        "gen-data",
        images.to_str().unwrap(),
        "--n",
        "6",
        "--classes",
        "2",
    ]);
    gen_audio(&audio, 5);
    let dump = |workload: &str, data: &std::path::Path, out: &str| {
        let out = dir.path().join(out);
        sluice(&[
            "bench",
            workload,
            "--data",
            data.to_str().unwrap(),
            "--batch",
            "4",
            "--epochs",
            "1",
            "--threads",
            "2",
            "--dump",
            out.to_str().unwrap(),
        ]);
        out
    };
    let out = dump("rn50-val", &images, "rn50");
    let (descr, shape, data) = npy(&out.join("images.npy"));
    assert_eq!(
        (descr.as_str(), shape.as_slice()),
        ("<f4", &[4, 3, 224, 224][..])
    );
    assert_eq!(data.len(), 4 * 3 * 224 * 224 * 4);
    let (_, labels_shape, _) = npy(&out.join("labels.npy"));
    assert_eq!(labels_shape, [4]);
    let samples = std::fs::read_to_string(out.join("samples.txt")).unwrap();
    assert_eq!(samples.lines().count(), 4);
    assert!(samples
        .lines()
        .all(|l| l.ends_with(".jpg") && std::path::Path::new(l).exists()));

    let out = dump("asr-val", &audio, "asr");
    let (descr, shape, _) = npy(&out.join("features.npy"));
    assert_eq!(
        (descr.as_str(), shape.len(), shape[0], shape[1]),
        ("<f4", 3, 4, 80)
    );
    let (descr, lengths_shape, lengths) = npy(&out.join("lengths.npy"));
    assert_eq!(
        (descr.as_str(), lengths_shape.as_slice()),
        ("<i8", &[4][..])
    );
    let lengths: Vec<i64> = lengths
        .chunks_exact(8)
        .map(|b| i64::from_le_bytes(b.try_into().unwrap()))
        .collect();
    assert_eq!(
        *lengths.iter().max().unwrap() as usize,
        shape[2],
        "padded to the longest"
    );
    let samples = std::fs::read_to_string(out.join("samples.txt")).unwrap();
    assert!(
        samples
            .lines()
            .all(|l| l.ends_with(".wav") || l.ends_with(".flac")),
        "{samples}"
    );
}

#[test]
fn bench_on_a_manifest_reports_audio_seconds_and_dumps_transcripts() {
    let dir = tempfile::tempdir().unwrap();
    let audio = dir.path().join("audio");
    gen_audio(&audio, 5);
    // A manifest over the generated files with a transcript each (commas and quotes too).
    let folder = sluice::source::AudioFolder::open(&audio).unwrap();
    let mut manifest = String::new();
    let mut seconds = 0.0;
    for i in 0..5u64 {
        let path = sluice::source::Source::origin(&folder, i);
        let bytes = std::fs::read(&path).unwrap();
        seconds += sluice::audio::decode_audio(bytes, &Default::default(), Default::default())
            .unwrap()
            .seconds();
        let text = format!("file {i}, \"quoted\"");
        manifest += &serde_json::json!({"audio_filepath": path, "text": text}).to_string();
        manifest.push('\n');
    }
    let list = dir.path().join("train.jsonl");
    std::fs::write(&list, manifest).unwrap();
    let out = dir.path().join("dump");
    let run = sluice(&[
        "bench",
        "asr-val",
        "--data",
        list.to_str().unwrap(),
        "--batch",
        "4",
        "--epochs",
        "2",
        "--threads",
        "2",
        "--pad-multiple",
        "8",
        "--json",
        "--dump",
        out.to_str().unwrap(),
    ]);
    let report: serde_json::Value = serde_json::from_slice(&run.stdout).unwrap();
    let rate = report["audio_seconds_per_second"].as_f64().unwrap();
    let wall = report["wall_seconds"].as_f64().unwrap();
    assert!(
        (rate * wall - 2.0 * seconds).abs() < 1e-3,
        "{rate} s/s over {wall} s, for two epochs of {seconds} s"
    );
    assert!(report["plan"].as_str().unwrap().contains("multiple of 8"));
    let (_, shape, _) = npy(&out.join("features.npy"));
    assert_eq!(shape[2] % 8, 0, "{shape:?}");
    let samples = std::fs::read_to_string(out.join("samples.txt")).unwrap();
    let texts: Vec<String> =
        serde_json::from_str(&std::fs::read_to_string(out.join("text.json")).unwrap()).unwrap();
    assert_eq!(texts.len(), 4);
    for (path, text) in samples.lines().zip(&texts) {
        let i = (0..5u64)
            .find(|&i| sluice::source::Source::origin(&folder, i) == path)
            .unwrap();
        assert_eq!(text, &format!("file {i}, \"quoted\""));
    }
    // Image workloads report no audio rate.
    let images = dir.path().join("images");
    sluice(&["gen-data", images.to_str().unwrap(), "--n", "4"]);
    let report = bench_json(images.to_str().unwrap(), "rn50-val", "1");
    assert!(report["audio_seconds_per_second"].is_null());
}

/// `explain` (and `bench --optimize`) profile the text pipeline that will run: with
/// `--embeddings`, the lookup's bytes are the given table's width, not the default 768.
#[test]
fn explain_profiles_the_given_embedding_table() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("text");
    sluice(&[
        "gen-data",
        data.to_str().unwrap(),
        "--kind",
        "text",
        "--n",
        "12",
    ]);
    // A [50257, 4] f32 table as NPY (version 1.0 header, padded to 64 bytes).
    let (rows, dim) = (50257usize, 4usize);
    let mut header =
        format!("{{'descr': '<f4', 'fortran_order': False, 'shape': ({rows}, {dim}), }}");
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    let mut npy = b"\x93NUMPY\x01\x00".to_vec();
    npy.extend((header.len() as u16).to_le_bytes());
    npy.extend(header.as_bytes());
    npy.extend((0..rows * dim).flat_map(|i| (i as f32 * 1e-6).to_le_bytes()));
    let table = dir.path().join("table.npy");
    std::fs::write(&table, npy).unwrap();
    let saved = dir.path().join("profile.json");
    let corpus = data.join("corpus.txt");
    let out = sluice(&[
        "explain",
        "nlp",
        "--data",
        corpus.to_str().unwrap(),
        "--embeddings",
        table.to_str().unwrap(),
        "--save-profile",
        saved.to_str().unwrap(),
    ]);
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("EmbeddingLookup"), "{text}");
    let profile: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&saved).unwrap()).unwrap();
    let lookup = profile["ops"].as_array().unwrap().last().unwrap();
    let (bytes_in, bytes_out) = (
        lookup["bytes_in"].as_f64().unwrap(),
        lookup["bytes_out"].as_f64().unwrap(),
    );
    assert_eq!(bytes_out, bytes_in * dim as f64, "{lookup}");
}

/// `bench --json` over `data` with `extra` flags: (checksum, batch checksums).
fn bench_batches(data: &str, workload: &str, extra: &[&str]) -> (String, Vec<String>) {
    let base = [
        "bench", workload, "--data", data, "--batch", "4", "--epochs", "2", "--json",
    ];
    let out = sluice(&[&base[..], extra].concat());
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let batches = report["batch_checksums"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap().to_string())
        .collect();
    (report["checksum"].as_str().unwrap().to_string(), batches)
}

#[test]
fn shard_index_and_bench_on_shards_then_stop_and_resume() {
    let dir = tempfile::tempdir().unwrap();
    let path = |p: &str| dir.path().join(p).display().to_string();
    sluice(&["gen-data", &path("folder"), "--n", "21", "--classes", "3"]);
    sluice(&[
        "shard",
        &path("folder"),
        &path("shards"),
        "--shard-size",
        "20KiB",
    ]);
    // The shards hold the folder's samples in its order: the same batches.
    let (folder, _) = bench_batches(&path("folder"), "rn50-train", &[]);
    let (shards, _) = bench_batches(&path("shards"), "rn50-train", &[]);
    assert_eq!(folder, shards);
    // `index` rewrites the manifest; a pattern reads the shards without it.
    std::fs::remove_file(dir.path().join("shards/sluice-index.json")).unwrap();
    sluice(&["index", &path("shards")]);
    assert!(dir.path().join("shards/sluice-index.json").is_file());
    let count = std::fs::read_dir(dir.path().join("shards"))
        .unwrap()
        .count()
        - 1;
    let pattern = format!("{}/shard-{{000000..{:06}}}.tar", path("shards"), count - 1);
    assert_eq!(bench_batches(&pattern, "rn50-train", &[]).0, folder);

    // Stop mid-run with a state, resume: the rest of the uninterrupted run's batches.
    let share = ["--shard-window", "2", "--rank", "1", "--world", "2"];
    let (_, whole) = bench_batches(&path("shards"), "simclr", &share);
    assert_eq!(
        whole.len(),
        6,
        "11 positions a rank = 3 batches of 4, 2 epochs"
    );
    let state = path("state.json");
    let stop = [
        &share[..],
        &["--stop-after-batches", "4", "--save-state", &state],
    ]
    .concat();
    let (_, first) = bench_batches(&path("shards"), "simclr", &stop);
    assert_eq!(first, whole[..4]);
    let resume = [&share[..], &["--resume", &state]].concat();
    let (_, rest) = bench_batches(&path("shards"), "simclr", &resume);
    assert_eq!(rest, whole[4..]);
    // A state from another share is refused.
    let out = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["bench", "simclr", "--data", &path("shards"), "--batch", "4"])
        .args(["--epochs", "2", "--shard-window", "2", "--resume", &state])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("rank 1 of 2"));
}

#[test]
fn audio_and_text_shards_deliver_their_sources_batches_and_resume() {
    let dir = tempfile::tempdir().unwrap();
    let path = |p: &str| dir.path().join(p).display().to_string();
    gen_audio(&dir.path().join("speech"), 10);
    let (speech, speech_shards) = (path("speech"), path("speech-shards"));
    sluice(&[
        "shard",
        &speech,
        &speech_shards,
        "--kind",
        "audio",
        "--shard-size",
        "64KiB",
    ]);
    let (folder, _) = bench_batches(&path("speech"), "asr", &[]);
    let (shards, _) = bench_batches(&path("speech-shards"), "asr", &[]);
    assert_eq!(folder, shards, "asr: audio shards vs the folder");

    sluice(&["gen-data", &path("text"), "--kind", "text", "--n", "60"]);
    let corpus = path("text/corpus.txt");
    let text_shards = path("text-shards");
    sluice(&[
        "shard",
        &corpus,
        &text_shards,
        "--kind",
        "text",
        "--shard-size",
        "8KiB",
    ]);
    for workload in ["nlp", "gpt-pack", "bert-mlm"] {
        let (lines, _) = bench_batches(&corpus, workload, &[]);
        let (shards, _) = bench_batches(&path("text-shards"), workload, &[]);
        assert_eq!(lines, shards, "{workload}: text shards vs the text file");
    }
    // Stop and resume on text shards, with I/O settings given.
    let io = [
        "--shard-window",
        "2",
        "--io-window",
        "1MiB",
        "--io-retries",
        "1",
    ];
    let (_, whole) = bench_batches(&path("text-shards"), "bert-mlm", &io);
    let state = path("state.json");
    let stop = [
        &io[..],
        &["--stop-after-batches", "5", "--save-state", &state],
    ]
    .concat();
    let (_, first) = bench_batches(&path("text-shards"), "bert-mlm", &stop);
    assert_eq!(first, whole[..5]);
    let resume = [&io[..], &["--resume", &state]].concat();
    let (_, rest) = bench_batches(&path("text-shards"), "bert-mlm", &resume);
    assert_eq!(rest, whole[5..]);
    // Bad I/O settings are refused before anything runs.
    let out = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args([
            "bench",
            "nlp",
            "--data",
            &path("text-shards"),
            "--io-window",
            "0",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("size `0`"));
}
