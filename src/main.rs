//! The `sluice` command: `bench` runs a built-in workload and reports its numbers; `gen-data`
//! writes the deterministic synthetic dataset the benchmarks and tests use.

use clap::{Args, Parser, Subcommand, ValueEnum};
use sluice::bench::{self, BenchOptions, Workload};
use sluice::gen::audio::{ensure_audio_dataset, write_audio_dataset, AudioDatasetSpec};
use sluice::gen::text::{ensure_text_corpus, write_text_corpus, TextCorpusSpec};
use sluice::gen::{ensure_dataset, write_dataset, DatasetSpec};
use sluice::optimizer::{profile, CostProfile, Goal};
use sluice::source::Source;
use sluice::{ErrorPolicy, Placement};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

#[derive(Parser)]
#[command(name = "sluice", version, about = "ML input-data pipeline runtime")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum Policy {
    Fail,
    Skip,
}

/// How the optimizer gets its numbers and what it may do.
#[derive(Args, Clone)]
struct PlanArgs {
    /// Cost profile (JSON, docs/COST_PROFILE.md); default: measured here, cached under
    /// target/sluice-profiles until the machine, dataset or pipeline changes
    #[arg(long)]
    profile: Option<PathBuf>,
    /// Memory the optimizer may use to cache decoded images across epochs, MiB
    #[arg(long, default_value_t = 0)]
    cache_budget_mib: usize,
    /// Allow rewrites that change values: reorders equal up to rounding (approximate
    /// commutations), and JPEG decode at 1/2, 1/4 or 1/8 scale (DCT-domain scaling) where the
    /// leading crop shrinks the image 2× or more
    #[arg(long)]
    allow_approx: bool,
}

/// Where text workloads get their tokenizer, embeddings and text.
#[derive(clap::Args)]
struct TextArgs {
    /// Text workloads: a tokenizer.json, a folder with encoder.json + vocab.bpe, or a built-in
    /// name: gpt2 or gpt2-mlm (GPT-2 + [CLS] [SEP] [PAD] [MASK]) (default: gpt2; bert-mlm:
    /// gpt2-mlm)
    #[arg(long)]
    tokenizer: Option<PathBuf>,
    /// Text workloads: the embedding table, .npy or .safetensors (default: random, sized to the
    /// tokenizer's vocabulary × 768)
    #[arg(long)]
    embeddings: Option<PathBuf>,
    /// Text workloads reading JSON lines: the field holding the text (default "text")
    #[arg(long)]
    text_field: Option<String>,
}

impl TextArgs {
    fn assets(&self, workload: bench::Workload) -> sluice::Result<bench::TextAssets> {
        let bad = sluice::Error::InvalidPipeline;
        let tokenizer = match &self.tokenizer {
            Some(p) => Some(
                sluice::text::TextTokenizer::open_or_builtin(&p.to_string_lossy()).map_err(bad)?,
            ),
            None => None,
        };
        let embeddings = match &self.embeddings {
            Some(p) => Some(sluice::text::EmbeddingTable::open(p, None).map_err(bad)?),
            None => None,
        };
        let assets = bench::TextAssets {
            tokenizer,
            embeddings,
        };
        assets.check(workload).map_err(bad)?;
        Ok(assets)
    }
}

#[derive(Clone, Copy, ValueEnum)]
enum DataKind {
    Images,
    Audio,
    Text,
}

#[derive(Clone, Copy, ValueEnum)]
enum BackendArg {
    Cpu,
    Wgpu,
    Cuda,
    Auto,
}

