//! `Tensor`: an f32 (or, on CUDA devices, bf16) array in contiguous row-major (NCHW) order on one device. Cloning a tensor is cheap (the
//! storage is shared); writes go through `storage_mut`, which copies only when the storage is shared.
//!
//! This layer sits on the backend only (no `ops`): the two maps it offers without a tape, `add` and `scale`,
//! call the backend's CPU maps and its own kernels directly.

use std::fmt;
use std::sync::Arc;

use crate::backend::kernels::{add_bf16, add_f32, elementwise_scale_bf16, elementwise_scale_f32, grid_1d, int};
use crate::backend::{cpu, DType, Device, Storage};
use crate::{ensure_shape, Error, Result};

#[derive(Clone)]
pub struct Tensor {
    shape: Vec<usize>,
    storage: Arc<Storage>,
}

impl Tensor {
    /// A CPU tensor from its values; `data.len()` must equal the product of `shape`.
    pub fn from_vec(data: Vec<f32>, shape: &[usize]) -> Result<Tensor> {
        let n: usize = shape.iter().product();
        ensure_shape!(data.len() == n, "from_vec", "{} values for shape {:?} ({} elements)", data.len(), shape, n);
        Ok(Tensor { shape: shape.to_vec(), storage: Arc::new(Storage::Cpu(data)) })
    }

    pub fn from_storage(storage: Storage, shape: &[usize]) -> Result<Tensor> {
        let n: usize = shape.iter().product();
        ensure_shape!(storage.len() == n, "from_storage", "{} values for shape {:?}", storage.len(), shape);
        Ok(Tensor { shape: shape.to_vec(), storage: Arc::new(storage) })
    }

    pub fn full(shape: &[usize], value: f32, device: &Device) -> Result<Tensor> {
        let n: usize = shape.iter().product();
        Tensor::from_vec(vec![value; n], shape)?.to_device(device)
    }

    pub fn zeros(shape: &[usize], device: &Device) -> Result<Tensor> {
        match device {
            Device::Cpu => Tensor::from_vec(vec![0.0; shape.iter().product()], shape),
            Device::Cuda(b) => Tensor::from_storage(Storage::Cuda(b.zeros(shape.iter().product())?), shape),
        }
    }

    pub fn ones(shape: &[usize], device: &Device) -> Result<Tensor> {
        Tensor::full(shape, 1.0, device)
    }

