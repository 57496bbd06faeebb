//! sluice: an ML input-data pipeline runtime.
//!
//! Declare a pipeline once (source → decode → augment → batch); sluice runs it on a pool of CPU
//! threads (and, where placed, as WGSL kernels through wgpu) with bounded memory, output in
//! sampler order, and results that do not depend on thread count or timing. See `ARCHITECTURE.md` for the map of modules.

pub mod audio;
pub mod backend;
pub mod batch;
pub mod bench;
pub mod error;
pub mod exec;
pub mod gen;
pub mod ops;
pub mod optimizer;
pub mod pipeline;
pub mod placement;
pub mod reference;
pub mod rng;
mod simd;
pub mod source;
pub mod state;
pub mod tensor;
pub mod text;

pub use batch::{Batch, DenseBatch, RaggedBatch, Sample};
pub use error::{Error, Result, SampleError, SampleId};
pub use pipeline::{ErrorPolicy, OutputSpec, Pipeline, PipelineBuilder};
pub use placement::Placement;
pub use tensor::{DType, HostTensor, Image, Layout};
