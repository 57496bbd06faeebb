//! `sluice._sluice`: the Python binding of sluice. A thin skin over the Rust API: it converts
//! Python declarations to the core crate's types, releases the GIL while sluice works, and hands
//! batches over through DLPack. No pipeline logic lives here.

mod audio_ops;
mod batch;
mod convert;
mod errors;
mod pipeline;
mod source;
mod tensor;
mod text_ops;
mod user_ops;

use pyo3::prelude::*;

#[pymodule]
fn _sluice(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add_class::<pipeline::Pipeline>()?;
    m.add_class::<pipeline::EpochIterator>()?;
    m.add_class::<batch::Batch>()?;
    m.add_class::<batch::SkippedSample>()?;
    m.add_class::<batch::Checksum>()?;
    m.add_class::<tensor::Tensor>()?;
    m.add_class::<source::ImageFolder>()?;
    m.add_class::<source::FileList>()?;
    m.add_class::<source::InMemory>()?;
    m.add_class::<source::Shards>()?;
    m.add("SampleError", py.get_type::<errors::SampleError>())?;
    m.add_function(wrap_pyfunction!(pipeline::workload, m)?)?;
    m.add_function(wrap_pyfunction!(pipeline::workloads, m)?)?;
    m.add_function(wrap_pyfunction!(pipeline::generated_dataset, m)?)?;
    m.add_function(wrap_pyfunction!(pipeline::gen_data, m)?)?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
