//! `sluice.Tensor`: one batch tensor, handed to PyTorch, JAX or NumPy through DLPack without a
//! copy. The tensor's memory (a buffer from the pipeline's pool, or a CUDA device slot) returns
//! to sluice only when the `Tensor` and every consumer tensor made from it are gone: each export
//! holds a reference that the consumer's DLPack deleter drops.

use crate::convert::dtype_name;
use dlpark::ffi::{
    DLDataType, DLDataTypeCode, DLDevice, DLManagedTensor, DLManagedTensorVersioned,
};
use dlpark::metadata::Dynamic;
use dlpark::python::{export_dlpack, CudaStreamRequest, DlpackExporter, ExportRequest};
use dlpark::{DlpackFlags, Managed};
use pyo3::exceptions::{PyBufferError, PyRuntimeError};
use pyo3::prelude::*;
use pyo3::types::PyBytes;
use sluice::backend::cuda::DeviceBatch;
use sluice::DType;
use std::ffi::c_void;
use std::sync::{Arc, Mutex};

/// Memory a tensor points into.
pub enum Memory {
    /// A batch buffer from the pipeline's pool (goes back to the pool on drop).
    Pooled(sluice::batch::PooledBuffer),
    /// Labels or indices.
    Int64(Vec<i64>),
    /// Bytes made for the batch (attention masks).
    Bytes(Vec<u8>),
    /// A CUDA device batch; on drop its slot is released after the last consumer stream's work.
    Device(Box<DeviceMemory>),
}

pub struct DeviceMemory {
    batch: DeviceBatch,
    /// The stream the last consumer asked to read on (`__dlpack__(stream=...)`), as an address.
    consumer_stream: Mutex<Option<usize>>,
}

impl DeviceMemory {
    pub fn new(batch: DeviceBatch) -> Self {
        DeviceMemory {
            batch,
            consumer_stream: Mutex::new(None),
        }
    }
}

impl Drop for DeviceMemory {
    fn drop(&mut self) {
        if let Some(stream) = *self.consumer_stream.lock().unwrap() {
            // SAFETY: the consumer named this stream for reading the tensor; it outlives the
            // tensor by the DLPack contract. On failure the slot is still released when the
            // batch drops, only without waiting for the consumer's queued work.
            let _ = unsafe { self.batch.release_after_raw(stream as _) };
        }
    }
}

impl Memory {
    fn base(&self) -> *mut c_void {
        match self {
            Memory::Pooled(b) => b.as_slice().as_ptr() as *mut c_void,
            Memory::Int64(v) => v.as_ptr() as *mut c_void,
            Memory::Bytes(v) => v.as_ptr() as *mut c_void,
            // Device tensors' offsets count from the start of the batch's output.
            Memory::Device(d) => d.batch.output_ptr() as usize as *mut c_void,
        }
    }
}

/// A CUDA stream handle from the DLPack `stream` argument (None: no synchronization).
fn stream_handle(request: CudaStreamRequest) -> Option<usize> {
    match request {
        CudaStreamRequest::NoSync => None,
        // DLPack: an omitted stream means the legacy default stream.
        CudaStreamRequest::Omitted | CudaStreamRequest::LegacyDefault => Some(0x1),
        CudaStreamRequest::PerThreadDefault => Some(0x2),
        CudaStreamRequest::Pointer(p) => Some(p),
    }
}

/// One tensor of a batch: a window of `memory` with a shape and an element type.
#[pyclass(module = "sluice", frozen)]
pub struct Tensor {
    memory: Arc<Memory>,
    offset: usize,
    nbytes: usize,
    shape: Vec<i64>,
    dtype: DType,
    int64: bool,
}

impl Tensor {
    pub fn host(
        memory: Arc<Memory>,
        offset: usize,
        nbytes: usize,
        shape: &[usize],
        dtype: DType,
    ) -> Self {
        Tensor {
            memory,
            offset,
            nbytes,
            shape: shape.iter().map(|&d| d as i64).collect(),
            dtype,
            int64: false,
        }
    }

