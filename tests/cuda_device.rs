//! Device batches through the CUDA transfer engine (pinned staging ring, copy and compute
//! streams): the same samples and values as the CPU path, memory that stops growing, the
//! training-step stand-in reading every word, slots rewritten only after the training stream's
//! release (every batch's checksum checked under long queued steps), batches dropped without a
//! release counted, the caller's current context left alone, the device the caller names, and
//! a loop that hoards batches getting an error instead of a hang. Without a CUDA device each test prints "skipped: ..." (SLUICE_REQUIRE_CUDA
//! makes that a failure, for scripts/gpu-check.sh); the fallback test runs everywhere.

mod common;

use sluice::backend::cuda::{self, TrainStep};
use sluice::bench::Workload;
use sluice::gen::encode_jpeg;
use sluice::ops::{CenterCrop, ColorJitter, Normalize, RandomHorizontalFlip, RandomResizedCrop};
use sluice::source::InMemory;
use sluice::{Batch, Pipeline, PipelineBuilder, Placement};

fn device_or_skip() -> bool {
    common::or_skip(cuda::probe(0), "SLUICE_REQUIRE_CUDA")
        .map(|device| eprintln!("CUDA device: {device}"))
        .is_some()
}

/// `n` JPEGs of one size (so every full batch needs the same slot memory).
fn same_size_source(n: usize) -> InMemory {
    let mut r = common::rng(common::test_seed(), 9);
    InMemory::new(
        (0..n)
            .map(|i| {
                let image = common::random_image(&mut r, 96, 80);
                (encode_jpeg(&image, 90), i as i64 % 7)
            })
            .collect(),
    )
}

fn builder(source: InMemory) -> PipelineBuilder {
    Pipeline::builder(source)
        .batch_size(4)
        .threads(2)
        .prefetch(2)
        .shuffle(true)
        .seed(5)
}

/// (sample indices, labels, shape, bytes) of one batch.
type HostBatch = (Vec<u64>, Vec<i64>, Vec<usize>, Vec<u8>);

/// Every batch of `epoch`, device batches copied back.
fn host_view(p: &Pipeline, epoch: u32) -> Vec<HostBatch> {
    p.epoch(epoch)
        .unwrap()
        .map(|b| {
            let b: Batch = b.unwrap();
            let (shape, bytes) = match b.device() {
                Some(d) => (d.shape().to_vec(), d.to_host().unwrap()),
                None => (b.dense().unwrap().shape.clone(), b.bytes().to_vec()),
            };
            (b.sample_indices.clone(), b.labels.clone(), shape, bytes)
        })
        .collect()
}

/// Same samples, labels and shapes; f32 values within `tolerance`. Returns the largest error.
fn compare(cpu: &[HostBatch], dev: &[HostBatch], tolerance: f32) -> f32 {
    assert_eq!(cpu.len(), dev.len());
    let mut worst = 0f32;
    for ((ci, cl, cs, cb), (di, dl, ds, db)) in cpu.iter().zip(dev) {
        assert_eq!((ci, cl, cs), (di, dl, ds));
        let (c, d): (&[f32], &[f32]) = (bytemuck::cast_slice(cb), bytemuck::cast_slice(db));
        assert_eq!(c.len(), d.len(), "batch {ci:?}: values");
        for (j, (a, b)) in c.iter().zip(d).enumerate() {
            let e = (a - b).abs();
            assert!(
                e <= tolerance,
                "value {j}: device {b} (unwritten if NaN) cpu {a}"
            );
            worst = worst.max(e);
        }
    }
    worst
}

#[test]
fn without_cuda_device_batches_fall_back_to_host_batches_with_the_reason() {
    let p = Workload::Rn50Train
        .add_ops(builder(common::jpeg_source(6)))
        .device_batches(true)
        .build()
        .unwrap();
    match cuda::probe(0) {
        Err(why) => {
            assert!(!p.device_batches());
            assert!(
                p.placement_reason().contains("device batches off"),
                "{}",
                p.placement_reason()
            );
            assert!(p.placement_reason().contains(&why));
            // Same API, host memory.
            assert!(p.epoch(0).unwrap().all(|b| b.unwrap().dense().is_some()));
        }
        Ok(_) => assert!(p.device_batches(), "{}", p.placement_reason()),
    }
    // Device batches are CUDA memory: asking for them on wgpu is a pipeline error.
    let err = Workload::Rn50Train
        .add_ops(builder(common::jpeg_source(6)).placement(Placement::Wgpu))
        .device_batches(true)
        .build()
        .err()
        .expect("wgpu and device batches conflict");
    assert!(err.to_string().contains("CUDA memory"), "{err}");
}

