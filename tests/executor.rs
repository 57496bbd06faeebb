//! The CPU executor: determinism across thread counts, prefetch depths and fusion; exact sample
//! accounting per epoch; order; clean early shutdown; bounded buffer reuse.

mod common;

use common::jpeg_source;
use sluice::bench::Workload;
use sluice::{Batch, Pipeline, PipelineBuilder};
use std::collections::HashSet;
use std::sync::Arc;

fn simclr(source: sluice::source::InMemory) -> PipelineBuilder {
    Workload::Simclr.add_ops(Pipeline::builder(source))
}

/// Everything observable about an epoch: bytes, labels, sample order, batch sizes.
fn epoch_contents(p: &Pipeline, epoch: u32) -> Vec<(Vec<u8>, Vec<i64>, Vec<u64>)> {
    p.epoch(epoch)
        .unwrap()
        .map(|b| {
            let b: Batch = b.unwrap();
            (
                b.bytes().to_vec(),
                b.labels.clone(),
                b.sample_indices.clone(),
            )
        })
        .collect()
}

#[test]
fn same_seed_gives_identical_batches_for_any_threads_prefetch_or_fusion() {
    let source = jpeg_source(23);
    // simclr fuses only its normalize; rn50-train fuses crop + flip + normalize into one step.
    for workload in [Workload::Simclr, Workload::Rn50Train, Workload::Rn50Val] {
        let build = |threads, prefetch, fuse| {
            workload
                .add_ops(Pipeline::builder(source.clone()))
                .batch_size(5)
                .shuffle(true)
                .seed(1234)
                .threads(threads)
                .prefetch(prefetch)
                .fuse(fuse)
                .build()
                .unwrap()
        };
        let unfused = build(1, 1, false);
        assert_eq!(unfused.steps().len(), unfused.ops().len());
        let fused = build(2, 1, true);
        if workload == Workload::Rn50Train {
            assert_eq!(
                fused.steps().len(),
                1,
                "rn50-train's tail is one fused step"
            );
        }
        let reference = epoch_contents(&unfused, 3);
        // 23 samples in batches of 5: 4 full + 3.
        assert_eq!(reference.len(), 5);
        // Fused, each leads with a crop (RandomResizedCrop, or Resize → CenterCrop): decoded by
        // window (crop-aware), which must not change a byte; unfused, every image is whole.
        assert_eq!(unfused.stats().window_decodes, 0);
        for (threads, prefetch, fuse) in [(2, 1, true), (8, 4, true), (2, 3, false), (8, 1, false)]
        {
            let pipeline = build(threads, prefetch, fuse);
            let got = epoch_contents(&pipeline, 3);
            let windows = pipeline.stats().window_decodes;
            assert!(
                fuse == (windows > 15),
                "fuse {fuse}: {windows} window decodes of 23"
            );
            assert!(
                got == reference,
                "{workload:?}: threads {threads} prefetch {prefetch} fuse {fuse} changed the output"
            );
        }
    }
}

#[test]
fn seed_and_epoch_change_the_augmentations_and_order() {
    let source = jpeg_source(10);
    let p = |seed| {
        simclr(source.clone())
            .batch_size(10)
            .shuffle(true)
            .seed(seed)
            .threads(2)
            .build()
            .unwrap()
    };
    let a = p(1);
    assert_ne!(epoch_contents(&a, 0), epoch_contents(&a, 1));
    assert_ne!(epoch_contents(&a, 0), epoch_contents(&p(2), 0));
    assert_eq!(epoch_contents(&a, 0), epoch_contents(&p(1), 0));
}