// Parsed once per process: boxing the big variant would only add noise.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand)]
enum Command {
    /// Run a built-in workload and report images/s, CPU time, latency, memory and a checksum.
    Bench {
        /// decode-only, rn50-train, rn50-val, simclr, asr-val, asr, cedar-asr or nlp
        workload: String,
        /// ImageFolder (AudioFolder for asr workloads) directory or CSV file list; for text
        /// workloads a text file (one sample per line), a JSON-lines file or a folder of .txt
        /// documents; for any workload WebDataset shards: a folder of .tar files, a shard
        /// manifest (sluice-index.json), or shard URLs/paths with brace patterns
        /// (s3://bucket/train-{000000..000127}.tar; gs://, az://, http(s):// too)
        /// (default: a generated dataset cached under target/)
        #[arg(long)]
        data: Option<String>,
        #[command(flatten)]
        text: TextArgs,
        /// Samples in the generated default dataset (default: 1024 images, 256 audio files)
        #[arg(long)]
        images: Option<usize>,
        /// Worker threads (default: all cores)
        #[arg(long)]
        threads: Option<usize>,
        #[arg(long, default_value_t = 64)]
        batch: usize,
        #[arg(long, default_value_t = 2)]
        epochs: u32,
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Batches prepared ahead of the consumer
        #[arg(long, default_value_t = 2)]
        prefetch: usize,
        /// Run every operator as its own pass (for comparison with the fused plan)
        #[arg(long)]
        no_fuse: bool,
        /// Keep decoded images (and the leading non-random operators' output) in memory across
        /// epochs, up to this many MiB
        #[arg(long, default_value_t = 0)]
        cache_mib: usize,
        /// Speech and text workloads: pad each batch's time (token) axis to a multiple of N
        /// (default: 8 for bert-mlm, else 1)
        #[arg(long, value_name = "N")]
        pad_multiple: Option<usize>,
        /// Text workloads: batch samples of similar length, sorting windows of K batches by
        /// length (less padding; the order stays a pure function of seed and epoch; default:
        /// 16 for bert-mlm, else 0 = off)
        #[arg(long, value_name = "K")]
        bucket: Option<usize>,
        /// What to do with a sample that fails to decode or transform
        #[arg(long, value_enum, default_value = "fail")]
        on_error: Policy,
        /// Simulated training step: hold each batch this many ms (measures the data stall); with
        /// --backend cuda, a kernel of this length on the training loop's own stream
        #[arg(long, default_value_t = 0.0)]
        train_step_ms: f64,
        /// Draw throughput over time and the per-stage breakdown into this .svg or .png file
        #[arg(long)]
        chart: Option<PathBuf>,
        /// Print the report as JSON on stdout (schema: docs/BENCH_JSON.md)
        #[arg(long)]
        json: bool,
        /// Where operators run: cpu, wgpu or cuda (every operator on that GPU backend, or all
        /// on the CPU with the reason when it is unusable), or auto (crop on CPU, the rest on a
        /// CUDA device or else a hardware wgpu adapter). cuda delivers batches in device memory
        /// (pinned staging ring, copy/compute streams) and reports the overlap
        #[arg(long, value_enum, default_value = "cpu")]
        backend: BackendArg,
        /// The CUDA device to use (default: $LOCAL_RANK, else 0)
        #[arg(long, value_name = "N")]
        device: Option<usize>,
        /// Write the first batch to DIR as .npy files (images/features, lengths, labels) and
        /// samples.txt (each sample's source, in batch order)
        #[arg(long, value_name = "DIR")]
        dump: Option<PathBuf>,
        /// Also run the pipeline on the CPU and compare every batch (max error, exit 1 when
        /// outside the tolerance); slows the run
        #[arg(long)]
        verify: bool,
        /// Let the optimizer plan the run (order, fusion, placement, threads, prefetch, cache)
        /// from a cost profile; overrides --threads/--prefetch/--no-fuse/--cache-mib/--backend
        #[arg(long)]
        optimize: bool,
        #[command(flatten)]
        plan: PlanArgs,
        #[command(flatten)]
        run: RunArgs,
        #[command(flatten)]
        io: IoArgs,
    },
    /// Index WebDataset shards: write a manifest (per shard: location, size, version tag,
    /// each sample's offset and length) so opening them costs one read, not a scan.
    Index {
        /// Shards: a folder of .tar files, or paths/URLs with brace patterns
        data: String,
        /// Where to write the manifest, a path or URL (default: sluice-index.json beside the
        /// shards)
        #[arg(long)]
        output: Option<String>,
        #[command(flatten)]
        io: IoArgs,
    },
    /// Write any dataset (ImageFolder, AudioFolder, CSV/JSONL list, text) as WebDataset tar
    /// shards plus their manifest.
    Shard {
        /// The dataset to write, as bench's --data takes it
        source: String,
        /// The folder to write the shards into
        out: PathBuf,
        /// Close a shard once it holds this much: 64MiB, 500KiB, 1GB, or bytes
        #[arg(long, default_value = "64MiB")]
        shard_size: String,
        /// Kind of data: images, audio or text (how a folder or list is read)
        #[arg(long, value_enum, default_value = "images")]
        kind: DataKind,
        /// File names: PREFIX-000000.tar, ...
        #[arg(long, default_value = "shard")]
        prefix: String,
        /// Text: the JSON field holding the text (JSON-lines input)
        #[arg(long)]
        text_field: Option<String>,
    },
    /// Show how the optimizer would run a workload: the logical plan, each rule's decision with
    /// the predicted costs of the alternatives, the physical plan and its predicted throughput.
    Explain {
        /// decode-only, rn50-train, rn50-val or simclr
        workload: String,
        /// ImageFolder directory, CSV file list or shards to profile (as for bench; default:
        /// the generated dataset)
        #[arg(long)]
        data: Option<String>,
        /// Images in the generated default dataset (default 1024)
        #[arg(long)]
        images: Option<usize>,
        #[arg(long, default_value_t = 64)]
        batch: usize,
        #[arg(long, default_value_t = 2)]
        epochs: u32,
        /// The training step the pipeline overlaps with, in ms
        #[arg(long, default_value_t = 0.0)]
        train_step_ms: f64,
        #[command(flatten)]
        plan: PlanArgs,
        /// Write the cost profile used to this file (JSON, docs/COST_PROFILE.md)
        #[arg(long)]
        save_profile: Option<PathBuf>,
        /// Plan for batches delivered in CUDA device memory (as `bench --backend cuda`): with a
        /// CUDA device in the profile, what the GPU makes is not read back
        #[arg(long)]
        device_batches: bool,
        #[command(flatten)]
        text: TextArgs,
        #[command(flatten)]
        io: IoArgs,
    },
    /// Write a deterministic dataset: ImageNet-like JPEGs (ROOT/class_NNN/img_NNNNNN.jpg),
    /// speech (ROOT/class_NNN/*.wav|flac) or text (ROOT/corpus.txt).
    GenData {
        dir: PathBuf,
        /// images (JPEG), audio (speech-like WAV: 1–15 s, 8–48 kHz, mono/stereo, 16/24-bit/float)
        /// or text (an English-like corpus, one document per line, in DIR/corpus.txt)
        #[arg(long, value_enum, default_value = "images")]
        kind: DataKind,
        #[arg(long, default_value_t = 1024)]
        n: usize,
        #[arg(long, default_value_t = 10)]
        classes: usize,
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Audio: the longest utterance, seconds (each is 1 s to this long).
        #[arg(long, default_value_t = 15.0)]
        max_seconds: f64,
        /// Images: photos with a long side of about N pixels (N to 1.1·N) instead of the
        /// ImageNet-like 200–600 px, e.g. 3000 for camera-size photos.
        #[arg(long, value_name = "N")]
        long_side: Option<u32>,
    },
}