#[test]
fn device_batches_equal_the_cpu_batches_and_memory_stops_growing() {
    if !device_or_skip() {
        return;
    }
    let ops = |b: PipelineBuilder| {
        b.op(RandomResizedCrop::new(32))
            .op(RandomHorizontalFlip::new(0.5))
            .op(Normalize::imagenet())
    };
    let cpu = ops(builder(same_size_source(24))).build().unwrap();
    // All on the CPU but the tensor write (the cut moves to Normalize), and all on the GPU.
    for placement in [Placement::Cpu, Placement::Cuda] {
        let dev = ops(builder(same_size_source(24)).placement(placement))
            .device_batches(true)
            .build()
            .unwrap();
        assert!(dev.device_batches(), "{}", dev.placement_reason());
        dev.check_gpu_outputs(placement == Placement::Cuda);
        for epoch in 0..3 {
            // The kernels reproduce the CPU's arithmetic: exact in practice, 1e-5 stated.
            compare(&host_view(&cpu, epoch), &host_view(&dev, epoch), 1e-5);
            if epoch == 0 {
                let after_first = dev.transfer_stats().unwrap();
                assert!(after_first.pinned_allocations <= after_first.slots as u64);
            }
        }
        let stats = dev.transfer_stats().unwrap();
        assert_eq!(stats.slots, 4, "prefetch 2 + 2");
        assert_eq!(stats.batches, 18);
        assert!(stats.pinned_allocations <= 4, "{stats:?}");
        // Same-size batches: each slot allocates on its first use only.
        let before = stats.device_allocations;
        host_view(&dev, 3);
        assert_eq!(dev.transfer_stats().unwrap().device_allocations, before);
        assert!(stats.h2d_gbps() > 0.0 && stats.kernel_ms > 0.0, "{stats:?}");
        assert_eq!(
            stats.unreleased_drops, 0,
            "copied back only: nothing to release"
        );
        if placement == Placement::Cuda {
            // Any poison byte gives the same batches, or some element is never written.
            dev.check_gpu_outputs_with(0x00);
            let zeroed = host_view(&dev, 4);
            dev.check_gpu_outputs_with(0xA5);
            assert!(
                zeroed == host_view(&dev, 4),
                "an output element no kernel writes"
            );
        }
    }
}

#[test]
fn jitter_on_device_batches_stays_within_the_kernels_tolerance() {
    if !device_or_skip() {
        return;
    }
    let ops = |b: PipelineBuilder| {
        b.op(CenterCrop::new(64))
            .op(ColorJitter::new(0.4, 0.4, 0.4, 0.1))
            .op(Normalize::imagenet())
    };
    let cpu = ops(builder(same_size_source(8))).build().unwrap();
    let dev = ops(builder(same_size_source(8)).placement(Placement::Cuda))
        .device_batches(true)
        .build()
        .unwrap();
    // One u8 step after normalization is 1/(255·0.225); chained jitter may land 2 steps off.
    let step = 1.0 / (255.0 * 0.225);
    let (c, d) = (host_view(&cpu, 0), host_view(&dev, 0));
    compare(&c, &d, 2.0 * step * 1.01);
    let values = |h: &[HostBatch]| -> Vec<f32> {
        h.iter()
            .flat_map(|b| bytemuck::cast_slice::<u8, f32>(&b.3).to_vec())
            .collect()
    };
    let (c, d) = (values(&c), values(&d));
    assert_eq!(c.len(), d.len(), "values");
    let off = c
        .iter()
        .zip(&d)
        .filter(|(a, b)| (*a - *b).abs() > step * 1.01)
        .count();
    assert!(
        off * 100 <= c.len(),
        "{off} of {} values more than a step off",
        c.len()
    );
}

#[test]
fn the_train_step_reads_every_word_of_the_batch() {
    if !device_or_skip() {
        return;
    }
    let p = Workload::Rn50Train
        .add_ops(builder(same_size_source(8)))
        .device_batches(true)
        .build()
        .unwrap();
    let mut step = TrainStep::new(p.cuda_device().unwrap(), 0.5).unwrap();
    for batch in p.epoch(0).unwrap() {
        let batch = batch.unwrap();
        let d = batch.device().unwrap();
        d.wait_on(step.stream()).unwrap();
        step.run(&d.words()).unwrap();
        d.release_after(step.stream()).unwrap();
        let host = d.to_host().unwrap();
        let want = bytemuck::cast_slice::<u8, u32>(&host)
            .iter()
            .fold(0u32, |a, w| a ^ w);
        assert_eq!(step.checksum().unwrap(), want);
    }
}

