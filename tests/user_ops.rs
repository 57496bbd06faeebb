//! User-defined operators: closures and trait objects with a declared spec run like built-ins
//! (in order, on CPU threads, a random one on its own counter-RNG stream), their output is
//! checked against their declaration, failures name the sample and the operator, and the
//! optimizer and placement leave them where they are.

mod common;

use common::jpeg_source;
use sluice::audio::Features;
use sluice::gen::audio::{write_audio_dataset, AudioDatasetSpec};
use sluice::ops::{
    AudioOp, Cast, ColorJitter, Commute, Normalize, OpKind, Operator, RandomResizedCrop, SizeRule,
    UserOp, Value, ValueKind,
};
use sluice::optimizer::{reorder, Goal, PhysicalPlan};
use sluice::rng::SampleRng;
use sluice::source::AudioFolder;
use sluice::{ErrorPolicy, Pipeline, PipelineBuilder, Placement};

type Rng = SampleRng;

fn invert() -> UserOp {
    UserOp::new(
        "Invert",
        ValueKind::ImageU8,
        ValueKind::ImageU8,
        |v: &mut Value, _: &mut Rng| {
            let Value::Image(image) = v else {
                return Err("not an image".into());
            };
            image.data.iter_mut().for_each(|p| *p = 255 - *p);
            Ok(())
        },
    )
    .size(SizeRule::Same)
}

/// Every batch's bytes and sample indices.
fn run(p: &Pipeline, epoch: u32) -> Vec<(Vec<u8>, Vec<u64>)> {
    p.epoch(epoch)
        .unwrap()
        .map(|b| {
            let b = b.unwrap();
            let bytes = match &b.images {
                sluice::batch::Images::Dense(d) => d.bytes().to_vec(),
                sluice::batch::Images::Ragged(r) => r.bytes().to_vec(),
                sluice::batch::Images::Device(_) => unreachable!("host batches"),
            };
            (bytes, b.sample_indices.clone())
        })
        .collect()
}

fn crop_then(extra: Option<UserOp>, threads: usize) -> Pipeline {
    let b = Pipeline::builder(jpeg_source(10))
        .batch_size(4)
        .threads(threads)
        .seed(common::test_seed())
        .shuffle(true)
        .op(RandomResizedCrop::new(24));
    let b = match extra {
        Some(op) => b.op(op),
        None => b,
    };
    b.op(Cast {
        dtype: sluice::DType::U8,
        layout: sluice::Layout::Hwc,
    })
    .build()
    .unwrap()
}

#[test]
fn a_closure_runs_in_order_on_every_sample_and_keeps_the_batch_dense() {
    let plain = run(&crop_then(None, 2), 1);
    let inverted = run(&crop_then(Some(invert()), 2), 1);
    assert_eq!(plain.len(), inverted.len());
    for ((a, ia), (b, ib)) in plain.iter().zip(&inverted) {
        assert_eq!(ia, ib, "same samples in the same order");
        assert_eq!(a.len(), b.len(), "dense batches of the same shape");
        assert!(a.iter().zip(b).all(|(x, y)| *x == 255 - *y));
    }
}

/// A random operator that writes the first draw of its stream into the first four bytes.
struct StampFirstDraw;

impl Operator for StampFirstDraw {
    fn apply(&self, value: &mut Value, rng: &mut SampleRng) -> Result<(), String> {
        let Value::Image(image) = value else {
            return Err("not an image".into());
        };
        image.data[..4].copy_from_slice(&rng.next_u32().to_le_bytes());
        Ok(())
    }
}

#[test]
fn a_random_trait_object_draws_from_its_own_stream_whatever_the_threads() {
    let stamp = || {
        UserOp::new(
            "Stamp",
            ValueKind::ImageU8,
            ValueKind::ImageU8,
            StampFirstDraw,
        )
        .random(true)
        .size(SizeRule::Same)
    };
    let one = run(&crop_then(Some(stamp()), 1), 3);
    assert_eq!(one, run(&crop_then(Some(stamp()), 2), 3));
    assert_eq!(one, run(&crop_then(Some(stamp()), 3), 3));
    // Its stream is the one a built-in in its place would get: keyed by (seed, epoch, sample,
    // declared position + 1), the crop being operator 1.
    let per_sample = 24 * 24 * 3;
    for (bytes, indices) in &one {
        for (j, &index) in indices.iter().enumerate() {
            let want = SampleRng::new(common::test_seed(), 3, index, 2).next_u32();
            let got = &bytes[j * per_sample..j * per_sample + 4];
            assert_eq!(got, want.to_le_bytes(), "sample {index}");
        }
    }
    // Another epoch, other draws.
    assert_ne!(one, run(&crop_then(Some(stamp()), 1), 4));
}

fn first_error(b: PipelineBuilder) -> String {
    b.batch_size(2)
        .build()
        .unwrap()
        .epoch(0)
        .unwrap()
        .find_map(|b| b.err())
        .expect("an error")
        .to_string()
}