/// How sharded data on object storage is read (defaults: `IoConfig::default()`).
#[derive(clap::Args)]
struct IoArgs {
    /// Remote shards: bytes read ahead and not yet consumed; bounds memory (default 256MiB)
    #[arg(long, value_name = "SIZE")]
    io_window: Option<String>,
    /// Remote shards: range requests in flight at once (default 16)
    #[arg(long, value_name = "N")]
    io_concurrency: Option<usize>,
    /// Remote shards: attempts after the first on 5xx answers, timeouts and dropped
    /// connections (default 6)
    #[arg(long, value_name = "N")]
    io_retries: Option<u32>,
    /// Remote shards: one request's time limit in seconds (default 30)
    #[arg(long, value_name = "SECONDS")]
    io_timeout: Option<f64>,
}

impl IoArgs {
    fn config(&self) -> sluice::Result<sluice::source::shards::IoConfig> {
        use sluice::source::shards::{parse_size, IoConfig};
        let window = self.io_window.as_deref().map(parse_size).transpose()?;
        IoConfig::with(
            window,
            self.io_concurrency,
            self.io_retries,
            self.io_timeout,
        )
    }
}

/// Where the run reads and which share it takes; stopping and resuming.
#[derive(clap::Args)]
struct RunArgs {
    /// Sharded data: shuffle shards, then samples within windows of K shards (only K shards
    /// are read at a time); 0: one permutation of all samples
    #[arg(long, value_name = "K", default_value_t = 0)]
    shard_window: usize,
    /// This process's rank among --world ranks: it runs its share of each epoch
    #[arg(long, default_value_t = 0)]
    rank: usize,
    #[arg(long, default_value_t = 1)]
    world: usize,
    /// Stop after this many batches (see --save-state)
    #[arg(long, value_name = "K")]
    stop_after_batches: Option<u64>,
    /// With --stop-after-batches: write where the run stopped to FILE (JSON)
    #[arg(long, value_name = "FILE")]
    save_state: Option<PathBuf>,
    /// Start where a saved run stopped: the same batches an uninterrupted run delivers from
    /// there (--json's batch_checksums shows it)
    #[arg(long, value_name = "FILE")]
    resume: Option<PathBuf>,
}

