//! Each optimizer rule alone on hand-built plans and hand-written cost profiles, and the
//! optimized plan against the declared one on real data.

mod common;

use sluice::bench::Workload;
use sluice::ops::{
    ColorJitter, GaussianBlur, Normalize, OpKind, RandomGrayscale, RandomHorizontalFlip,
    RandomResizedCrop,
};
use sluice::optimizer::{
    self, cache, place, reorder, CostProfile, Goal, GpuCost, LogicalPlan, PhysicalPlan,
};
use sluice::{Pipeline, PipelineBuilder, Placement};

fn simclr_plan() -> LogicalPlan {
    let b = Workload::Simclr.add_ops(Pipeline::builder(common::jpeg_source(2)));
    b.logical_plan()
}

/// simclr on a 16-core host: costs per sample in the proportions measured here.
fn cpu_profile(plan: &LogicalPlan) -> CostProfile {
    let costs: Vec<(f64, f64, f64)> = plan
        .ops
        .iter()
        .map(|op| match op.spec().kind {
            OpKind::RandomResizedCrop => (150e3, 480e3, 150_528.0),
            OpKind::RandomHorizontalFlip => (40e3, 150_528.0, 150_528.0),
            OpKind::ColorJitter => (900e3, 150_528.0, 150_528.0),
            OpKind::RandomGrayscale => (60e3, 150_528.0, 150_528.0),
            OpKind::GaussianBlur => (500e3, 150_528.0, 150_528.0),
            _ => (80e3, 150_528.0, 602_112.0),
        })
        .collect();
    common::cost_profile(&plan.ops, costs)
}

/// The same host with an H100-class GPU on a fast link: kernels take microseconds per sample.
fn fast_gpu_profile(plan: &LogicalPlan) -> CostProfile {
    let mut p = cpu_profile(plan);
    for op in &mut p.ops {
        op.gpu_ns = Some(op.cpu_ns / 200.0);
    }
    p.gpu = Some(GpuCost {
        backend: "cuda".into(),
        name: "H100 (hand-written)".into(),
        h2d_gbps: 20.0,
        reads_back: false,
        software: false,
    });
    p
}

fn goal(train_step_ms: f64) -> Goal {
    Goal {
        batch_size: 256,
        train_step_ms,
        epochs: 2,
        memory_budget_bytes: 0,
        allow_approx: false,
    }
}

fn names(plan: &PhysicalPlan, logical: &LogicalPlan) -> Vec<String> {
    plan.ops(logical).map(|o| o.name().to_string()).collect()
}

#[test]
fn reorder_moves_the_flip_to_the_tensor_write_and_never_swaps_non_commuting_ops() {
    let logical = simclr_plan();
    let profile = cpu_profile(&logical);
    let mut plan = PhysicalPlan::declared(&logical, 16);
    let d = reorder(&mut plan, &logical, &profile, &goal(0.0));
    assert_eq!(
        names(&plan, &logical),
        [
            "RandomResizedCrop",
            "ColorJitter",
            "RandomGrayscale",
            "GaussianBlur",
            "RandomHorizontalFlip",
            "Normalize"
        ],
        "{d:?}"
    );
    // ColorJitter and RandomGrayscale do not commute: grayscale (rank 1) stays after jitter.
    let pos = |n: &str| names(&plan, &logical).iter().position(|x| *x == n).unwrap();
    assert!(pos("ColorJitter") < pos("RandomGrayscale"));
}

#[test]
fn a_fixed_or_pinned_operator_never_moves() {
    let b = Pipeline::builder(common::jpeg_source(2))
        .op(RandomResizedCrop::new(224))
        .op_fixed(RandomHorizontalFlip::new(0.5))
        .op(ColorJitter::new(0.4, 0.4, 0.4, 0.1))
        .op_on(RandomGrayscale::new(0.2), Placement::Cpu)
        .op(Normalize::imagenet());
    let logical = b.logical_plan();
    let mut plan = PhysicalPlan::declared(&logical, 4);
    reorder(&mut plan, &logical, &cpu_profile(&logical), &goal(0.0));
    assert_eq!(plan.order, vec![0, 1, 2, 3, 4]);
}