#[test]
fn a_failing_or_lying_operator_is_an_error_naming_the_sample_and_the_operator() {
    let base = || Pipeline::builder(jpeg_source(4)).op(RandomResizedCrop::new(16));
    let failing = UserOp::new(
        "RejectOdd",
        ValueKind::ImageU8,
        ValueKind::ImageU8,
        |_: &mut Value, _: &mut Rng| Err("no odd samples here".to_string()),
    );
    let msg = first_error(base().op(failing.clone()));
    assert!(
        msg.contains("RejectOdd") && msg.contains("no odd samples here") && msg.contains("sample"),
        "{msg}"
    );
    // Under the skip policy each failure is skipped and counted.
    let p = base()
        .op(failing)
        .on_error(ErrorPolicy::Skip)
        .batch_size(2)
        .build()
        .unwrap();
    let kept: usize = p.epoch(0).unwrap().map(|b| b.unwrap().len()).sum();
    assert_eq!((kept, p.stats().skipped), (0, 4));

    // Declared "same size" but halves the image.
    let shrink = UserOp::new(
        "Shrink",
        ValueKind::ImageU8,
        ValueKind::ImageU8,
        |v: &mut Value, _: &mut Rng| {
            if let Value::Image(i) = v {
                *i = sluice::Image::filled(i.width / 2, i.height, 0);
            }
            Ok(())
        },
    )
    .size(SizeRule::Same);
    let msg = first_error(base().op(shrink));
    assert!(
        msg.contains("Shrink") && msg.contains("8x16 image from 16x16"),
        "{msg}"
    );

    // Declared image out, hands back features.
    let wrong_kind = UserOp::new(
        "Morph",
        ValueKind::ImageU8,
        ValueKind::ImageU8,
        |v: &mut Value, _: &mut Rng| {
            *v = Value::Features(Features::zeros(2, 2));
            Ok(())
        },
    );
    let msg = first_error(base().op(wrong_kind));
    assert!(
        msg.contains("Morph") && msg.contains("returned Features"),
        "{msg}"
    );

    // A panic is caught and reported like an error.
    let panics = UserOp::new(
        "Boom",
        ValueKind::ImageU8,
        ValueKind::ImageU8,
        |_: &mut Value, _: &mut Rng| -> Result<(), String> { panic!("user bug") },
    );
    let msg = first_error(base().op(panics));
    assert!(
        msg.contains("Boom") && msg.contains("panicked: user bug"),
        "{msg}"
    );
}

#[test]
fn build_checks_a_user_operators_kinds_against_its_neighbours() {
    let audio_gain = UserOp::new(
        "Gain",
        ValueKind::Audio,
        ValueKind::Audio,
        |_: &mut Value, _: &mut Rng| Ok(()),
    );
    let err = Pipeline::builder(jpeg_source(2))
        .op(audio_gain)
        .build()
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("Gain (operator 1) takes audio but DecodeImage produces an image"),
        "{err}"
    );
    let bad = UserOp::new(
        "ToAudio",
        ValueKind::ImageU8,
        ValueKind::Audio,
        |_: &mut Value, _: &mut Rng| Ok(()),
    );
    let err = Pipeline::builder(jpeg_source(2))
        .op(bad)
        .build()
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("ToAudio (operator 1)") && err.contains("map an image to an image"),
        "{err}"
    );
}

fn audio_folder(files: usize) -> (tempfile::TempDir, AudioFolder) {
    let dir = tempfile::tempdir().unwrap();
    let spec = AudioDatasetSpec {
        files,
        classes: 2,
        seed: 3,
        max_seconds: 1.5,
    };
    write_audio_dataset(dir.path(), &spec, &|_| {}).unwrap();
    let folder = AudioFolder::open(dir.path()).unwrap();
    (dir, folder)
}

/// Per-sample feature matrices of a padded batch, cut to their lengths.
fn features_of(p: &Pipeline) -> Vec<(u64, Vec<f32>)> {
    let mut out = Vec::new();
    for b in p.epoch(0).unwrap() {
        let b = b.unwrap();
        let d = b.dense().unwrap();
        let (bins, longest) = (d.shape[1], d.shape[2]);
        let values = d.to_f32_vec();
        for (j, &index) in b.sample_indices.iter().enumerate() {
            let mut v = Vec::new();
            for bin in 0..bins {
                let row = (j * bins + bin) * longest;
                v.extend_from_slice(&values[row..row + b.lengths[j]]);
            }
            out.push((index, v));
        }
    }
    out
}