fn progress_bar(total: u64, what: &str) -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::new(total);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{msg} [{bar:30}] {pos}/{len} ({eta} left)")
            .unwrap()
            .progress_chars("=> "),
    );
    bar.set_message(what.to_string());
    bar
}

/// Where the generated default dataset is cached: `<target dir>/sluice-data/...`.
fn default_data_dir(images: usize, seed: u64) -> PathBuf {
    target_dir()
        .join("sluice-data")
        .join(format!("gen-n{images}-s{seed}"))
}

/// Cargo's target directory (where generated data and measured profiles are cached).
fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .or_else(|| {
            let exe = std::env::current_exe().ok()?;
            exe.ancestors()
                .find(|p| p.file_name().is_some_and(|n| n == "target"))
                .map(Path::to_path_buf)
        })
        .unwrap_or_else(|| PathBuf::from("target"))
}

fn run(cli: Cli) -> sluice::Result<()> {
    match cli.command {
        Command::Explain {
            workload,
            data,
            images,
            batch,
            epochs,
            train_step_ms,
            plan,
            save_profile,
            device_batches,
            text,
            io,
        } => {
            let workload = parse_workload(&workload)?;
            let assets = text.assets(workload)?;
            let source = dataset(data, images, workload, text.text_field.as_deref(), &io)?;
            let profile = cost_profile(&source, (workload, &assets), plan.profile.as_deref())?;
            if let Some(path) = &save_profile {
                profile.save(path)?;
                eprintln!("cost profile written to {}", path.display());
            }
            let goal = goal(&plan, batch, epochs, train_step_ms);
            let logical = workload
                .add_ops_with(sluice::Pipeline::builder_shared(source), &assets)
                .device_batches(device_batches)
                .logical_plan();
            let optimized = sluice::optimizer::optimize(&logical, &profile, &goal)?;
            print!("{}", optimized.explain(&goal));
            Ok(())
        }
        Command::Index { data, output, io } => {
            use sluice::source::shards::{shard_locations, Manifest, MANIFEST_NAME};
            let locations = shard_locations(&data)?;
            let output = output.unwrap_or_else(|| {
                let first = &locations[0];
                let dir = first.rfind('/').map_or("", |i| &first[..=i]);
                format!("{dir}{MANIFEST_NAME}")
            });
            let config = std::sync::Arc::new(io.config()?);
            let bar = progress_bar(locations.len() as u64, "indexing shards");
            let manifest =
                Manifest::build(&locations, &config, &|done| bar.set_position(done as u64))?;
            bar.finish_and_clear();
            manifest.save(&output, &config)?;
            let samples: usize = manifest.shards.iter().map(|s| s.samples.len()).sum();
            eprintln!(
                "indexed {} shards, {samples} samples: manifest written to {output}",
                manifest.shards.len()
            );
            Ok(())
        }
        Command::Shard {
            source,
            out,
            shard_size,
            kind,
            prefix,
            text_field,
        } => {
            use sluice::source::shards::{write_shards, ShardWriterSpec};
            let path = Path::new(&source);
            let data: Arc<dyn Source> = match kind {
                DataKind::Images => sluice::source::open_path(path)?,
                DataKind::Audio => sluice::source::open_audio_path(path)?,
                DataKind::Text => sluice::source::open_text_path(path, text_field.as_deref())?,
            };
            let spec = ShardWriterSpec {
                shard_bytes: sluice::source::shards::parse_size(&shard_size)?,
                prefix,
            };
            let bar = progress_bar(data.len() as u64, "writing shards");
            let shards = write_shards(data.as_ref(), &out, &spec, &|done| bar.set_position(done))?;
            bar.finish_and_clear();
            eprintln!(
                "wrote {} samples into {} shards in {} (manifest: {})",
                data.len(),
                shards.len(),
                out.display(),
                out.join(sluice::source::shards::MANIFEST_NAME).display()
            );
            Ok(())
        }
        Command::GenData {
            dir,
            kind: DataKind::Text,
            n,
            seed,
            ..
        } => {
            let spec = TextCorpusSpec { documents: n, seed };
            let path = write_text_corpus(&dir, &spec)?;
            eprintln!("wrote {n} documents (one per line) to {}", path.display());
            Ok(())
        }
        Command::GenData {
            dir,
            kind: DataKind::Audio,
            n,
            classes,
            seed,
            max_seconds,
            ..
        } => {
            if !(1.0..=3600.0).contains(&max_seconds) {
                return Err(sluice::Error::InvalidPipeline(format!(
                    "--max-seconds {max_seconds}: between 1 and 3600"
                )));
            }
            let spec = AudioDatasetSpec {
                files: n,
                classes,
                seed,
                max_seconds,
            };
            let bar = progress_bar(n as u64, "generating");
            write_audio_dataset(&dir, &spec, &|done| bar.set_position(done))?;
            bar.finish_and_clear();
            eprintln!(
                "wrote {n} audio files in {classes} classes to {}",
                dir.display()
            );
            Ok(())
        }
        Command::GenData {
            dir,
            kind: DataKind::Images,
            n,
            classes,
            seed,
            long_side,
            ..
        } => {
            if long_side.is_some_and(|l| !(16..=16384).contains(&l)) {
                return Err(sluice::Error::InvalidPipeline(
                    "--long-side must be 16..=16384 pixels".into(),
                ));
            }
            let spec = DatasetSpec {
                images: n,
                classes,
                seed,
                long_side,
            };
            let bar = progress_bar(n as u64, "generating");
            write_dataset(&dir, &spec, &|done| bar.set_position(done))?;
            bar.finish_and_clear();
            eprintln!("wrote {n} images in {classes} classes to {}", dir.display());
            Ok(())
        }
        Command::Bench {
            workload,
            data,
            text,
            images,
            threads,
            batch,
            epochs,
            seed,
            prefetch,
            no_fuse,
            cache_mib,
            pad_multiple,
            bucket,
            on_error,
            train_step_ms,
            chart,
            json,
            backend,
            device,
            dump,
            verify,
            optimize,
            plan,
            run,
            io,
        } => {
            if let Some(path) = &chart {
                if !path.extension().is_some_and(|e| e == "svg" || e == "png") {
                    return Err(sluice::Error::InvalidPipeline(format!(
                        "--chart {}: name the file *.svg or *.png",
                        path.display()
                    )));
                }
            }
            let workload = parse_workload(&workload)?;
            let text_assets = text.assets(workload)?;
            let defaults = workload.batch_defaults(&text_assets);
            let source = dataset(data, images, workload, text.text_field.as_deref(), &io)?;
            let optimize = if optimize {
                let profile =
                    cost_profile(&source, (workload, &text_assets), plan.profile.as_deref())?;
                Some((profile, goal(&plan, batch, epochs, train_step_ms)))
            } else {
                None
            };
            let opts = BenchOptions {
                workload,
                threads: threads
                    .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get())),
                batch_size: batch,
                epochs,
                seed,
                prefetch,
                fuse: !no_fuse,
                allow_approx: plan.allow_approx,
                cache_mib,
                pad_multiple: pad_multiple.unwrap_or(defaults.pad_multiple),
                policy: match on_error {
                    Policy::Fail => ErrorPolicy::Fail,
                    Policy::Skip => ErrorPolicy::Skip,
                },
                train_step_ms,
                progress: !json,
                placement: match backend {
                    BackendArg::Cpu => Placement::Cpu,
                    BackendArg::Wgpu => Placement::Wgpu,
                    BackendArg::Cuda => Placement::Cuda,
                    BackendArg::Auto => Placement::Auto,
                },
                verify,
                optimize,
                device_batches: matches!(backend, BackendArg::Cuda),
                cuda_device: device,
                dump,
                text: text_assets,
                bucket_windows: bucket.unwrap_or(defaults.bucket_windows),
                shard_window: run.shard_window,
                rank: (run.rank, run.world),
                resume: match &run.resume {
                    Some(path) => Some(sluice::state::PipelineState::load(path)?),
                    None => None,
                },
                stop_after: run.stop_after_batches.map(|k| (k, run.save_state.clone())),
                batch_checksums: json,
            };
            if run.save_state.is_some() && run.stop_after_batches.is_none() {
                return Err(sluice::Error::InvalidPipeline(
                    "--save-state needs --stop-after-batches".into(),
                ));
            }
            let report = bench::run(source, &opts)?;
            if let Some(path) = &chart {
                let chart = bench::chart_layout(&report);
                let bytes = if path.extension().is_some_and(|e| e == "png") {
                    chart.to_png()
                } else {
                    chart.to_svg().into_bytes()
                };
                std::fs::write(path, bytes)
                    .map_err(|e| sluice::Error::io(path.display().to_string(), e))?;
                eprintln!("chart written to {}", path.display());
            }
            if json {
                println!("{}", serde_json::to_string_pretty(&report).unwrap());
            } else {
                print!("{}", report.to_text());
            }
            match &report.verify {
                Some(v) if !v.pass => Err(sluice::Error::Worker(format!(
                    "verify failed: {} values more than one step from the CPU's (max {:.2} steps)",
                    v.values_over_one_step, v.max_error_steps
                ))),
                _ => Ok(()),
            }
        }
    }
}

