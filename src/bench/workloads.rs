//! The pipelines `sluice bench` ships (DESIGN.md, "Workloads"), defined as they are in
//! torchvision recipes.

use crate::ops::{
    CenterCrop, ColorJitter, GaussianBlur, Normalize, RandomGrayscale, RandomHorizontalFlip,
    RandomResizedCrop, Resize,
};
use crate::pipeline::PipelineBuilder;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Workload {
    /// read + decode only: the decode-bound limit.
    DecodeOnly,
    /// ResNet-50 training: RandomResizedCrop 224, flip, normalize.
    Rn50Train,
    /// ResNet-50 validation: resize 256, centre crop 224, normalize.
    Rn50Val,
    /// SimCLR augmentation.
    Simclr,
}

pub const WORKLOADS: [(&str, Workload); 4] = [
    ("decode-only", Workload::DecodeOnly),
    ("rn50-train", Workload::Rn50Train),
    ("rn50-val", Workload::Rn50Val),
    ("simclr", Workload::Simclr),
];

impl Workload {
    pub fn from_name(name: &str) -> Option<Workload> {
        WORKLOADS.iter().find(|(n, _)| *n == name).map(|(_, w)| *w)
    }

    pub fn name(self) -> &'static str {
        WORKLOADS.iter().find(|(_, w)| *w == self).unwrap().0
    }

    /// Whether the per-epoch order is shuffled (training workloads).
    pub fn shuffles(self) -> bool {
        matches!(self, Workload::Rn50Train | Workload::Simclr)
    }

    /// Append this workload's operators to a builder.
    pub fn add_ops(self, builder: PipelineBuilder) -> PipelineBuilder {
        match self {
            Workload::DecodeOnly => builder,
            Workload::Rn50Train => builder
                .op(RandomResizedCrop::new(224))
                .op(RandomHorizontalFlip::new(0.5))
                .op(Normalize::imagenet()),
            Workload::Rn50Val => builder
                .op(Resize::new(256))
                .op(CenterCrop::new(224))
                .op(Normalize::imagenet()),
            Workload::Simclr => builder
                .op(RandomResizedCrop::new(224))
                .op(RandomHorizontalFlip::new(0.5))
                .op(ColorJitter::new(0.4, 0.4, 0.4, 0.1).with_probability(0.8))
                .op(RandomGrayscale::new(0.2))
                .op(GaussianBlur::new(23, (0.1, 2.0)).with_probability(0.5))
                .op(Normalize::imagenet()),
        }
    }
}