    pub fn int64(values: Vec<i64>) -> Self {
        let n = values.len();
        Tensor {
            memory: Arc::new(Memory::Int64(values)),
            offset: 0,
            nbytes: n * 8,
            shape: vec![n as i64],
            dtype: DType::U8,
            int64: true,
        }
    }

    /// A u8 tensor of `shape` holding `values`.
    pub fn u8(values: Vec<u8>, shape: &[usize]) -> Self {
        let n = values.len();
        Tensor::host(Arc::new(Memory::Bytes(values)), 0, n, shape, DType::U8)
    }

    /// Every tensor of a device batch (the main one first), with its name: windows of the
    /// batch's slot, which goes back to sluice when all of them are gone.
    pub fn on_device(batch: DeviceBatch) -> Vec<(&'static str, Tensor)> {
        let parts = batch.tensors().to_vec();
        let memory = Arc::new(Memory::Device(Box::new(DeviceMemory::new(batch))));
        parts
            .into_iter()
            .map(|t| {
                let tensor = Tensor {
                    memory: memory.clone(),
                    offset: t.offset,
                    nbytes: t.info.bytes(),
                    shape: t.info.shape.iter().map(|&d| d as i64).collect(),
                    dtype: t.info.dtype,
                    int64: false,
                };
                (t.name, tensor)
            })
            .collect()
    }

    fn dl_dtype(&self) -> DLDataType {
        if self.int64 {
            return DLDataType::I64;
        }
        match self.dtype {
            DType::U8 => DLDataType::U8,
            DType::F32 => DLDataType::F32,
            DType::F16 => DLDataType::scalar(DLDataTypeCode::FLOAT, 16),
            DType::Bf16 => DLDataType::scalar(DLDataTypeCode::BFLOAT, 16),
            DType::I32 => DLDataType::scalar(DLDataTypeCode::INT, 32),
        }
    }

    fn dl_device(&self) -> DLDevice {
        match &*self.memory {
            Memory::Device(d) => DLDevice::cuda(d.batch.ordinal() as i32),
            _ => DLDevice::CPU,
        }
    }

    fn data_address(&self) -> *mut c_void {
        // The offset stays inside the buffer: tensors are made from a batch's own layout.
        self.memory.base().wrapping_byte_add(self.offset)
    }

    /// The tensor's bytes in host memory (a copy for device tensors).
    pub fn host_bytes(&self) -> PyResult<std::borrow::Cow<'_, [u8]>> {
        let range = self.offset..self.offset + self.nbytes;
        match &*self.memory {
            Memory::Pooled(b) => Ok(std::borrow::Cow::Borrowed(&b.as_slice()[range])),
            Memory::Int64(v) => Ok(std::borrow::Cow::Owned(
                v.iter().flat_map(|x| x.to_le_bytes()).collect(),
            )),
            Memory::Bytes(v) => Ok(std::borrow::Cow::Borrowed(&v[range])),
            Memory::Device(d) => {
                let name = d
                    .batch
                    .tensors()
                    .iter()
                    .find(|t| t.offset == self.offset)
                    .map_or("", |t| t.name);
                d.batch
                    .to_host_of(name)
                    .map(std::borrow::Cow::Owned)
                    .map_err(|e| PyRuntimeError::new_err(e.to_string()))
            }
        }
    }

    fn managed<M: dlpark::ManagedTensorBase>(&self) -> PyResult<Managed<M>> {
        let mut init = Dynamic::compact(self.shape.clone())
            .initialize_as::<M>(self.memory.clone())
            .map_err(|e| PyBufferError::new_err(e.to_string()))?;
        init.set_data(self.data_address())
            .set_device(self.dl_device())
            .set_dtype(self.dl_dtype())
            .set_byte_offset(0);
        // SAFETY: data, shape and strides stay valid while the context (an Arc of the memory)
        // lives, which is until the consumer calls the deleter; strides are explicit.
        Ok(unsafe { init.finish() })
    }
}

impl DlpackExporter for Tensor {
    fn device(&self) -> DLDevice {
        self.dl_device()
    }

    fn flags(&self) -> DlpackFlags {
        DlpackFlags::empty()
    }

