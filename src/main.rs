//! The `sluice` command: `bench` runs a built-in workload and reports its numbers; `gen-data`
//! writes the deterministic synthetic dataset the benchmarks and tests use.

use clap::{Parser, Subcommand, ValueEnum};
use sluice::bench::{self, BenchOptions, Workload};
use sluice::gen::{ensure_dataset, write_dataset, DatasetSpec};
use sluice::source::{FileList, ImageFolder, Source};
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

#[derive(Clone, Copy, ValueEnum)]
enum BackendArg {
    Cpu,
    Wgpu,
    Auto,
}

#[derive(Subcommand)]
enum Command {
    /// Run a built-in workload and report images/s, CPU time, latency, memory and a checksum.
    Bench {
        /// decode-only, rn50-train, rn50-val or simclr
        workload: String,
        /// ImageFolder directory or CSV file list (default: a generated dataset cached under target/)
        #[arg(long)]
        data: Option<PathBuf>,
        /// Images in the generated default dataset
        #[arg(long, default_value_t = 1024)]
        images: usize,
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
        /// What to do with a sample that fails to decode or transform
        #[arg(long, value_enum, default_value = "fail")]
        on_error: Policy,
        /// Simulated training step: hold each batch this many ms (measures the data stall)
        #[arg(long, default_value_t = 0.0)]
        train_step_ms: f64,
        /// Draw throughput over time and the per-stage breakdown into this .svg or .png file
        #[arg(long)]
        chart: Option<PathBuf>,
        /// Print the report as JSON on stdout (schema: docs/BENCH_JSON.md)
        #[arg(long)]
        json: bool,
        /// Where operators run: cpu, wgpu (every operator on the GPU unless a usable adapter
        /// is missing) or auto (crop on CPU, the rest on a hardware GPU)
        #[arg(long, value_enum, default_value = "cpu")]
        backend: BackendArg,
        /// Also run the pipeline on the CPU and compare every batch (max error, exit 1 when
        /// outside the tolerance); slows the run
        #[arg(long)]
        verify: bool,
    },
    /// Write a deterministic ImageNet-like JPEG dataset (ROOT/class_NNN/img_NNNNNN.jpg).
    GenData {
        dir: PathBuf,
        #[arg(long, default_value_t = 1024)]
        n: usize,
        #[arg(long, default_value_t = 10)]
        classes: usize,
        #[arg(long, default_value_t = 0)]
        seed: u64,
    },
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
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .or_else(|| {
            let exe = std::env::current_exe().ok()?;
            exe.ancestors()
                .find(|p| p.file_name().is_some_and(|n| n == "target"))
                .map(Path::to_path_buf)
        })
        .unwrap_or_else(|| PathBuf::from("target"));
    target
        .join("sluice-data")
        .join(format!("gen-n{images}-s{seed}"))
}

fn open_source(path: &Path) -> sluice::Result<Arc<dyn Source>> {
    if path.is_file() {
        Ok(Arc::new(FileList::open(path)?))
    } else {
        Ok(Arc::new(ImageFolder::open(path)?))
    }
}

fn run(cli: Cli) -> sluice::Result<()> {
    match cli.command {
        Command::GenData {
            dir,
            n,
            classes,
            seed,
        } => {
            let spec = DatasetSpec {
                images: n,
                classes,
                seed,
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
            images,
            threads,
            batch,
            epochs,
            seed,
            prefetch,
            no_fuse,
            cache_mib,
            on_error,
            train_step_ms,
            chart,
            json,
            backend,
            verify,
        } => {
            if let Some(path) = &chart {
                if !path.extension().is_some_and(|e| e == "svg" || e == "png") {
                    return Err(sluice::Error::InvalidPipeline(format!(
                        "--chart {}: name the file *.svg or *.png",
                        path.display()
                    )));
                }
            }
            let workload = Workload::from_name(&workload).ok_or_else(|| {
                let names: Vec<_> = bench::WORKLOADS.iter().map(|(n, _)| *n).collect();
                sluice::Error::InvalidPipeline(format!(
                    "unknown workload {workload:?}; choose one of {}",
                    names.join(", ")
                ))
            })?;
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
            let source = open_source(&data)?;
            let opts = BenchOptions {
                workload,
                threads: threads
                    .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get())),
                batch_size: batch,
                epochs,
                seed,
                prefetch,
                fuse: !no_fuse,
                cache_mib,
                policy: match on_error {
                    Policy::Fail => ErrorPolicy::Fail,
                    Policy::Skip => ErrorPolicy::Skip,
                },
                train_step_ms,
                progress: !json,
                placement: match backend {
                    BackendArg::Cpu => Placement::Cpu,
                    BackendArg::Wgpu => Placement::Wgpu,
                    BackendArg::Auto => Placement::Auto,
                },
                verify,
            };
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
                    "verify failed: {} values more than one u8 step from the CPU's (max {:.2} steps)",
                    v.values_over_one_step, v.max_error_steps
                ))),
                _ => Ok(()),
            }
        }
    }
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
