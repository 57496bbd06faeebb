//! The library API in a training loop: `cargo run --release --example train_loop`.
//!
//! Builds the ResNet-50 training pipeline over the generated dataset (made on first run under
//! target/sluice-data), runs two epochs with a stand-in training step, and prints per-epoch
//! throughput, the data stall, and what was skipped. Resumes the second epoch half-way to show
//! that a resumed iterator delivers the same batches.

use sluice::bench::Checksum;
use sluice::gen::{ensure_dataset, DatasetSpec};
use sluice::ops::{Normalize, RandomHorizontalFlip, RandomResizedCrop};
use sluice::source::ImageFolder;
use sluice::{ErrorPolicy, Pipeline};
use std::time::{Duration, Instant};

fn main() -> sluice::Result<()> {
    let data = std::path::Path::new("target/sluice-data/gen-n1024-s0");
    ensure_dataset(data, &DatasetSpec::default(), &|_| {})?;

    let pipeline = Pipeline::builder(ImageFolder::open(data)?)
        .op(RandomResizedCrop::new(224))
        .op(RandomHorizontalFlip::new(0.5))
        .op(Normalize::imagenet())
        .batch_size(64)
        .shuffle(true)
        .seed(0)
        .prefetch(4)
        .on_error(ErrorPolicy::Skip)
        .build()?;
    println!("{}", pipeline.describe());

    let step = Duration::from_millis(20); // stand-in for the model's forward/backward pass
    let mut second_epoch = Vec::new();
    for epoch in 0..2 {
        let (start, mut waited, mut images) = (Instant::now(), Duration::ZERO, 0);
        let mut batches = pipeline.epoch(epoch)?;
        loop {
            let asked = Instant::now();
            let Some(batch) = batches.next() else { break };
            let batch = batch?;
            waited += asked.elapsed();
            let tensor = batch.dense().expect("fixed-size output"); // [n, 3, 224, 224] f32
            images += batch.len();
            if epoch == 1 {
                let mut c = Checksum::new();
                c.add_batch(tensor.bytes(), &batch.labels);
                second_epoch.push(c.hex());
            }
            for skipped in &batch.skipped {
                eprintln!("skipped {skipped}");
            }
            std::thread::sleep(step); // the training step holds the batch
        }
        let wall = start.elapsed().as_secs_f64();
        println!(
            "epoch {epoch}: {images} images in {wall:.2} s ({:.0} images/s), data stall {:.1}%",
            images as f64 / wall,
            100.0 * waited.as_secs_f64() / wall
        );
    }

    // Resume epoch 1 at its middle batch: the same batches as the uninterrupted run.
    let half = second_epoch.len() as u64 / 2;
    let mut resumed = Vec::new();
    for batch in pipeline.epoch_from(1, half)? {
        let batch = batch?;
        let mut c = Checksum::new();
        c.add_batch(batch.bytes(), &batch.labels);
        resumed.push(c.hex());
    }
    assert_eq!(resumed, second_epoch[half as usize..]);
    println!(
        "resumed epoch 1 at batch {half}: {} batches, identical",
        resumed.len()
    );
    Ok(())
}