#[test]
fn every_sample_appears_exactly_once_per_epoch() {
    let n = 37;
    let source = jpeg_source(n);
    for drop_last in [false, true] {
        let p = Workload::Rn50Train
            .add_ops(Pipeline::builder(source.clone()))
            .batch_size(8)
            .shuffle(true)
            .drop_last(drop_last)
            .threads(3)
            .build()
            .unwrap();
        for epoch in 0..2 {
            let mut seen = Vec::new();
            let mut sizes = Vec::new();
            for batch in p.epoch(epoch).unwrap() {
                let batch = batch.unwrap();
                let dense = batch.dense().expect("rn50-train batches are dense");
                assert_eq!(dense.shape[1..], [3, 224, 224]);
                assert_eq!(dense.shape[0], batch.len());
                assert_eq!(dense.bytes().len(), batch.len() * 3 * 224 * 224 * 4);
                for (i, &idx) in batch.sample_indices.iter().enumerate() {
                    assert_eq!(batch.labels[i], (idx % 10) as i64, "label of sample {idx}");
                }
                sizes.push(batch.len());
                seen.extend(batch.sample_indices.clone());
            }
            let unique: HashSet<_> = seen.iter().collect();
            assert_eq!(unique.len(), seen.len(), "a sample was duplicated");
            if drop_last {
                assert_eq!(sizes, vec![8; 4]);
            } else {
                assert_eq!(sizes, [8, 8, 8, 8, 5]);
                let mut sorted = seen.clone();
                sorted.sort();
                assert_eq!(
                    sorted,
                    (0..n as u64).collect::<Vec<_>>(),
                    "a sample was lost"
                );
            }
        }
    }
}

#[test]
fn unshuffled_order_is_dataset_order() {
    let p = Workload::Rn50Val
        .add_ops(Pipeline::builder(jpeg_source(9)))
        .batch_size(4)
        .threads(4)
        .build()
        .unwrap();
    let order: Vec<u64> = p
        .epoch(0)
        .unwrap()
        .flat_map(|b| b.unwrap().sample_indices)
        .collect();
    assert_eq!(order, (0..9).collect::<Vec<_>>());
}

#[test]
fn dropping_the_iterator_mid_epoch_stops_cleanly_and_the_pipeline_stays_usable() {
    let source = jpeg_source(40);
    let p = simclr(source)
        .batch_size(4)
        .threads(2)
        .prefetch(4)
        .seed(5)
        .build()
        .unwrap();
    let full = epoch_contents(&p, 0);
    let mut it = p.epoch(0).unwrap();
    let first = it.next().unwrap().unwrap();
    assert_eq!(first.bytes(), full[0].0.as_slice());
    let guard = common::watchdog(
        "dropping the iterator mid-epoch",
        std::time::Duration::from_secs(300),
    );
    drop(it); // must cancel the queued batches and wait for running ones
    drop(guard);
    drop(first);
    assert_eq!(epoch_contents(&p, 0), full);
}

#[test]
fn batch_buffers_are_reused_after_warm_up() {
    let p = Workload::Rn50Train
        .add_ops(Pipeline::builder(jpeg_source(24)))
        .batch_size(2)
        .prefetch(2)
        .threads(2)
        .build()
        .unwrap();
    for epoch in 0..4 {
        let _ = epoch_contents(&p, epoch);
    }
    // 48 batches went by; at most prefetch (2) in flight plus the one the consumer holds were
    // ever alive at once, so at most 3 buffers were ever allocated.
    let allocations = p.stats().buffer_allocations;
    assert!(
        (1..=3).contains(&allocations),
        "{allocations} buffers allocated for 48 batches with prefetch 2"
    );
}

#[test]
fn decode_only_pipeline_yields_ragged_batches_with_true_sizes() {
    let p = Pipeline::builder(jpeg_source(5))
        .batch_size(5)
        .threads(2)
        .build()
        .unwrap();
    let batch = p.epoch(0).unwrap().next().unwrap().unwrap();
    let ragged = batch.ragged().expect("no fixed-size operator: ragged");
    for (i, shape) in ragged.shapes.iter().enumerate() {
        let (w, h) = sluice::gen::image_size(7, i as u64);
        assert_eq!(shape, &vec![h as usize, w as usize, 3]);
        assert_eq!(ragged.sample(i).len(), w as usize * h as usize * 3);
    }
}

#[test]
fn stage_timers_count_every_sample() {
    let p = simclr(jpeg_source(6))
        .batch_size(3)
        .threads(2)
        .build()
        .unwrap();
    let _ = epoch_contents(&p, 0);
    let stats = p.stats();
    assert_eq!(stats.samples, 6);
    let names: Vec<_> = stats.stages.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "read",
            "DecodeImage",
            "RandomResizedCrop",
            "RandomHorizontalFlip",
            "ColorJitter",
            "RandomGrayscale",
            "GaussianBlur",
            "Normalize"
        ]
    );
    assert!(stats.stages.iter().all(|s| s.calls == 6));
}