#[test]
fn user_operators_take_and_give_audio_and_features() {
    let (_dir, folder) = audio_folder(5);
    let front = |b: PipelineBuilder| {
        b.batch_size(2)
            .threads(2)
            .decode_audio(Default::default())
            .op(AudioOp::Resample { rate: 8_000 })
    };
    // Audio → features by a closure: frame energies over 80-sample frames (1 bin).
    let energy = UserOp::new(
        "FrameEnergy",
        ValueKind::Audio,
        ValueKind::Features,
        |v: &mut Value, _: &mut Rng| {
            let Value::Audio(a) = v else {
                return Err("not audio".into());
            };
            let data: Vec<f32> = a.channels[0]
                .chunks(80)
                .map(|c| c.iter().map(|x| x * x).sum())
                .collect();
            let mut f = Features::zeros(1, data.len());
            f.data = data;
            *v = Value::Features(f);
            Ok(())
        },
    );
    let double = UserOp::new(
        "Double",
        ValueKind::Features,
        ValueKind::Features,
        |v: &mut Value, _: &mut Rng| {
            if let Value::Features(f) = v {
                f.data.iter_mut().for_each(|x| *x *= 2.0);
            }
            Ok(())
        },
    );
    let once = features_of(
        &front(Pipeline::builder(folder.clone()))
            .op(energy.clone())
            .build()
            .unwrap(),
    );
    let twice = features_of(
        &front(Pipeline::builder(folder.clone()))
            .op(energy)
            .op(double)
            .build()
            .unwrap(),
    );
    assert_eq!(once.len(), 5);
    for ((i, a), (j, b)) in once.iter().zip(&twice) {
        assert_eq!(i, j);
        assert_eq!(a.len(), b.len());
        assert!(a.iter().zip(b).all(|(x, y)| 2.0 * x == *y), "sample {i}");
        // 1 + samples/80 frames at 8 kHz, each one frame's energy.
        assert!(a.iter().any(|x| *x > 0.0));
    }
}

#[test]
fn the_optimizer_moves_a_user_operator_only_across_what_it_declares_it_commutes_with() {
    // Jitter → user op → crop: with approximate reorders allowed the crop would move first,
    // but it cannot cross an opaque operator.
    let declared = |user: UserOp| {
        Pipeline::builder(jpeg_source(2))
            .op(ColorJitter::new(0.4, 0.4, 0.4, 0.1))
            .op(user)
            .op(RandomResizedCrop::new(224))
            .op(Normalize::imagenet())
            .logical_plan()
    };
    let goal = Goal {
        batch_size: 256,
        train_step_ms: 0.0,
        epochs: 1,
        memory_budget_bytes: 0,
        allow_approx: true,
    };
    // Per sample, one core: (ns, bytes in, bytes out) of jitter, the user op, crop, normalize.
    let profile = |l: &sluice::optimizer::LogicalPlan| {
        let costs = vec![
            (900e3, 480e3, 480e3),
            (100e3, 480e3, 480e3),
            (150e3, 480e3, 150_528.0),
            (80e3, 150_528.0, 602_112.0),
        ];
        common::cost_profile(&l.ops, costs)
    };
    let opaque = declared(invert());
    let mut plan = PhysicalPlan::declared(&opaque, 4);
    reorder(&mut plan, &opaque, &profile(&opaque), &goal);
    assert_eq!(plan.order, vec![0, 1, 2, 3], "nothing crosses Invert");
    let commuting = declared(invert().commutes_with(OpKind::RandomResizedCrop, Commute::Exact));
    let mut plan = PhysicalPlan::declared(&commuting, 4);
    reorder(&mut plan, &commuting, &profile(&commuting), &goal);
    // Declared to commute exactly with the crop: the crop crosses it (and then the jitter,
    // approximately, as allowed).
    assert_eq!(plan.order, [2, 0, 1, 3], "the crop moved before Invert");
}

#[test]
fn placement_keeps_a_user_operator_and_everything_before_it_on_the_cpu() {
    use sluice::placement::{resolve, GpuAvailability};
    let ops: Vec<sluice::ops::Op> = vec![
        RandomResizedCrop::new(32).into(),
        invert().into(),
        ColorJitter::new(0.4, 0.4, 0.4, 0.1).into(),
        Normalize::imagenet().into(),
    ];
    let gpu = GpuAvailability::Available {
        name: "test gpu".into(),
        software: false,
    };
    let none = vec![None; ops.len()];
    for default in [Placement::Wgpu, Placement::Auto, Placement::Cuda] {
        let cut = resolve(&ops, &none, default, &gpu, true).unwrap();
        assert_eq!(cut.cut, 2, "{default:?}: {}", cut.reason);
    }
    // Pinning the user operator (or anything before it) to the GPU is refused, saying why.
    let mut pins = none.clone();
    pins[1] = Some(Placement::Wgpu);
    let err = resolve(&ops, &pins, Placement::Cpu, &gpu, true).unwrap_err();
    assert!(
        err.contains(
            "Invert (operator 2) is pinned to the GPU, but Invert (operator 2) has no GPU kernel"
        ),
        "{err}"
    );
    let mut pins = none;
    pins[0] = Some(Placement::Cuda);
    let err = resolve(&ops, &pins, Placement::Cpu, &gpu, true).unwrap_err();
    assert!(
        err.contains("Invert (operator 2) has no GPU kernel and follows it"),
        "{err}"
    );
}