#[test]
fn approximate_commutations_are_used_only_when_allowed() {
    // Color jitter declared before the crop: moving the crop first is only approximately equal.
    let b = Pipeline::builder(common::jpeg_source(2))
        .op(ColorJitter::new(0.4, 0.4, 0.4, 0.1))
        .op(RandomResizedCrop::new(224))
        .op(Normalize::imagenet());
    let logical = b.logical_plan();
    let mut profile = cpu_profile(&logical);
    profile.ops[0].bytes_in = 480e3; // jitter sees the decoded image here
    profile.ops[0].bytes_out = 480e3;
    let mut exact = PhysicalPlan::declared(&logical, 4);
    reorder(&mut exact, &logical, &profile, &goal(0.0));
    assert_eq!(exact.order, vec![0, 1, 2]);
    let mut approx = exact.clone();
    let g = Goal {
        allow_approx: true,
        ..goal(0.0)
    };
    let d = reorder(&mut approx, &logical, &profile, &g);
    assert_eq!(approx.order, vec![1, 0, 2], "{d:?}");
    // Jitter now sees 150 KB instead of 480 KB per sample: the model prices that in.
    assert!(d.alternatives[1].1.cpu_ms < d.alternatives[0].1.cpu_ms);
}

#[test]
fn with_a_fast_gpu_jitter_and_blur_go_to_the_gpu_and_u8_crosses() {
    let logical = simclr_plan();
    let profile = fast_gpu_profile(&logical);
    let mut plan = PhysicalPlan::declared(&logical, 16);
    let d = place(&mut plan, &logical, &profile, &goal(0.0));
    let on_gpu: Vec<_> = names(&plan, &logical)[plan.cut..].to_vec();
    assert!(
        on_gpu.iter().any(|n| n == "ColorJitter") && on_gpu.iter().any(|n| n == "GaussianBlur"),
        "{d:?}"
    );
    // What crosses is u8: the cut is not after the (f32) Normalize.
    assert!(plan.cut < logical.ops.len());
    assert!(d.alternatives.iter().filter(|a| a.2).count() == 1);
}

#[test]
fn with_a_busy_gpu_or_a_slow_round_trip_everything_stays_on_the_cpu() {
    let logical = simclr_plan();
    // The GPU is busy with a long training step: adding kernels to it only lengthens the step.
    let mut plan = PhysicalPlan::declared(&logical, 16);
    place(
        &mut plan,
        &logical,
        &fast_gpu_profile(&logical),
        &goal(5000.0),
    );
    assert_eq!(plan.cut, logical.ops.len());
    // A wgpu device behind a slow link: results come back to the host, so each batch crosses
    // three times.
    let mut profile = fast_gpu_profile(&logical);
    let gpu = profile.gpu.as_mut().unwrap();
    gpu.backend = "wgpu".into();
    gpu.reads_back = true;
    gpu.h2d_gbps = 0.25;
    let mut plan = PhysicalPlan::declared(&logical, 16);
    place(&mut plan, &logical, &profile, &goal(0.0));
    assert_eq!(plan.cut, logical.ops.len());
    // No GPU in the profile at all.
    let mut plan = PhysicalPlan::declared(&logical, 16);
    place(&mut plan, &logical, &cpu_profile(&logical), &goal(0.0));
    assert_eq!(plan.cut, logical.ops.len());
}