fn parse_workload(name: &str) -> sluice::Result<Workload> {
    Workload::from_name(name).ok_or_else(|| {
        let names: Vec<_> = bench::WORKLOADS.iter().map(|(n, _)| *n).collect();
        sluice::Error::InvalidPipeline(format!(
            "unknown workload {name:?}; choose one of {}",
            names.join(", ")
        ))
    })
}

/// The dataset at `data`, or the generated default (made once, cached): `images` images, or
/// for an audio workload that many speech files.
fn dataset(
    data: Option<String>,
    images: Option<usize>,
    workload: Workload,
    text_field: Option<&str>,
    io: &IoArgs,
) -> sluice::Result<Arc<dyn Source>> {
    use sluice::source::shards;
    if let Some(d) = data.as_deref().filter(|d| shards::is_sharded(d)) {
        return Ok(Arc::new(open_shards_with_progress(d, io.config()?)?));
    }
    let data = data.map(PathBuf::from);
    if workload.is_text() {
        let path = match data {
            Some(d) => d,
            None => {
                let documents = images.unwrap_or(4096);
                let dir = target_dir()
                    .join("sluice-data")
                    .join(format!("gen-text-n{documents}-s0"));
                let spec = TextCorpusSpec { documents, seed: 0 };
                ensure_text_corpus(&dir, &spec)?
            }
        };
        return sluice::source::open_text_path(&path, text_field);
    }
    if workload.is_audio() {
        let data = match data {
            Some(d) => d,
            None => {
                let files = images.unwrap_or(256);
                let dir = target_dir()
                    .join("sluice-data")
                    .join(format!("gen-audio-n{files}-s0"));
                let spec = AudioDatasetSpec {
                    files,
                    ..AudioDatasetSpec::default()
                };
                let bar = progress_bar(files as u64, "generating default speech dataset");
                if ensure_audio_dataset(&dir, &spec, &|done| bar.set_position(done))? {
                    bar.finish_and_clear();
                    eprintln!("generated {files} audio files in {}", dir.display());
                }
                dir
            }
        };
        return sluice::source::open_audio_path(&data);
    }
    let images = images.unwrap_or(1024);
    let data = match data {
        Some(d) => d,
        None => {
            let dir = default_data_dir(images, 0);
            let spec = DatasetSpec {
                images,
                ..DatasetSpec::default()
            };
            let bar = progress_bar(images as u64, "generating default dataset");
            if ensure_dataset(&dir, &spec, &|done| bar.set_position(done))? {
                bar.finish_and_clear();
                eprintln!("generated {images} images in {}", dir.display());
            }
            dir
        }
    };
    sluice::source::open_path(&data)
}