#[test]
fn fused_crop_flip_normalize_step_is_planned_for_rn50() {
    let p = Workload::Rn50Train
        .add_ops(Pipeline::builder(jpeg_source(2)))
        .build()
        .unwrap();
    let names: Vec<_> = p.steps().iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["RandomResizedCrop+RandomHorizontalFlip+Normalize"]);
    let p = Workload::Rn50Val
        .add_ops(Pipeline::builder(jpeg_source(2)))
        .build()
        .unwrap();
    let names: Vec<_> = p.steps().iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["Resize", "CenterCrop", "Normalize"]);
    // Unfused: one step per operator.
    let p = Workload::Rn50Train
        .add_ops(Pipeline::builder(jpeg_source(2)))
        .fuse(false)
        .build()
        .unwrap();
    assert_eq!(p.steps().len(), 3);
}

#[test]
fn invalid_pipelines_are_rejected_with_a_reason() {
    use sluice::ops::{Normalize, RandomHorizontalFlip};
    let err = Pipeline::builder(jpeg_source(2))
        .op(Normalize::imagenet())
        .op(RandomHorizontalFlip::new(0.5))
        .build()
        .err()
        .expect("image op after Normalize must be rejected");
    assert!(err.to_string().contains("RandomHorizontalFlip"), "{err}");
    let err = Pipeline::builder(jpeg_source(2))
        .batch_size(0)
        .build()
        .err()
        .unwrap();
    assert!(err.to_string().contains("batch_size"), "{err}");
    use sluice::ops::{ColorJitter, GaussianBlur, RandomResizedCrop};
    let bad: Vec<(sluice::ops::Op, &str)> = vec![
        (GaussianBlur::new(4, (0.1, 2.0)).into(), "must be odd"),
        (GaussianBlur::new(5, (0.0, 2.0)).into(), "sigma"),
        (RandomHorizontalFlip::new(1.5).into(), "probability 1.5"),
        (ColorJitter::new(0.4, 0.4, 0.4, 0.7).into(), "hue"),
        (RandomResizedCrop::new(0).into(), "at least 1x1"),
        (
            Normalize {
                std: [0.2, 0.0, 0.2],
                ..Normalize::imagenet()
            }
            .into(),
            "std 0",
        ),
    ];
    for (op, want) in bad {
        let name = op.name().to_string();
        let err = Pipeline::builder(jpeg_source(2))
            .op(op)
            .build()
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains(&name) && err.contains(want), "{err}");
    }
}

#[test]
fn cast_pipeline_keeps_u8_values_and_samples_come_out_as_tensors() {
    use sluice::ops::{Cast, CenterCrop};
    use sluice::tensor::{DType, Layout};
    let source = jpeg_source(3);
    let u8_pipeline = Pipeline::builder(source.clone())
        .op(CenterCrop::new(32))
        .batch_size(3)
        .build()
        .unwrap();
    let raw = u8_pipeline.epoch(0).unwrap().next().unwrap().unwrap();
    for (dtype, layout) in [(DType::F32, Layout::Hwc), (DType::F16, Layout::Chw)] {
        let p = Pipeline::builder(source.clone())
            .op(CenterCrop::new(32))
            .op(Cast { dtype, layout })
            .batch_size(3)
            .build()
            .unwrap();
        let batch = p.epoch(0).unwrap().next().unwrap().unwrap();
        for i in 0..3 {
            let sample = batch.sample_owned(i);
            let pixels = raw.sample_owned(i).tensor;
            assert_eq!(pixels.shape, [32, 32, 3]);
            assert_eq!((sample.index, sample.label), (i as u64, i as i64));
            assert_eq!(sample.tensor.dtype, dtype);
            for y in 0..32 {
                for x in 0..32 {
                    for c in 0..3 {
                        let at = match layout {
                            Layout::Hwc => (y * 32 + x) * 3 + c,
                            Layout::Chw => c * 32 * 32 + y * 32 + x,
                        };
                        let want = f32::from(pixels.data[(y * 32 + x) * 3 + c]);
                        assert_eq!(sample.tensor.get_f32(at), want, "{dtype:?} {layout:?}");
                    }
                }
            }
        }
    }
}