    pub fn scalar(value: f32) -> Tensor {
        Tensor { shape: vec![], storage: Arc::new(Storage::Cpu(vec![value])) }
    }

    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    pub fn rank(&self) -> usize {
        self.shape.len()
    }

    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }

    pub fn device(&self) -> Device {
        self.storage.device()
    }

    pub fn storage(&self) -> &Storage {
        &self.storage
    }

    /// The element type of the storage (always `F32` on the CPU).
    pub fn dtype(&self) -> DType {
        self.storage.dtype()
    }

    /// The same values stored as `dtype` (shares the storage when it already is). f32 → bf16 rounds to nearest
    /// even; bf16 → f32 is exact. bf16 storage exists on CUDA devices only: asking for it on the CPU is an error.
    pub fn to_dtype(&self, dtype: DType) -> Result<Tensor> {
        if self.dtype() == dtype {
            return Ok(self.clone());
        }
        let Storage::Cuda(c) = &*self.storage else {
            return Err(Error::msg(format!(
                "to_dtype: {dtype} tensors live on CUDA devices only (the CPU computes in f32)"
            )));
        };
        Tensor::from_storage(Storage::Cuda(c.cast(dtype)?), &self.shape)
    }

    /// Mutable access to the storage, copying it first if another tensor shares it (a device error if that copy
    /// fails).
    pub fn storage_mut(&mut self) -> Result<&mut Storage> {
        if Arc::get_mut(&mut self.storage).is_none() {
            self.storage = Arc::new(self.storage.try_clone()?);
        }
        Ok(Arc::get_mut(&mut self.storage).expect("a freshly copied storage is not shared"))
    }

    /// Check that `tensors` all live on one device and return it, or `Error::DeviceMismatch` naming `op`.
    pub fn same_device(op: &'static str, tensors: &[&Tensor]) -> Result<Device> {
        let first = tensors.first().map_or(Device::Cpu, |t| t.device());
        if tensors.iter().all(|t| t.device() == first) {
            Ok(first)
        } else {
            Err(Tensor::device_mismatch(op, tensors))
        }
    }

    /// `Error::DeviceMismatch` for `op`, listing the devices of `tensors`.
    pub fn device_mismatch(op: &'static str, tensors: &[&Tensor]) -> Error {
        let devices: Vec<String> = tensors.iter().map(|t| t.device().to_string()).collect();
        Error::DeviceMismatch { op, devices: devices.join(", ") }
    }

    /// The 4 dimensions of an NCHW tensor, or a shape error naming `op`.
    pub fn dims4(&self, op: &'static str) -> Result<(usize, usize, usize, usize)> {
        match self.shape[..] {
            [n, c, h, w] => Ok((n, c, h, w)),
            _ => Err(Error::shape(op, format!("expected an NCHW (4-D) tensor, got shape {:?}", self.shape))),
        }
    }

    /// The 2 dimensions of a matrix, or a shape error naming `op`.
    pub fn dims2(&self, op: &'static str) -> Result<(usize, usize)> {
        match self.shape[..] {
            [a, b] => Ok((a, b)),
            _ => Err(Error::shape(op, format!("expected a 2-D tensor, got shape {:?}", self.shape))),
        }
    }

    /// The same values under another shape with the same element count (shares storage).
    pub fn reshape(&self, shape: &[usize]) -> Result<Tensor> {
        let n: usize = shape.iter().product();
        ensure_shape!(n == self.numel(), "reshape", "cannot reshape {:?} into {:?}", self.shape, shape);
        Ok(Tensor { shape: shape.to_vec(), storage: self.storage.clone() })
    }

    /// The values on the CPU, copied from the device if needed.
    pub fn to_vec(&self) -> Result<Vec<f32>> {
        match &*self.storage {
            Storage::Cpu(v) => Ok(v.clone()),
            Storage::Cuda(c) => c.download(),
        }
    }

    /// Borrow the values of a CPU tensor (an error for device tensors: use `to_vec`).
    pub fn cpu_data(&self) -> Result<&[f32]> {
        match &*self.storage {
            Storage::Cpu(v) => Ok(v),
            Storage::Cuda(_) => Err(Error::msg("cpu_data() on a CUDA tensor; use to_vec()")),
        }
    }

    /// Mutably borrow the values of a CPU tensor, copying first if the storage is shared.
    pub fn cpu_data_mut(&mut self) -> Result<&mut [f32]> {
        match self.storage_mut()? {
            Storage::Cpu(v) => Ok(v),
            Storage::Cuda(_) => Err(Error::msg("cpu_data_mut() on a CUDA tensor")),
        }
    }

    /// The single value of a one-element tensor.
    pub fn item(&self) -> Result<f32> {
        ensure_shape!(self.numel() == 1, "item", "tensor of shape {:?} has {} elements", self.shape, self.numel());
        Ok(self.to_vec()?[0])
    }

    pub fn to_device(&self, device: &Device) -> Result<Tensor> {
        if self.device() == *device {
            return Ok(self.clone());
        }
        let storage = match device {
            Device::Cpu => Storage::Cpu(self.to_vec()?),
            Device::Cuda(b) => Storage::Cuda(b.upload(&self.to_vec()?)?),
        };
        // A bf16 tensor moved to another GPU stays bf16 (the CPU only holds f32).
        let moved = Tensor::from_storage(storage, &self.shape)?;
        if device.is_cpu() {
            Ok(moved)
        } else {
            moved.to_dtype(self.dtype())
        }
    }

    /// Elementwise sum of two same-shaped tensors (no tape; used to accumulate gradients).
    pub fn add(&self, other: &Tensor) -> Result<Tensor> {
        ensure_shape!(self.shape == other.shape, "add", "shapes {:?} and {:?} differ", self.shape, other.shape);
        let storage = match (&*self.storage, &*other.storage) {
            (Storage::Cpu(a), Storage::Cpu(b)) => Storage::Cpu(cpu::zip_map(a, b, |x, y| x + y)),
            (Storage::Cuda(a), Storage::Cuda(b)) if a.dtype() != b.dtype() => {
                return Err(Error::msg(format!("add: operands of dtypes {} and {}", a.dtype(), b.dtype())));
            }
            (Storage::Cuda(a), Storage::Cuda(b)) => {
                let (be, n) = (a.backend(), a.len());
                let mut z = be.empty_as(a.dtype(), n)?;
                // Reads n elements of a and b, writes n of z.
                match a.dtype() {
                    DType::F32 => add_f32(be, grid_1d(n), a, b, &mut z, int("add", n)?)?,
                    DType::Bf16 => {
                        add_bf16(be, grid_1d(n), a.bf16("add")?, b.bf16("add")?, z.bf16_mut("add")?, int("add", n)?)?
                    }
                }
                Storage::Cuda(z)
            }
            _ => return Err(Tensor::device_mismatch("add", &[self, other])),
        };
        Tensor::from_storage(storage, &self.shape)
    }

    /// `self * s` (no tape).
    pub fn scale(&self, s: f32) -> Result<Tensor> {
        let storage = match &*self.storage {
            Storage::Cpu(v) => Storage::Cpu(cpu::map(v, |a| a * s)),
            Storage::Cuda(c) => {
                let (be, n) = (c.backend(), c.len());
                let mut y = be.empty_as(c.dtype(), n)?;
                // Reads and writes n elements.
                match c.dtype() {
                    DType::F32 => elementwise_scale_f32(be, grid_1d(n), c, &mut y, s, int("scale", n)?)?,
                    DType::Bf16 => elementwise_scale_bf16(
                        be,
                        grid_1d(n),
                        c.bf16("scale")?,
                        y.bf16_mut("scale")?,
                        s,
                        int("scale", n)?,
                    )?,
                }
                Storage::Cuda(y)
            }
        };
        Tensor::from_storage(storage, &self.shape)
    }

    /// Largest absolute elementwise difference to another tensor of the same shape (for tests and selftest).
    pub fn max_abs_diff(&self, other: &Tensor) -> Result<f32> {
        ensure_shape!(self.shape == other.shape, "max_abs_diff", "shapes {:?} and {:?}", self.shape, other.shape);
        let (a, b) = (self.to_vec()?, other.to_vec()?);
        Ok(a.iter().zip(&b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max))
    }
}

/// The bridge from the data layer (which knows nothing of tensors) up to this one.
impl crate::data::loader::Batch {
    /// The images as a CPU tensor of shape [B, C, H, W] (copies the values).
    pub fn images_tensor(&self) -> Result<Tensor> {
        Tensor::from_vec(self.images.clone(), &self.shape)
    }
}

impl fmt::Debug for Tensor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Tensor({:?}, {})", self.shape, self.device())
    }
}