#[test]
fn reading_results_back_makes_a_link_that_suffices_one_way_too_slow() {
    // Some link speed carries a u8 batch to the GPU fast enough, but not when the results come
    // back to the host as well (wgpu's readback: the batch crosses three times): the cut must
    // depend on `reads_back`, or a slow-link wgpu device would be chosen wrongly.
    let logical = simclr_plan();
    let cut = |gbps: f64, reads_back: bool| {
        let mut profile = fast_gpu_profile(&logical);
        let gpu = profile.gpu.as_mut().unwrap();
        gpu.backend = "wgpu".into();
        gpu.reads_back = reads_back;
        gpu.h2d_gbps = gbps;
        let mut plan = PhysicalPlan::declared(&logical, 16);
        place(&mut plan, &logical, &profile, &goal(0.0));
        plan.cut
    };
    let speeds: Vec<f64> = (0..16).map(|i| 0.05 * 1.5f64.powi(i)).collect();
    let flips: Vec<f64> = speeds
        .iter()
        .copied()
        .filter(|&g| cut(g, false) < logical.ops.len() && cut(g, true) == logical.ops.len())
        .collect();
    assert!(
        !flips.is_empty(),
        "no link speed in {speeds:?} changes the decision when results are read back"
    );
    // And no speed favours the GPU more when results must come back.
    for g in speeds {
        assert!(cut(g, true) >= cut(g, false), "at {g} GB/s");
    }
}

#[test]
fn a_cpu_pin_bounds_the_cut() {
    let b = Pipeline::builder(common::jpeg_source(2))
        .op(RandomResizedCrop::new(224))
        .op(RandomHorizontalFlip::new(0.5))
        .op(ColorJitter::new(0.4, 0.4, 0.4, 0.1))
        .op(RandomGrayscale::new(0.2))
        .op_on(GaussianBlur::new(23, (0.1, 2.0)), Placement::Cpu)
        .op(Normalize::imagenet());
    let logical = b.logical_plan();
    let mut plan = PhysicalPlan::declared(&logical, 16);
    place(&mut plan, &logical, &fast_gpu_profile(&logical), &goal(0.0));
    assert_eq!(
        plan.cut, 5,
        "only Normalize may follow the pinned blur onto the GPU"
    );
}

#[test]
fn cache_is_used_when_it_fits_the_budget_and_there_is_a_second_epoch() {
    let logical = simclr_plan();
    let profile = cpu_profile(&logical); // 10k samples × 480 KB decoded ≈ 4.6 GB
    let mut plan = PhysicalPlan::declared(&logical, 16);
    let big = Goal {
        memory_budget_bytes: 8 << 30,
        ..goal(0.0)
    };
    cache(&mut plan, &logical, &profile, &big);
    assert_eq!(plan.cache_bytes, 8 << 30);
    let small = Goal {
        memory_budget_bytes: 1 << 30,
        ..goal(0.0)
    };
    cache(&mut plan, &logical, &profile, &small);
    assert_eq!(plan.cache_bytes, 0, "over budget");
    let once = Goal { epochs: 1, ..big };
    cache(&mut plan, &logical, &profile, &once);
    assert_eq!(plan.cache_bytes, 0, "one epoch");
}

#[test]
fn explain_shows_every_rule_and_the_predicted_numbers() {
    let logical = simclr_plan();
    let g = goal(0.0);
    let fast = optimizer::optimize(&logical, &fast_gpu_profile(&logical), &g).unwrap();
    let text = fast.explain(&g);
    for needle in [
        "rule reorder",
        "rule fuse",
        "rule place",
        "rule parallelism",
        "rule cache",
    ] {
        assert!(text.contains(needle), "{needle} missing:\n{text}");
    }
    assert!(text.contains("[gpu]"), "{text}");
    let cpu = optimizer::optimize(&logical, &cpu_profile(&logical), &g).unwrap();
    let text = cpu.explain(&g);
    assert!(!text.contains("[gpu]"), "{text}");
    assert!(
        text.contains("RandomHorizontalFlip+Normalize (fused)"),
        "{text}"
    );
    assert!(cpu.predicted.step_ms < cpu.baseline.step_ms);
}

