//! sluice errors as Python exceptions: a sample's failure is a `sluice.SampleError` (a
//! `RuntimeError`) naming the file and the operator; a bad setting is a `ValueError`.

use pyo3::exceptions::{PyOSError, PyRuntimeError, PyValueError};
use pyo3::prelude::*;

pyo3::create_exception!(
    sluice,
    SampleError,
    PyRuntimeError,
    "A sample failed in an operator. Attributes: index (dataset index), path (where the sample \
     came from), operator, reason."
);

/// The Python exception for a sluice error.
pub fn to_py(py: Python<'_>, err: sluice::Error) -> PyErr {
    match err {
        sluice::Error::Sample(e) => sample_error(py, &e),
        sluice::Error::InvalidPipeline(_) => PyValueError::new_err(err.to_string()),
        sluice::Error::Io { .. } | sluice::Error::Source(_) => PyOSError::new_err(err.to_string()),
        sluice::Error::Worker(_) => PyRuntimeError::new_err(err.to_string()),
    }
}

fn sample_error(py: Python<'_>, e: &sluice::SampleError) -> PyErr {
    let err = SampleError::new_err(e.to_string());
    let value = err.value(py);
    let details = [
        ("path", e.sample.origin.as_str()),
        ("operator", e.operator.as_str()),
        ("reason", e.message.as_str()),
    ];
    // Setting attributes on a fresh exception instance cannot fail in practice; if it did,
    // the message still names everything.
    let _ = value.setattr("index", e.sample.index);
    for (name, text) in details {
        let _ = value.setattr(name, text);
    }
    err
}

/// `Result` conversion for calls into the core crate.
pub trait IntoPy<T> {
    fn py_err(self, py: Python<'_>) -> PyResult<T>;
}

impl<T> IntoPy<T> for sluice::Result<T> {
    fn py_err(self, py: Python<'_>) -> PyResult<T> {
        self.map_err(|e| to_py(py, e))
    }
}

/// A `ValueError` naming the setting that is wrong.
pub fn bad_setting(setting: &str, message: impl std::fmt::Display) -> PyErr {
    PyValueError::new_err(format!("{setting}: {message}"))
}

/// Refuse to touch a pipeline in a forked child: its worker threads exist only in the parent,
/// so it would wait forever.
pub fn check_not_forked(created_in: u32) -> PyResult<()> {
    let here = std::process::id();
    if here == created_in {
        Ok(())
    } else {
        Err(PyRuntimeError::new_err(format!(
            "this sluice pipeline was created in process {created_in} and cannot be used in \
             process {here} (a fork): its worker threads exist only in the parent. Create the \
             pipeline in the child process, or use the 'spawn' start method"
        )))
    }
}