/// Open sharded data; without a manifest, scan the shards with a progress bar.
fn open_shards_with_progress(
    data: &str,
    config: sluice::source::shards::IoConfig,
) -> sluice::Result<sluice::source::shards::WebDataset> {
    let bar = std::sync::OnceLock::new();
    let ds = sluice::source::shards::open_shards_with_progress(data, config, &|done, total| {
        bar.get_or_init(|| {
            eprintln!(
                "no manifest: scanning {total} shards (`sluice index` writes one so \
                     start-up skips this)"
            );
            progress_bar(total as u64, "scanning shards")
        })
        .set_position(done as u64)
    })?;
    if let Some(bar) = bar.get() {
        bar.finish_and_clear();
    }
    Ok(ds)
}

fn goal(plan: &PlanArgs, batch: usize, epochs: u32, train_step_ms: f64) -> Goal {
    Goal {
        batch_size: batch,
        train_step_ms,
        epochs,
        memory_budget_bytes: plan.cache_budget_mib << 20,
        allow_approx: plan.allow_approx,
    }
}

/// The profile at `path`, or the one cached for this machine, dataset and pipeline, or a fresh
/// measurement (then cached).
/// The cost profile of `workload` on `source` with the text workloads' `assets` (the pipeline
/// that will run: a profile of another tokenizer or table would price the wrong operators).
fn cost_profile(
    source: &Arc<dyn Source>,
    (workload, assets): (Workload, &bench::TextAssets),
    path: Option<&Path>,
) -> sluice::Result<CostProfile> {
    let logical = workload
        .add_ops_with(sluice::Pipeline::builder_shared(source.clone()), assets)
        .logical_plan();
    let dir = target_dir().join("sluice-profiles");
    profile::for_pipeline(source.as_ref(), &logical.decoder, &logical.ops, path, &dir)
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