/// The optimized plan (reordered, fused) gives the same bytes as the declared, unfused plan.
#[test]
fn optimized_plan_produces_the_same_batches_on_the_cpu() {
    let source = || common::jpeg_source(12);
    let declared = |b: PipelineBuilder| {
        Workload::Simclr.add_ops(b.batch_size(4).threads(2).seed(5).shuffle(true).fuse(false))
    };
    let plain = declared(Pipeline::builder(source())).build().unwrap();
    let builder = declared(Pipeline::builder(source()));
    let profile = cpu_profile(&builder.logical_plan());
    let g = Goal {
        batch_size: 4,
        ..goal(0.0)
    };
    let (optimized, o) = builder.optimize(&profile, &g).unwrap();
    let optimized = optimized.threads(2).build().unwrap();
    assert_ne!(
        o.physical.order,
        (0..6).collect::<Vec<_>>(),
        "the plan was reordered"
    );
    for epoch in 0..2 {
        let a: Vec<_> = plain.epoch(epoch).unwrap().map(|b| b.unwrap()).collect();
        let b: Vec<_> = optimized
            .epoch(epoch)
            .unwrap()
            .map(|b| b.unwrap())
            .collect();
        assert_eq!(a.len(), b.len());
        for (x, y) in a.iter().zip(&b) {
            assert_eq!(x.sample_indices, y.sample_indices);
            assert!(
                x.bytes() == y.bytes(),
                "epoch {epoch} batch {} differs",
                x.index
            );
        }
    }
}

/// A generated speech dataset of `files` files up to `max_seconds` long (kept while the
/// directory guard lives).
fn speech_folder(
    files: usize,
    max_seconds: f64,
) -> (tempfile::TempDir, sluice::source::AudioFolder) {
    use sluice::gen::audio::{write_audio_dataset, AudioDatasetSpec};
    let dir = tempfile::tempdir().unwrap();
    let spec = AudioDatasetSpec {
        files,
        classes: 1,
        seed: 1,
        max_seconds,
    };
    write_audio_dataset(dir.path(), &spec, &|_| {}).unwrap();
    let folder = sluice::source::AudioFolder::open(dir.path()).unwrap();
    (dir, folder)
}

/// asr-val planned from hand-written costs (per sample, 10 s at 16 kHz): the spectral chain
/// (Spectrogram on) is the only GPU candidate, after the CPU-only Resample and PreEmphasis; a
/// fast GPU takes it, a CPU-only profile keeps everything, and explain names DecodeAudio and
/// says speech values are not cached.
#[test]
fn the_spectral_chain_goes_to_a_fast_gpu_and_stays_on_a_cpu_only_host() {
    let (_dir, folder) = speech_folder(2, 1.0);
    let plan = Workload::AsrVal
        .add_ops(Pipeline::builder(folder))
        .logical_plan();
    let (audio, frames) = (160_000.0 * 4.0, 1001.0);
    let costs: Vec<(f64, f64, f64)> = plan
        .ops
        .iter()
        .map(|op| match op.spec().kind {
            OpKind::AudioResample => (3e6, audio, audio),
            OpKind::PreEmphasis => (0.1e6, audio, audio),
            OpKind::Spectrogram => (3e6, audio, 257.0 * frames * 4.0),
            OpKind::MelScale => (0.4e6, 257.0 * frames * 4.0, 80.0 * frames * 4.0),
            _ => (0.3e6, 80.0 * frames * 4.0, 80.0 * frames * 4.0),
        })
        .collect();
    let mut profile = common::cost_profile(&plan.ops, costs);
    profile.decoded_bytes = audio;
    let g = Goal {
        batch_size: 32,
        ..goal(0.0)
    };
    let cpu = optimizer::optimize(&plan, &profile, &g).unwrap();
    assert_eq!(cpu.physical.cut, plan.ops.len(), "no GPU in the profile");
    for op in &mut profile.ops {
        op.gpu_ns = Some(op.cpu_ns / 200.0);
    }
    // Resample and PreEmphasis have no GPU kernel: never a GPU cost.
    profile.ops[0].gpu_ns = None;
    profile.ops[1].gpu_ns = None;
    profile.gpu = Some(GpuCost {
        backend: "cuda".into(),
        name: "H100 (hand-written)".into(),
        h2d_gbps: 20.0,
        reads_back: false,
        software: false,
    });
    let gpu = optimizer::optimize(&plan, &profile, &g).unwrap();
    assert_eq!(plan.ops[2].name(), "Spectrogram");
    assert_eq!(gpu.physical.cut, 2, "{}", gpu.explain(&g));
    let text = gpu.explain(&g);
    assert!(text.contains("0 DecodeAudio"), "{text}");
    assert!(text.contains("[pins allow cuts 2..=6]"), "{text}");
    assert!(
        text.contains("speech and text pipelines are not cached"),
        "{text}"
    );
}

