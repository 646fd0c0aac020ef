//! The backend seam. A tensor's storage lives on one device; each op matches on the storage once and calls the
//! CPU reference (`cpu`) or its CUDA arm, which launches kernels through the typed layer (`kernels`). Everything
//! above `ops/` is device-agnostic.
//!
//! - `cpu`: rayon maps and the `gemm`-crate GEMM;
//! - `cuda`: context, stream, the embedded module, device buffers;
//! - `kernels`: the typed kernel layer (`kernels!` declarations, argument/device checks, the one launch);
//! - `cuda_gemm`: row-major (batched) GEMM (cuBLAS or kernels/gemm.cu);
//! - `cuda_gemm_bf16`: the same with bf16 operands, f32 accumulation (cuBLAS GemmEx or kernels/gemm_bf16.cu);
//! - `cuda_reduce`: the two-stage f64 device sums shared by `ops::reduce`, `ops::loss` and `optim`;
//! - `graph`: CUDA graph capture and replay on a backend's stream (`--cuda-graphs`).

pub mod cpu;
pub mod cuda;
pub mod cuda_gemm;
pub mod cuda_gemm_bf16;
pub mod cuda_reduce;
pub mod graph;
pub mod kernels;

use std::fmt;
use std::sync::Arc;

use crate::{Error, Result};

/// Where tensors live and ops run.
#[derive(Clone)]
pub enum Device {
    Cpu,
    Cuda(Arc<cuda::CudaBackend>),
}

impl Device {
    /// Parse `auto`, `cpu`, `cuda` or `cuda:i`. `auto` takes the first GPU when one is usable and falls back to
    /// the CPU (with the reason on stderr); `cuda` without a usable GPU is an error.
    pub fn parse(spec: &str) -> Result<Device> {
        match spec {
            "cpu" => Ok(Device::Cpu),
            "auto" => match cuda::CudaBackend::open(0) {
                Ok(b) => Ok(Device::Cuda(b)),
                Err(e) => {
                    eprintln!("ddpm-cuda: using the CPU ({e})");
                    Ok(Device::Cpu)
                }
            },
            "cuda" => Ok(Device::Cuda(cuda::CudaBackend::open(0)?)),
            s if s.starts_with("cuda:") => {
                let i: usize =
                    s[5..].parse().map_err(|_| Error::msg(format!("bad device '{s}': expected cuda:<index>")))?;
                Ok(Device::Cuda(cuda::CudaBackend::open(i)?))
            }
            s => Err(Error::msg(format!("unknown device '{s}': expected auto, cpu, cuda or cuda:<index>"))),
        }
    }

    pub fn is_cpu(&self) -> bool {
        matches!(self, Device::Cpu)
    }
}

impl PartialEq for Device {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Device::Cpu, Device::Cpu) => true,
            (Device::Cuda(a), Device::Cuda(b)) => a.ordinal() == b.ordinal(),
            _ => false,
        }
    }
}

impl fmt::Debug for Device {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Device::Cpu => write!(f, "cpu"),
            Device::Cuda(b) => write!(f, "cuda:{}", b.ordinal()),
        }
    }
}

impl fmt::Display for Device {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

/// The element type of a tensor's storage. CPU storage is always f32; CUDA storage is f32 or bf16 (activations
/// and their gradients under mixed precision, see docs/CUDA.md "Mixed precision").
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DType {
    F32,
    Bf16,
}

impl DType {
    pub fn name(self) -> &'static str {
        match self {
            DType::F32 => "f32",
            DType::Bf16 => "bf16",
        }
    }
}

impl fmt::Display for DType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The bytes behind a tensor.
pub enum Storage {
    Cpu(Vec<f32>),
    Cuda(cuda::CudaStorage),
}

impl Storage {
    pub fn len(&self) -> usize {
        match self {
            Storage::Cpu(v) => v.len(),
            Storage::Cuda(c) => c.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn dtype(&self) -> DType {
        match self {
            Storage::Cpu(_) => DType::F32,
            Storage::Cuda(c) => c.dtype(),
        }
    }

    pub fn device(&self) -> Device {
        match self {
            Storage::Cpu(_) => Device::Cpu,
            Storage::Cuda(c) => Device::Cuda(c.backend().clone()),
        }
    }

    /// A deep copy (on the device for CUDA storage; a device error if that copy fails). Used by copy-on-write
    /// updates (`Tensor::storage_mut`).
    pub fn try_clone(&self) -> Result<Storage> {
        Ok(match self {
            Storage::Cpu(v) => Storage::Cpu(v.clone()),
            Storage::Cuda(c) => Storage::Cuda(c.try_clone()?),
        })
    }
}