#[test]
fn a_loop_that_hoards_device_batches_gets_an_error_not_a_hang() {
    if !device_or_skip() {
        return;
    }
    let p = Workload::Rn50Train
        .add_ops(builder(same_size_source(40)).prefetch(1))
        .device_batches(true)
        .build()
        .unwrap();
    let mut epoch = p.epoch(0).unwrap();
    let mut held = Vec::new();
    let outcome = loop {
        match epoch.next() {
            Some(Ok(b)) => held.push(b),
            Some(Err(e)) => break Err(e),
            None => break Ok(()),
        }
    };
    let err = outcome.expect_err("3 slots cannot feed 10 held batches");
    assert!(err.to_string().contains("hold at most two"), "{err}");
    assert!(held.len() >= 3, "held {}", held.len());
}

/// XOR of a batch's 32-bit words: what the train step folds into its sink.
fn xor_words(bytes: &[u8]) -> u32 {
    bytemuck::cast_slice::<u8, u32>(bytes)
        .iter()
        .fold(0, |a, w| a ^ w)
}

#[test]
fn slots_are_reused_only_after_the_trainers_stream_is_done_with_them() {
    if !device_or_skip() {
        return;
    }
    // 3 slots, 12 batches: every slot is rewritten three times while the training stream still
    // has long steps queued that read it. A missing wait on the release event lets sluice's
    // kernels overwrite a batch before its step reads it, and that step's checksum is wrong.
    let build = |b: PipelineBuilder| Workload::Rn50Train.add_ops(b.prefetch(1));
    let cpu = build(builder(same_size_source(48))).build().unwrap();
    let want: Vec<u32> = host_view(&cpu, 0).iter().map(|b| xor_words(&b.3)).collect();
    let p = build(builder(same_size_source(48)))
        .device_batches(true)
        .build()
        .unwrap();
    let step = TrainStep::new(p.cuda_device().unwrap(), 20.0).unwrap();
    let mut sinks = Vec::new();
    for batch in p.epoch(0).unwrap() {
        let batch = batch.unwrap();
        let d = batch.device().unwrap();
        d.wait_on(step.stream()).unwrap();
        let mut sink = step.stream().alloc_zeros::<u32>(1).unwrap();
        step.queue_into(&d.words(), &mut sink).unwrap();
        d.release_after(step.stream()).unwrap();
        sinks.push(sink);
        // Dropped at once: the slot goes back to the ring with the step still queued.
    }
    let got: Vec<u32> = sinks
        .iter()
        .map(|s| step.stream().clone_dtoh(s).unwrap()[0])
        .collect();
    assert_eq!(got.len(), want.len(), "batches");
    for (i, (g, w)) in got.iter().zip(&want).enumerate() {
        assert_eq!(
            g, w,
            "batch {i}: the step read words sluice had already overwritten"
        );
    }
    let stats = p.transfer_stats().unwrap();
    assert_eq!(stats.slots, 3);
    assert_eq!(stats.batches, 12);
    assert_eq!(stats.unreleased_drops, 0, "{stats:?}");
}

#[test]
fn a_batch_dropped_without_its_release_is_counted() {
    if !device_or_skip() {
        return;
    }
    let p = Workload::Rn50Train
        .add_ops(builder(same_size_source(8)))
        .device_batches(true)
        .build()
        .unwrap();
    for (i, batch) in p.epoch(0).unwrap().enumerate() {
        let batch = batch.unwrap();
        let d = batch.device().unwrap();
        // Batch 0: copied back only (no handed-out memory, nothing to release). Batch 1: its
        // address handed out and never released.
        if i == 0 {
            d.to_host().unwrap();
        } else {
            let _ = d.device_ptr();
        }
    }
    assert_eq!(p.transfer_stats().unwrap().unreleased_drops, 1);
}