/// cedar-asr's profile books the fused TimeStretch → ComplexNorm step (as the executor runs it)
/// on TimeStretch, and gives both operators their bytes: the complex intermediate is twice the
/// magnitudes; explain says the two run as one step.
#[test]
fn the_speech_profile_times_the_stretch_as_the_executor_fuses_it() {
    let (_dir, folder) = speech_folder(3, 1.5);
    let plan = Workload::CedarAsr
        .add_ops(Pipeline::builder(folder.clone()))
        .logical_plan();
    let cache = tempfile::tempdir().unwrap();
    let profile =
        optimizer::profile::for_pipeline(&folder, &plan.decoder, &plan.ops, None, cache.path())
            .unwrap();
    let at = |kind: OpKind| plan.ops.iter().position(|o| o.spec().kind == kind).unwrap();
    let (stretch, norm) = (at(OpKind::TimeStretch), at(OpKind::ComplexNorm));
    assert_eq!(norm, stretch + 1);
    let (s, n) = (&profile.ops[stretch], &profile.ops[norm]);
    assert!(s.cpu_ns > 0.0 && n.cpu_ns == 0.0, "{s:?} {n:?}");
    assert!(n.bytes_out > 0.0);
    assert_eq!(s.bytes_out, n.bytes_in);
    assert_eq!(n.bytes_in, 2.0 * n.bytes_out);
    let text = optimizer::optimize(&plan, &profile, &goal(0.0))
        .unwrap()
        .explain(&goal(0.0));
    assert!(
        text.contains("TimeStretch+ComplexNorm as one step"),
        "{text}"
    );
}

