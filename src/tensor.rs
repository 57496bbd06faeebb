//! Host-side data model: element types, layouts, images and tensors.

use half::{bf16, f16};
use serde::{Deserialize, Serialize};

/// Element type of a tensor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DType {
    U8,
    F16,
    Bf16,
    F32,
    /// Token ids (text batches).
    I32,
}

impl DType {
    pub fn size(self) -> usize {
        match self {
            DType::U8 => 1,
            DType::F16 | DType::Bf16 => 2,
            DType::F32 | DType::I32 => 4,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            DType::U8 => "u8",
            DType::F16 => "f16",
            DType::Bf16 => "bf16",
            DType::F32 => "f32",
            DType::I32 => "i32",
        }
    }

    /// Write `values` (already in this dtype's range) into `out` as little-endian elements.
    /// u8 rounds half away from zero and saturates.
    pub fn store(self, values: &[f32], out: &mut [u8]) {
        debug_assert_eq!(out.len(), values.len() * self.size());
        match self {
            DType::U8 => {
                for (o, v) in out.iter_mut().zip(values) {
                    *o = v.round().clamp(0.0, 255.0) as u8;
                }
            }
            DType::F32 => {
                for (o, v) in out.chunks_exact_mut(4).zip(values) {
                    o.copy_from_slice(&v.to_le_bytes());
                }
            }
            DType::F16 => {
                for (o, v) in out.chunks_exact_mut(2).zip(values) {
                    o.copy_from_slice(&f16::from_f32(*v).to_le_bytes());
                }
            }
            DType::Bf16 => {
                for (o, v) in out.chunks_exact_mut(2).zip(values) {
                    o.copy_from_slice(&bf16::from_f32(*v).to_le_bytes());
                }
            }
            DType::I32 => {
                for (o, v) in out.chunks_exact_mut(4).zip(values) {
                    o.copy_from_slice(&(v.round() as i32).to_le_bytes());
                }
            }
        }
    }

    /// Read element `i` of a little-endian buffer of this dtype as f32.
    pub fn load(self, bytes: &[u8], i: usize) -> f32 {
        let s = self.size();
        let b = &bytes[i * s..(i + 1) * s];
        match self {
            DType::U8 => f32::from(b[0]),
            DType::F32 => f32::from_le_bytes([b[0], b[1], b[2], b[3]]),
            DType::F16 => f16::from_le_bytes([b[0], b[1]]).to_f32(),
            DType::Bf16 => bf16::from_le_bytes([b[0], b[1]]).to_f32(),
            DType::I32 => i32::from_le_bytes([b[0], b[1], b[2], b[3]]) as f32,
        }
    }
}

/// Memory layout of an image tensor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Layout {
    /// Height, width, channels (interleaved pixels): what decoders produce.
    Hwc,
    /// Channels, height, width (planar): what most models consume.
    Chw,
}

/// An 8-bit RGB image, rows packed, pixels interleaved (HWC). Every operator before
/// normalization works on this type.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Image {
    pub width: u32,
    pub height: u32,
    pub data: Vec<u8>,
}

impl Image {
    pub const CHANNELS: usize = 3;

    pub fn new(width: u32, height: u32, data: Vec<u8>) -> Self {
        assert_eq!(
            data.len(),
            width as usize * height as usize * Self::CHANNELS
        );
        Image {
            width,
            height,
            data,
        }
    }

    pub fn filled(width: u32, height: u32, value: u8) -> Self {
        Image::new(
            width,
            height,
            vec![value; width as usize * height as usize * Self::CHANNELS],
        )
    }

    pub fn pixel(&self, x: u32, y: u32) -> [u8; 3] {
        let i = (y as usize * self.width as usize + x as usize) * 3;
        [self.data[i], self.data[i + 1], self.data[i + 2]]
    }

    pub fn row_bytes(&self) -> usize {
        self.width as usize * Self::CHANNELS
    }
}

/// A dense tensor in host memory. `data` holds little-endian elements of `dtype`.
#[derive(Debug, Clone, PartialEq)]
pub struct HostTensor {
    pub dtype: DType,
    pub shape: Vec<usize>,
    pub layout: Layout,
    pub data: Vec<u8>,
}

impl HostTensor {
    pub fn zeros(dtype: DType, shape: Vec<usize>, layout: Layout) -> Self {
        let n: usize = shape.iter().product();
        HostTensor {
            dtype,
            shape,
            layout,
            data: vec![0; n * dtype.size()],
        }
    }

    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }

    /// Element `i` (row-major over `shape`) as f32.
    pub fn get_f32(&self, i: usize) -> f32 {
        self.dtype.load(&self.data, i)
    }

    /// All elements as f32, for tests and inspection.
    pub fn to_f32_vec(&self) -> Vec<f32> {
        (0..self.numel()).map(|i| self.get_f32(i)).collect()
    }
}

/// The shape of one image tensor of `height`×`width` RGB in `layout`.
pub fn image_shape(height: usize, width: usize, layout: Layout) -> Vec<usize> {
    match layout {
        Layout::Hwc => vec![height, width, Image::CHANNELS],
        Layout::Chw => vec![Image::CHANNELS, height, width],
    }
}