#[test]
fn sluice_leaves_the_callers_current_context_alone_and_takes_the_device_it_is_given() {
    if !device_or_skip() {
        return;
    }
    use cudarc::driver::result::ctx;
    // A thread with no current context (as a trainer's thread on another device would have
    // its own): building, iterating and dropping a pipeline must leave it that way.
    std::thread::spawn(|| {
        assert_eq!(ctx::get_current().unwrap(), None);
        let p = Workload::Rn50Train
            .add_ops(builder(same_size_source(8)))
            .device_batches(true)
            .cuda_device(0)
            .build()
            .unwrap();
        assert!(p.device_batches(), "{}", p.placement_reason());
        assert_eq!(ctx::get_current().unwrap(), None, "after build");
        for batch in p.epoch(0).unwrap() {
            let batch = batch.unwrap();
            batch.device().unwrap().synchronize().unwrap();
        }
        assert_eq!(ctx::get_current().unwrap(), None, "after an epoch");
        drop(p);
        assert_eq!(ctx::get_current().unwrap(), None, "after drop");
    })
    .join()
    .unwrap();
    // A device that does not exist: host batches, and the reason names it.
    let p = Workload::Rn50Train
        .add_ops(builder(same_size_source(8)))
        .device_batches(true)
        .cuda_device(4096)
        .build()
        .unwrap();
    assert!(!p.device_batches());
    assert!(
        p.placement_reason().contains("no CUDA device 4096"),
        "{}",
        p.placement_reason()
    );
}

/// A generated speech set (ragged lengths, several rates) of `files` files under `dir`.
fn speech_source(dir: &std::path::Path, files: usize) -> sluice::source::AudioFolder {
    let spec = sluice::gen::audio::AudioDatasetSpec {
        files,
        classes: 2,
        seed: 3,
        max_seconds: 2.0,
    };
    sluice::gen::audio::write_audio_dataset(dir, &spec, &|_| {}).unwrap();
    sluice::source::AudioFolder::open(dir).unwrap()
}

/// A generated text corpus of `documents` documents under `dir`.
fn text_source(
    dir: &std::path::Path,
    documents: usize,
) -> std::sync::Arc<dyn sluice::source::Source> {
    let spec = sluice::gen::text::TextCorpusSpec { documents, seed: 5 };
    let path = sluice::gen::text::write_text_corpus(dir, &spec).unwrap();
    sluice::source::open_text_path(&path, None).unwrap()
}

/// A padded batch in host memory: (indices, lengths, main tensor's name, shape and bytes,
/// token labels).
type PaddedBatch = (
    Vec<u64>,
    Vec<usize>,
    &'static str,
    Vec<usize>,
    Vec<u8>,
    Option<Vec<u8>>,
);

/// Every batch of `epoch`, device batches copied back (and checked to be device batches when
/// `device`).
fn padded_view(p: &Pipeline, epoch: u32, device: bool) -> Vec<PaddedBatch> {
    p.epoch(epoch)
        .unwrap()
        .map(|b| {
            let b: Batch = b.unwrap();
            let name = b.device().map_or("host", |d| d.tensors()[0].name);
            assert_eq!(b.device().is_some(), device, "{}", p.placement_reason());
            let host = b.copied_to_host().unwrap();
            let h = host.as_ref().unwrap_or(&b);
            let d = h.dense().expect("a padded batch is dense");
            let labels = h.token_labels.as_ref().map(|t| t.bytes().to_vec());
            let (i, l) = (h.sample_indices.clone(), h.lengths.clone());
            (i, l, name, d.shape.clone(), d.bytes().to_vec(), labels)
        })
        .collect()
}

/// Same samples, lengths, shapes and labels; f32 values within `tolerance` (0: identical bytes).
fn compare_padded(want: &[PaddedBatch], got: &[PaddedBatch], tolerance: f32) {
    assert_eq!(want.len(), got.len(), "batches");
    for (w, g) in want.iter().zip(got) {
        assert_eq!(
            (&w.0, &w.1, &w.3, &w.5),
            (&g.0, &g.1, &g.3, &g.5),
            "batch {:?}",
            w.0
        );
        if tolerance == 0.0 {
            assert!(w.4 == g.4, "batch {:?}: values differ", w.0);
            continue;
        }
        let (a, b): (&[f32], &[f32]) = (bytemuck::cast_slice(&w.4), bytemuck::cast_slice(&g.4));
        for (j, (x, y)) in a.iter().zip(b).enumerate() {
            assert!(
                (x - y).abs() <= tolerance,
                "batch {:?} value {j}: device {y} (unwritten if NaN), want {x}",
                w.0
            );
        }
    }
}