#[test]
fn prefix_cache_gives_identical_batches_and_respects_its_budget() {
    let source = jpeg_source(12);
    for workload in [Workload::Simclr, Workload::Rn50Val] {
        let build = |cache_bytes| {
            workload
                .add_ops(Pipeline::builder(source.clone()))
                .batch_size(5)
                .shuffle(true)
                .seed(3)
                .threads(3)
                .cache_bytes(cache_bytes)
                .build()
                .unwrap()
        };
        let plain = build(0);
        let cached = build(1 << 30);
        for epoch in 0..3 {
            assert!(
                epoch_contents(&plain, epoch) == epoch_contents(&cached, epoch),
                "{workload:?} epoch {epoch}: the cache changed the output"
            );
        }
        let stats = cached.stats();
        assert_eq!(
            stats.cache_hits, 24,
            "{workload:?}: epochs 1 and 2 served from cache"
        );
        assert!(
            stats.stages[1].calls == 12,
            "{workload:?}: decoded once per sample"
        );

        // A budget for about 3 samples: never exceeded, the rest recomputed.
        let one = stats.cache_bytes / 12;
        let small = build((3 * one + one / 2) as usize);
        for epoch in 0..2 {
            assert!(epoch_contents(&small, epoch) == epoch_contents(&plain, epoch));
        }
        let s = small.stats();
        assert!(
            s.cache_bytes <= 3 * one + one / 2,
            "{} > budget",
            s.cache_bytes
        );
        assert!(
            s.cache_hits > 0 && s.cache_hits < 12,
            "{workload:?}: {} hits",
            s.cache_hits
        );
    }
}

#[test]
fn cached_prefix_is_never_fused_into_the_tail() {
    use sluice::ops::{Normalize, Resize};
    let build = |cache| {
        Pipeline::builder(jpeg_source(2))
            .op(Resize::new(64))
            .op(Normalize::imagenet())
            .cache_bytes(cache)
            .build()
            .unwrap()
    };
    let names =
        |p: &Pipeline| -> Vec<String> { p.steps().iter().map(|s| s.name.clone()).collect() };
    assert_eq!(names(&build(0)), ["Resize+Normalize"]);
    assert_eq!(names(&build(1 << 20)), ["Resize", "Normalize"]);
    assert!(build(1 << 20).describe().contains("DecodeImage+Resize"));
}

/// A source whose samples of batch k can be read only once the consumer has asked for batch k:
/// every batch is still being made when it is asked for, so the consumer waits on each one,
/// however fast the machine decodes (no timing involved).
struct AskGatedSource {
    inner: sluice::source::InMemory,
    /// Batch number of each sample in the epoch being run.
    batch_of: Vec<u64>,
    asked: std::sync::Mutex<u64>,
    opened: std::sync::Condvar,
}

impl AskGatedSource {
    fn ask(&self, batches: u64) {
        *self.asked.lock().unwrap() = batches;
        self.opened.notify_all();
    }
}

impl sluice::source::Source for AskGatedSource {
    fn len(&self) -> usize {
        self.inner.len()
    }
    fn label(&self, index: u64) -> i64 {
        self.inner.label(index)
    }
    fn origin(&self, index: u64) -> String {
        self.inner.origin(index)
    }
    fn read(&self, index: u64, buf: &mut Vec<u8>) -> std::io::Result<()> {
        let batch = self.batch_of[index as usize];
        let asked = self.asked.lock().unwrap();
        drop(self.opened.wait_while(asked, |a| *a <= batch).unwrap());
        self.inner.read(index, buf)
    }
    fn describe(&self) -> String {
        "ask-gated".into()
    }
}

