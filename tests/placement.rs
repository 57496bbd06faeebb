//! Pipelines with a GPU suffix (wgpu) against the same pipelines on the CPU: same samples, same
//! order, same random decisions; values within the kernels' tolerance. Runs on lavapipe in CI;
//! without an adapter it prints "skipped: no wgpu adapter" (unless SLUICE_REQUIRE_WGPU is set).

mod common;

use sluice::bench::Workload;
use sluice::ops::{Normalize, RandomHorizontalFlip, RandomResizedCrop};
use sluice::source::InMemory;
use sluice::{Batch, ErrorPolicy, Pipeline, PipelineBuilder, Placement};

fn adapter_or_skip() -> bool {
    common::or_skip(
        sluice::backend::wgpu::WgpuContext::new(),
        "SLUICE_REQUIRE_WGPU",
    )
    .is_some()
}

fn builder(source: InMemory) -> PipelineBuilder {
    Pipeline::builder(source)
        .batch_size(8)
        .threads(2)
        .shuffle(true)
        .seed(11)
}

fn batches(p: &Pipeline) -> Vec<Batch> {
    p.epoch(1).unwrap().map(|b| b.unwrap()).collect()
}

/// Compare two runs batch by batch: identical samples and labels; values as f32 compared in
/// units of one u8 step of the output (`step`). Returns (max error in steps, fraction of
/// values more than one step off).
fn compare(cpu: &[Batch], gpu: &[Batch], step: f32) -> (f32, f64) {
    assert_eq!(cpu.len(), gpu.len());
    let (mut worst, mut off, mut total) = (0f32, 0usize, 0usize);
    for (c, g) in cpu.iter().zip(gpu) {
        assert_eq!(c.sample_indices, g.sample_indices);
        assert_eq!(c.labels, g.labels);
        let (c, g) = (c.dense().unwrap(), g.dense().unwrap());
        assert_eq!(c.shape, g.shape);
        assert_eq!(c.dtype, g.dtype);
        let n = c.bytes().len() / c.dtype.size();
        for i in 0..n {
            let a = c.dtype.load(c.bytes(), i);
            let b = g.dtype.load(g.bytes(), i);
            let e = (a - b).abs() / step;
            assert!(
                e.is_finite(),
                "element {i}: gpu {b} (never written?) cpu {a}"
            );
            worst = worst.max(e);
            off += usize::from(e > 1.001);
            total += 1;
        }
    }
    (worst, off as f64 / total as f64)
}

/// The GPU run's batches with kernel outputs poisoned by 0xFF bytes (NaN as float), checked to
/// equal a run poisoned by 0x00 bytes: an element no kernel writes differs between the two.
fn poisoned_twice(gpu: &Pipeline, what: &str) -> Vec<Batch> {
    gpu.check_gpu_outputs_with(0x00);
    let zeros = batches(gpu);
    gpu.check_gpu_outputs_with(0xFF);
    let ones = batches(gpu);
    assert_eq!(zeros.len(), ones.len(), "{what}: batches");
    for (a, b) in zeros.iter().zip(&ones) {
        assert!(
            a.bytes() == b.bytes(),
            "{what}: batch {} depends on the poison: some output element is never written",
            a.index
        );
    }
    ones
}

#[test]
fn wgpu_suffix_matches_the_cpu_pipeline_for_every_workload() {
    if !adapter_or_skip() {
        return;
    }
    let step = Normalize::imagenet().scale_bias().0[0].max(1.0 / (255.0 * 0.224));
    for workload in [Workload::Rn50Train, Workload::Rn50Val, Workload::Simclr] {
        let source = || common::jpeg_source(21);
        let cpu = workload.add_ops(builder(source())).build().unwrap();
        let gpu = workload
            .add_ops(builder(source()).placement(Placement::Wgpu))
            .build()
            .unwrap();
        assert_eq!(gpu.gpu_cut(), 0, "{}", gpu.placement_reason());
        assert!(gpu.describe().contains("[wgpu: "), "{}", gpu.describe());
        let gpu_batches = poisoned_twice(&gpu, workload.name());
        let (worst, off) = compare(&batches(&cpu), &gpu_batches, step);
        eprintln!(
            "{}: max error {worst:.2} u8 steps, {:.3}% of values more than one step off",
            workload.name(),
            off * 100.0
        );
        // Crop+resize and normalize are exact (up to a fused multiply-add); ColorJitter's
        // float truncations may land one u8 step the other way, which later truncations (hue)
        // can widen for a few values.
        match workload {
            Workload::Simclr => assert!(off < 0.005, "{}: {off}", workload.name()),
            _ => assert!(worst < 1e-3, "{}: {worst}", workload.name()),
        }
    }
}