/// Speech device batches: the features the same kernels give when read back (bit for bit, any
/// poison byte), for the whole spectral chain (audio in), cedar-asr's masks + mel (features
/// in), and FeatureNormalize alone moved across (its in-place result read from the staged
/// input), the last within 1e-4 of the CPU.
#[test]
fn speech_device_batches_equal_the_read_back_gpu_batches() {
    if !device_or_skip() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let source = speech_source(dir.path(), 10);
    let build = |w: Workload, placement: Placement, device: bool| {
        w.add_ops(
            Pipeline::builder(source.clone())
                .batch_size(4)
                .threads(2)
                .shuffle(true)
                .seed(7)
                .placement(placement),
        )
        .device_batches(device)
        .build()
        .unwrap()
    };
    for w in [Workload::AsrVal, Workload::Asr, Workload::CedarAsr] {
        let host = build(w, Placement::Cuda, false);
        let dev = build(w, Placement::Cuda, true);
        assert!(dev.device_batches(), "{}", dev.placement_reason());
        assert_eq!(host.gpu_cut(), dev.gpu_cut(), "{}", dev.placement_reason());
        for byte in [0x00, 0xA5] {
            host.check_gpu_outputs_with(byte);
            dev.check_gpu_outputs_with(byte);
            let want = padded_view(&host, 1, false);
            let got = padded_view(&dev, 1, true);
            assert!(got.iter().all(|b| b.2 == "features"));
            compare_padded(&want, &got, 0.0);
        }
    }
    let cpu = build(Workload::AsrVal, Placement::Cpu, false);
    let dev = build(Workload::AsrVal, Placement::Cpu, true);
    assert_eq!(
        dev.gpu_cut(),
        dev.ops().len() - 1,
        "{}",
        dev.placement_reason()
    );
    dev.check_gpu_outputs(true);
    compare_padded(
        &padded_view(&cpu, 0, false),
        &padded_view(&dev, 0, true),
        1e-4,
    );
    assert_eq!(dev.transfer_stats().unwrap().unreleased_drops, 0);
}

/// Text device batches: `input_ids` (+ `labels` for masked LM) or `embeddings`, equal to the CPU
/// batches bit for bit (integer kernels and a gather), whether the token operators run on the
/// device, only the last one does, or none (the device pads the ids).
#[test]
fn text_device_batches_equal_the_cpu_batches() {
    if !device_or_skip() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let source = text_source(dir.path(), 40);
    let assets = sluice::bench::TextAssets::default();
    let build = |w: Workload, placement: Placement, device: bool| {
        let d = w.batch_defaults(&assets);
        let b = Pipeline::builder_shared(source.clone())
            .batch_size(8)
            .threads(2)
            .shuffle(true)
            .seed(4)
            .pad_to_multiple_of(d.pad_multiple)
            .length_bucketing(d.bucket_windows)
            .pad_id(d.pad_id)
            .placement(placement);
        w.add_ops(b).device_batches(device).build().unwrap()
    };
    for (w, name) in [
        (Workload::BertMlm, "input_ids"),
        (Workload::Nlp, "embeddings"),
    ] {
        let cpu = padded_view(&build(w, Placement::Cpu, false), 1, false);
        for placement in [Placement::Cuda, Placement::Cpu] {
            let dev = build(w, placement, true);
            assert!(dev.device_batches(), "{}", dev.placement_reason());
            dev.check_gpu_outputs(true);
            let got = padded_view(&dev, 1, true);
            assert!(got.iter().all(|b| b.2 == name), "{w:?}");
            assert_eq!(got[0].5.is_some(), w == Workload::BertMlm, "labels");
            compare_padded(&cpu, &got, 0.0);
        }
    }
    // No token operator with a kernel: the ids are padded on the device.
    let ids = |device: bool| {
        let t = sluice::text::TextTokenizer::gpt2();
        Pipeline::builder_shared(source.clone())
            .batch_size(8)
            .decode_text(sluice::ops::DecodeText::new(t.clone()))
            .op(sluice::ops::TextOp::Truncate {
                max_len: 64,
                keep_end: None,
            })
            .device_batches(device)
            .build()
            .unwrap()
    };
    let dev = ids(true);
    assert_eq!(dev.gpu_cut(), dev.ops().len(), "{}", dev.placement_reason());
    compare_padded(
        &padded_view(&ids(false), 0, false),
        &padded_view(&dev, 0, true),
        0.0,
    );
}

/// Pack forms its blocks on the host: a packed pipeline asked for device batches delivers host
/// batches and says why (with or without a GPU).
#[test]
fn packed_text_pipelines_deliver_host_batches_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let source = text_source(dir.path(), 12);
    let p = Workload::GptPack
        .add_ops(Pipeline::builder_shared(source).batch_size(2))
        .device_batches(true)
        .build()
        .unwrap();
    assert!(!p.device_batches());
    let reason = p.placement_reason();
    assert!(
        reason.contains("device batches off (Pack forms its blocks"),
        "{reason}"
    );
    let batch = p.epoch(0).unwrap().next().unwrap().unwrap();
    assert!(batch.dense().is_some() && !batch.cu_seqlens.is_empty());
}