    fn prepare_export(&self, _py: Python<'_>, request: &ExportRequest<'_>) -> PyResult<()> {
        let Memory::Device(d) = &*self.memory else {
            return Ok(());
        };
        let Some(stream) = stream_handle(request.cuda_stream()?) else {
            return Ok(());
        };
        // The consumer's stream waits on the device for the batch's kernels (no host sync);
        // the slot is released after that stream's work when the tensor goes.
        // SAFETY: the consumer passes a live stream of its current device, per DLPack.
        unsafe { d.batch.wait_on_raw(stream as _) }
            .map_err(|e| PyRuntimeError::new_err(e.to_string()))?;
        *d.consumer_stream.lock().unwrap() = Some(stream);
        Ok(())
    }

    fn export_legacy(&self, _py: Python<'_>) -> PyResult<Managed<DLManagedTensor>> {
        self.managed()
    }

    fn export_versioned(&self, _py: Python<'_>) -> PyResult<Managed<DLManagedTensorVersioned>> {
        self.managed()
    }
}

#[pymethods]
impl Tensor {
    /// Export through DLPack (zero copy): `torch.from_dlpack(t)`, `jax.numpy.from_dlpack(t)`,
    /// `numpy.from_dlpack(t)`. For a CUDA tensor, `stream` (an int handle, -1 for no sync) is
    /// made to wait for the batch on the device.
    #[pyo3(signature = (*, stream=None, max_version=None, dl_device=None, copy=None))]
    fn __dlpack__<'py>(
        slf: &Bound<'py, Self>,
        stream: Option<Bound<'py, PyAny>>,
        max_version: Option<(u32, u32)>,
        dl_device: Option<(u32, i32)>,
        copy: Option<bool>,
    ) -> PyResult<Py<PyAny>> {
        let py = slf.py();
        let request = ExportRequest::parse(stream.as_ref(), max_version, dl_device, copy)?;
        export_dlpack(slf.get(), py, request)
    }

    /// `(device_type, device_id)`: (1, 0) for host memory, (2, ordinal) for CUDA.
    fn __dlpack_device__(&self) -> (u32, i32) {
        let d = self.dl_device();
        (d.device_type.0, d.device_id)
    }

    /// The shape, batch dimension first.
    #[getter]
    fn shape(&self) -> Vec<i64> {
        self.shape.clone()
    }

    /// Element type: "float32", "float16", "bfloat16", "uint8" or "int64".
    #[getter]
    fn dtype(&self) -> &'static str {
        if self.int64 {
            "int64"
        } else {
            dtype_name(self.dtype)
        }
    }

    /// "cpu" or "cuda:N".
    #[getter]
    fn device(&self) -> String {
        match &*self.memory {
            Memory::Device(d) => format!("cuda:{}", d.batch.ordinal()),
            _ => "cpu".into(),
        }
    }

    /// Size in bytes.
    #[getter]
    fn nbytes(&self) -> usize {
        self.nbytes
    }

    /// Address of the first element (what a zero-copy consumer's data pointer equals).
    #[getter]
    fn data_ptr(&self) -> usize {
        self.data_address() as usize
    }

    /// A copy of the bytes (little-endian elements), from the device for CUDA tensors.
    fn tobytes<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyBytes>> {
        Ok(PyBytes::new(py, &self.host_bytes()?))
    }

    /// The tensor as a NumPy array without a copy (`numpy.from_dlpack`); host tensors only,
    /// and not bfloat16 (NumPy has no such type).
    fn numpy<'py>(slf: &Bound<'py, Self>) -> PyResult<Bound<'py, PyAny>> {
        let numpy = slf.py().import("numpy")?;
        numpy.call_method1("from_dlpack", (slf,))
    }

    fn __len__(&self) -> usize {
        self.shape.first().copied().unwrap_or(0) as usize
    }

    fn __repr__(&self) -> String {
        format!(
            "sluice.Tensor(shape={:?}, dtype={}, device={})",
            self.shape,
            self.dtype(),
            self.device()
        )
    }
}