#[test]
fn pinning_an_operator_to_wgpu_moves_the_suffix_and_auto_keeps_crops_on_cpu() {
    if !adapter_or_skip() {
        return;
    }
    let ops = |b: PipelineBuilder, pin: Placement| {
        b.op(RandomResizedCrop::new(40))
            .op_on(RandomHorizontalFlip::new(0.5), pin)
            .op(Normalize::imagenet())
    };
    let cpu = ops(builder(common::jpeg_source(10)), Placement::Cpu)
        .build()
        .unwrap();
    let gpu = ops(builder(common::jpeg_source(10)), Placement::Wgpu)
        .build()
        .unwrap();
    assert_eq!(gpu.gpu_cut(), 1, "{}", gpu.describe());
    // Crop on the CPU in both: flip + normalize are exact on the GPU (up to a fused multiply-add).
    let (worst, _) = compare(&batches(&cpu), &batches(&gpu), 1.0);
    assert!(worst < 1e-5, "max error {worst}");
    // The pinned CPU operator cannot follow a GPU one.
    let err = builder(common::jpeg_source(4))
        .op_on(RandomResizedCrop::new(40), Placement::Wgpu)
        .op_on(Normalize::imagenet(), Placement::Cpu)
        .build()
        .err()
        .expect("conflicting pins are rejected");
    assert!(err.to_string().contains("pinned to the CPU"), "{err}");
}

#[test]
fn bad_samples_are_skipped_and_counted_with_a_gpu_suffix() {
    if !adapter_or_skip() {
        return;
    }
    let mut samples = common::jpeg_samples(12, 3);
    samples[5].0.truncate(40);
    samples[9].0 = b"not an image".to_vec();
    let p = Workload::Rn50Train
        .add_ops(
            builder(InMemory::new(samples))
                .placement(Placement::Wgpu)
                .on_error(ErrorPolicy::Skip),
        )
        .build()
        .unwrap();
    let all = batches(&p);
    let kept: usize = all.iter().map(|b| b.sample_indices.len()).sum();
    let skipped: Vec<u64> = all
        .iter()
        .flat_map(|b| b.skipped.iter().map(|e| e.sample.index))
        .collect();
    assert_eq!(kept, 10);
    let mut skipped = skipped;
    skipped.sort();
    assert_eq!(skipped, vec![5, 9]);
    assert_eq!(p.stats().skipped, 2);
    for b in &all {
        let d = b.dense().unwrap();
        assert_eq!(d.shape[0], b.sample_indices.len());
    }
}

#[test]
fn a_bad_sample_stops_a_gpu_suffix_pipeline_with_the_sample_and_operator_named() {
    if !adapter_or_skip() {
        return;
    }
    let mut samples = common::jpeg_samples(12, 3);
    samples[5].0.truncate(40);
    let p = Workload::Rn50Train
        .add_ops(builder(InMemory::new(samples)).placement(Placement::Wgpu))
        .build()
        .unwrap();
    assert_eq!(p.gpu_cut(), 0, "{}", p.placement_reason());
    let mut it = p.epoch(0).unwrap();
    let err = loop {
        match it
            .next()
            .expect("the epoch ends with the error, not before")
        {
            Ok(batch) => assert!(!batch.sample_indices.contains(&5)),
            Err(e) => break e.to_string(),
        }
    };
    assert!(
        err.contains("sample #5") && err.contains("DecodeImage"),
        "{err}"
    );
    assert!(it.next().is_none(), "the epoch ends after an error");
}

#[test]
fn cuda_placement_runs_on_a_device_or_falls_back_to_the_cpu_with_the_reason() {
    let build = |placement| {
        Workload::Rn50Train
            .add_ops(builder(common::jpeg_source(9)).placement(placement))
            .build()
            .unwrap()
    };
    let cuda = build(Placement::Cuda);
    match sluice::backend::cuda::probe(0) {
        Err(why) => {
            assert_eq!(cuda.gpu_cut(), cuda.ops().len());
            assert!(
                cuda.placement_reason().contains(&why),
                "{}",
                cuda.placement_reason()
            );
            // Still a working pipeline, on the CPU.
            assert_eq!(batches(&cuda).len(), 2);
            eprintln!("skipped: {why} (the CUDA placement fell back to the CPU, as it should)");
        }
        Ok(device) => {
            eprintln!("CUDA device: {device}");
            assert_eq!(cuda.gpu_cut(), 0, "{}", cuda.placement_reason());
            let (worst, _) = compare(&batches(&build(Placement::Cpu)), &batches(&cuda), 1.0);
            assert!(worst < 1e-5, "max error {worst}");
        }
    }
}