#[test]
fn adaptive_prefetch_moves_the_depth_but_never_the_results() {
    let (n, batch_size, seed) = (24, 2, 99);
    // The gated run blocks its worker in `read`, so it has one worker: it takes the batches in
    // order (FIFO from the epoch iterator) and, alone in the pool, never steals a later batch's
    // read while a join for an earlier batch is pending (with several workers rayon's work
    // stealing can do exactly that and deadlock on the gate). Results do not depend on the
    // thread count: the reference runs with two.
    let build = |adaptive: bool, source: Arc<dyn sluice::source::Source>| {
        let b = Workload::Simclr
            .add_ops(Pipeline::builder_shared(source))
            .batch_size(batch_size)
            .shuffle(true)
            .seed(seed)
            .threads(if adaptive { 1 } else { 2 })
            .prefetch(2);
        if adaptive { b.adaptive_prefetch(6) } else { b }
            .build()
            .unwrap()
    };
    let fixed = build(false, Arc::new(jpeg_source(n)));
    let reference = epoch_contents(&fixed, 0);
    assert_eq!(fixed.stats().prefetch_adjustments, 0);
    let order = sluice::rng::epoch_order(n, seed, 0, true);
    let mut batch_of = vec![0; n];
    for (position, &sample) in order.iter().enumerate() {
        batch_of[sample as usize] = (position / batch_size) as u64;
    }
    let gated = Arc::new(AskGatedSource {
        inner: jpeg_source(n),
        batch_of,
        asked: Default::default(),
        opened: Default::default(),
    });
    let adaptive = build(true, gated.clone());
    let _watchdog = common::watchdog(
        "the ask-gated adaptive epoch",
        std::time::Duration::from_secs(300),
    );
    let mut it = adaptive.epoch(0).unwrap();
    let mut got = Vec::new();
    for k in 1.. {
        // The consumer asks for batch k-1: only now may its samples be read.
        gated.ask(k);
        let Some(b) = it.next() else { break };
        let b = b.unwrap();
        got.push((
            b.bytes().to_vec(),
            b.labels.clone(),
            b.sample_indices.clone(),
        ));
    }
    drop(it);
    assert!(got == reference, "adaptive prefetch changed the output");
    let stats = adaptive.stats();
    // Waiting on every batch: the controller moved the depth up, within its ceiling.
    assert!(stats.prefetch_adjustments > 0, "{stats:?}");
    assert!(
        stats.prefetch_depth > 2 && stats.prefetch_depth <= 6,
        "{stats:?}"
    );
}

#[test]
fn resuming_at_a_position_gives_exactly_the_uninterrupted_tail() {
    let p = simclr(jpeg_source(23))
        .batch_size(5)
        .shuffle(true)
        .seed(77)
        .threads(2)
        .build()
        .unwrap();
    let full = epoch_contents(&p, 2);
    for start in [0, 1, 3, 5] {
        let it = p.epoch_from(2, start).unwrap();
        assert_eq!(it.next_index(), start);
        let tail: Vec<_> = it
            .map(|b| {
                let b = b.unwrap();
                (
                    b.bytes().to_vec(),
                    b.labels.clone(),
                    b.sample_indices.clone(),
                )
            })
            .collect();
        assert!(
            tail == full[start as usize..],
            "resuming at batch {start} changed the batches"
        );
    }
    let err = p.epoch_from(2, 6).err().expect("past the end is refused");
    assert!(err.to_string().contains("has 5 batches"), "{err}");
}

#[test]
fn waiting_in_slices_loses_and_duplicates_nothing() {
    let p = simclr(jpeg_source(17))
        .batch_size(4)
        .seed(5)
        .threads(2)
        .build()
        .unwrap();
    let want = epoch_contents(&p, 0);
    let mut it = p.epoch(0).unwrap();
    let (mut got, mut timeouts) = (Vec::new(), 0u64);
    loop {
        match it.next_within(std::time::Duration::from_micros(50)) {
            sluice::exec::Wait::Ready(b) => {
                let b = b.unwrap();
                got.push((
                    b.bytes().to_vec(),
                    b.labels.clone(),
                    b.sample_indices.clone(),
                ));
            }
            sluice::exec::Wait::TimedOut => timeouts += 1,
            sluice::exec::Wait::Finished => break,
        }
    }
    println!("{timeouts} waits timed out");
    assert!(got == want, "slice-by-slice waiting changed the epoch");
    assert_eq!(it.next_index(), want.len() as u64);
}