/// nlp planned from hand-written costs (per sample, 256 tokens): the lookup multiplies the
/// bytes 768× over the ids, so on a GPU that keeps its output on the device (CUDA device
/// batches: `reads_back` false) the cut lands at EmbeddingLookup, the only candidate after the
/// CPU-only Truncate and AddSpecialTokens, and explain says token ids cross; when results come
/// back to the host (every text batch today), moving the embeddings down and up again costs
/// more than the CPU's lookup, and everything stays on the CPU.
#[test]
fn the_embedding_lookup_goes_to_a_device_that_keeps_its_output() {
    let dir = tempfile::tempdir().unwrap();
    let corpus = sluice::gen::text::write_text_corpus(
        dir.path(),
        &sluice::gen::text::TextCorpusSpec {
            documents: 4,
            seed: 1,
        },
    )
    .unwrap();
    let source = sluice::source::open_text_path(&corpus, None).unwrap();
    let plan = Workload::Nlp
        .add_ops(Pipeline::builder_shared(source))
        .logical_plan();
    let (ids, rows) = (256.0 * 4.0, 256.0 * 768.0 * 4.0);
    let costs: Vec<(f64, f64, f64)> = plan
        .ops
        .iter()
        .map(|op| match op.spec().kind {
            OpKind::EmbeddingLookup => (30e3, ids, rows),
            _ => (0.2e3, ids, ids),
        })
        .collect();
    let mut profile = common::cost_profile(&plan.ops, costs);
    (profile.decode_ns, profile.decoded_bytes) = (200e3, ids);
    let g = Goal {
        batch_size: 64,
        ..goal(0.0)
    };
    let lookup = plan.ops.len() - 1;
    assert_eq!(plan.ops[lookup].name(), "EmbeddingLookup");
    profile.ops[lookup].gpu_ns = Some(2e3);
    let device = |reads_back: bool| GpuCost {
        backend: "cuda".into(),
        name: "H100 (hand-written)".into(),
        h2d_gbps: 20.0,
        reads_back,
        software: false,
    };
    profile.gpu = Some(device(false));
    let gpu = optimizer::optimize(&plan, &profile, &g).unwrap();
    let text = gpu.explain(&g);
    assert_eq!(gpu.physical.cut, lookup, "{text}");
    assert!(text.contains("GPU from EmbeddingLookup"), "{text}");
    profile.gpu = Some(device(true));
    let host = optimizer::optimize(&plan, &profile, &g).unwrap();
    assert_eq!(host.physical.cut, plan.ops.len(), "{}", host.explain(&g));
    // A pipeline that delivers device batches reads nothing back from a CUDA device.
    let device_batches = sluice::optimizer::LogicalPlan {
        device_batches: true,
        ..plan.clone()
    };
    let kept = optimizer::optimize(&device_batches, &profile, &g).unwrap();
    assert_eq!(kept.physical.cut, lookup, "{}", kept.explain(&g));
    profile.gpu.as_mut().unwrap().backend = "wgpu".into();
    let wgpu = optimizer::optimize(&device_batches, &profile, &g).unwrap();
    assert_eq!(wgpu.physical.cut, plan.ops.len(), "{}", wgpu.explain(&g));
}

/// A plan whose leading crop is pushed into decode is priced with the profile's window decode
/// (DCT-scaled with approximations allowed); unfused, cached, or crop-not-first plans with the
/// whole decode.
#[test]
fn crop_aware_decode_is_priced_with_the_window_decode() {
    let logical = Workload::Rn50Train
        .add_ops(Pipeline::builder(common::jpeg_source(2)))
        .logical_plan();
    let mut profile = cpu_profile(&logical);
    let (whole, window, scaled) = (1.2e6, 0.8e6, 0.5e6);
    (
        profile.decode_ns,
        profile.window_decode_ns,
        profile.scaled_decode_ns,
    ) = (whole, Some(window), Some(scaled));
    let exact = goal(0.0);
    let approx = Goal {
        allow_approx: true,
        ..goal(0.0)
    };
    let fused = PhysicalPlan {
        fuse: true,
        ..PhysicalPlan::declared(&logical, 16)
    };
    let unfused = PhysicalPlan::declared(&logical, 16);
    let cached = PhysicalPlan {
        cache_bytes: 1 << 30,
        ..fused.clone()
    };
    let decode =
        |plan: &PhysicalPlan, goal: &Goal| optimizer::decode_ns(plan, &logical, &profile, goal);
    assert_eq!(decode(&fused, &exact), window);
    assert_eq!(decode(&fused, &approx), scaled);
    assert_eq!(decode(&unfused, &exact), whole);
    assert_eq!(decode(&cached, &exact), whole);
    // The CPU time per batch moves by exactly the decode difference.
    let cpu =
        |plan: &PhysicalPlan, p: &CostProfile| optimizer::predict(plan, &logical, p, &exact).cpu_ms;
    let mut old = profile.clone();
    (old.window_decode_ns, old.scaled_decode_ns) = (None, None);
    let batch = exact.batch_size as f64;
    let saved_ms = (whole - window) * 1e-6 * batch / 16.0;
    assert!((cpu(&fused, &old) - cpu(&fused, &profile) - saved_ms).abs() < 1e-6);
    assert_eq!(cpu(&unfused, &old), cpu(&unfused, &profile));
}
