//! Philox4x32-10 counter-based RNG (Salmon, Moraes, Dror & Shaw, "Parallel Random Numbers: As Easy as 1, 2, 3",
//! SC'11; the generator of Random123 and cuRAND's `CURAND_RNG_PSEUDO_PHILOX4_32_10`).
//!
//! A counter-based generator is a pure function `(counter, key) → 4 random words`, so any element of a stream can
//! be computed independently: the CPU loop here and the CUDA kernels in `kernels/rng.cu` (and `dropout.cu`) run
//! the SAME algorithm with the SAME counter layout, and one seed gives the same noise on both devices.
//!
//! Stream layout (shared with the kernels — change both or neither):
//! - key = `[seed_lo, seed_hi]` (the 64-bit seed split into 32-bit halves);
//! - each call (`normal`, `uniform`, `normal_tensor`, ...) draws from counters
//!   `[i_lo, i_hi, offset_lo, offset_hi]` for blocks i = 0, 1, ..., then advances `offset` by one. Element e of a
//!   call uses word `e % 4` of block `e / 4`. The whole state is `(seed, offset)`: checkpoint those two integers
//!   and resume is exact.
//!
//! Conversions:
//! - uniform: `u = ((x >> 8) + 1) · 2⁻²⁴ ∈ (0, 1]` — the top 24 bits, an integer times a power of two, so `u` is
//!   exactly representable in f32 and bit-identical on CPU and GPU (and never 0, so `ln u` is finite);
//! - normal: Box–Muller on the pairs (word 0, word 1) → normals (0, 1) and (word 2, word 3) → normals (2, 3):
//!   `r = √(−2 ln u₁)`, `z₀ = r cos(2π u₂)`, `z₁ = r sin(2π u₂)`, all in f32. Because u₁ ≥ 2⁻²⁴, |z| ≤ 5.77: the
//!   tail beyond that (probability ~8e-9) is cut off, which is harmless for diffusion noise.
//!
//! Precision across devices: integer outputs and uniforms are bit-identical. CUDA's `logf`/`sinf`/`cosf` (no fast
//! math) are within 1–2 ulp of correctly rounded but not always equal to the host libm's, so normals agree to
//! about 1e-6 (relative), not bit for bit.

use rayon::prelude::*;

use cudarc::driver::{CudaSlice, DevicePtr};

use crate::backend::cuda::{CudaBackend, CudaStorage};
use crate::backend::kernels::{grid_1d, kernels};
use crate::backend::{Device, Storage};
use crate::{ensure_shape, Result, Tensor};

kernels! {
    /// n standard normals of the draw (seed, offset), one thread per block of 4 (kernels/rng.cu).
    fn rng_normal_f32(out: &mut CudaStorage, n: i32, seed: u64, offset: u64);
    /// n uniforms in (0, 1] of the draw (seed, offset), one thread per block of 4.
    fn rng_uniform_f32(out: &mut CudaStorage, n: i32, seed: u64, offset: u64);
}

const PHILOX_M0: u32 = 0xD251_1F53;
const PHILOX_M1: u32 = 0xCD9E_8D57;
const PHILOX_W0: u32 = 0x9E37_79B9;
const PHILOX_W1: u32 = 0xBB67_AE85;

/// 2⁻²⁴: the spacing of the 24-bit uniforms.
const UNIFORM_STEP: f32 = 1.0 / 16_777_216.0;

/// Split a 32×32 → 64-bit product into (hi, lo).
#[inline(always)]
fn mulhilo(a: u32, b: u32) -> (u32, u32) {
    let p = a as u64 * b as u64;
    ((p >> 32) as u32, p as u32)
}

/// One Philox4x32 round: two multiplications, then a Feistel-like mix of the halves with the round key.
#[inline(always)]
fn philox_round(c: [u32; 4], k: [u32; 2]) -> [u32; 4] {
    let (hi0, lo0) = mulhilo(PHILOX_M0, c[0]);
    let (hi1, lo1) = mulhilo(PHILOX_M1, c[2]);
    [hi1 ^ c[1] ^ k[0], lo1, hi0 ^ c[3] ^ k[1], lo0]
}

/// Philox4x32-10: ten rounds, the key bumped by the Weyl constants between rounds (as Random123's `philox4x32`).
pub fn philox4x32_10(counter: [u32; 4], key: [u32; 2]) -> [u32; 4] {
    let mut c = counter;
    let mut k = key;
    for round in 0..10 {
        if round > 0 {
            k = [k[0].wrapping_add(PHILOX_W0), k[1].wrapping_add(PHILOX_W1)];
        }
        c = philox_round(c, k);
    }
    c
}

/// A 32-bit word → a uniform in (0, 1], exactly `((x >> 8) + 1) · 2⁻²⁴` (see the module docs).
#[inline(always)]
pub fn uniform_from_u32(x: u32) -> f32 {
    ((x >> 8) + 1) as f32 * UNIFORM_STEP
}

/// Box–Muller on one pair of uniforms (u1 ∈ (0, 1]) → two independent standard normals.
#[inline(always)]
pub fn box_muller(u1: f32, u2: f32) -> (f32, f32) {
    let r = (-2.0 * u1.ln()).sqrt();
    let theta = std::f32::consts::TAU * u2;
    (r * theta.cos(), r * theta.sin())
}

/// A Philox stream: the seed (the key) and how many draws (calls) have been made (the high counter words).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Philox {
    seed: u64,
    offset: u64,
    /// Where the CUDA kernels of this stream's draws read their offset from (see `counted_on`).
    device: Option<DeviceCounter>,
}

/// A u64 in device memory that holds a stream's offset, advanced by the device itself: a captured CUDA graph replays
/// its kernels with the arguments of the capture, so a kernel drawing from a stream bound to a counter reads the
/// draw's offset as `*counter + (offset − origin)` (kernels/rng.cu `rng_offset`), which is this step's when the
/// counter has been advanced past the earlier steps. The host `offset` still counts every draw (checkpoints).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DeviceCounter {
    /// The counter's device address; whoever binds a stream keeps the buffer alive while its draws' kernels run.
    addr: u64,
    ordinal: usize,
    /// The host offset at binding time, which the counter holds when the first draw's kernel runs.
    origin: u64,
}

impl Philox {
    pub fn new(seed: u64) -> Philox {
        Philox { seed, offset: 0, device: None }
    }

    /// Resume a stream from a checkpointed `(seed, offset)`.
    pub fn from_state(seed: u64, offset: u64) -> Philox {
        Philox { seed, offset, device: None }
    }

    /// This stream with its CUDA draws' offsets read from `counters[index]` on `be`, which must hold the current
    /// `offset` when the next draw's kernel runs (see `DeviceCounter`).
    pub fn counted_on(self, counters: &CudaSlice<u64>, index: usize, be: &CudaBackend) -> Result<Philox> {
        ensure_shape!(index < counters.len(), "Philox::counted_on", "counter {index} of {}", counters.len());
        let (base, _record) = counters.device_ptr(be.stream());
        let addr = base + 8 * index as u64;
        Ok(Philox { device: Some(DeviceCounter { addr, ordinal: be.ordinal(), origin: self.offset }), ..self })
    }

    /// The same stream state with its offsets counted on the host only.
    pub fn uncounted(self) -> Philox {
        Philox { device: None, ..self }
    }

    /// What a CUDA kernel on `be` takes for this draw: (the device counter's address, 0 for none; the value added to
    /// it, or the offset itself without a counter). A counter on another device is `Error::DeviceMismatch`.
    pub fn device_offset(&self, be: &CudaBackend) -> Result<(u64, u64)> {
        match self.device {
            None => Ok((0, self.offset)),
            Some(c) if c.ordinal != be.ordinal() => Err(crate::Error::DeviceMismatch {
                op: "philox",
                devices: format!("cuda:{}, cuda:{}", be.ordinal(), c.ordinal),
            }),
            Some(c) => Ok((c.addr, self.offset.wrapping_sub(c.origin))),
        }
    }

    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// The number of draws made so far: the next draw uses this value in counter words 2 and 3.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// Reserve one draw for a consumer that generates it itself (a CUDA kernel, or a backward pass regenerating a
    /// dropout mask): returns the state that draw uses and advances this stream past it.
    pub fn take_draw(&mut self) -> Philox {
        let draw = *self;
        self.offset += 1;
        draw
    }

    fn key(&self) -> [u32; 2] {
        [self.seed as u32, (self.seed >> 32) as u32]
    }

    /// The four words of block `i` of the draw at `offset`.
    fn block(&self, i: u64) -> [u32; 4] {
        philox4x32_10([i as u32, (i >> 32) as u32, self.offset as u32, (self.offset >> 32) as u32], self.key())
    }

    /// Fill `out` with `convert(block)` four elements at a time (the last block may be cut short), then advance.
    fn draw(&mut self, n: usize, convert: impl Fn([u32; 4]) -> [f32; 4] + Sync) -> Vec<f32> {
        let mut out = vec![0.0f32; n];
        let this = *self;
        out.par_chunks_mut(4).with_min_len(1024).enumerate().for_each(|(i, chunk)| {
            let vals = convert(this.block(i as u64));
            chunk.copy_from_slice(&vals[..chunk.len()]);
        });
        self.offset += 1;
        out
    }

    /// `n` uniforms in (0, 1]; advances the offset by one.
    pub fn uniform(&mut self, n: usize) -> Vec<f32> {
        self.draw(n, |w| w.map(uniform_from_u32))
    }

    /// Elements `first .. first + n` of this draw's uniforms (what `uniform(first + n)` would give from index
    /// `first` on: counters are random-access); does not advance.
    pub fn uniform_at(&self, first: u64, n: usize) -> Vec<f32> {
        (0..n)
            .into_par_iter()
            .with_min_len(4096)
            .map(|i| {
                let e = first + i as u64;
                uniform_from_u32(self.block(e / 4)[(e % 4) as usize])
            })
            .collect()
    }

    /// `n` standard normals (Box–Muller); advances the offset by one.
    pub fn normal(&mut self, n: usize) -> Vec<f32> {
        self.draw(n, |w| {
            let (z0, z1) = box_muller(uniform_from_u32(w[0]), uniform_from_u32(w[1]));
            let (z2, z3) = box_muller(uniform_from_u32(w[2]), uniform_from_u32(w[3]));
            [z0, z1, z2, z3]
        })
    }

    /// A CPU tensor of standard normals; advances the offset by one.
    pub fn normal_tensor(&mut self, shape: &[usize]) -> Result<Tensor> {
        Tensor::from_vec(self.normal(shape.iter().product()), shape)
    }

    /// A tensor of standard normals generated on `device`: the same stream as `normal_tensor` (to ~1e-6, see the
    /// module docs). The CUDA arm launches `rng_normal_f32` from kernels/rng.cu.
    pub fn normal_on(&mut self, shape: &[usize], device: &Device) -> Result<Tensor> {
        match device {
            Device::Cpu => self.normal_tensor(shape),
            Device::Cuda(backend) => {
                if self.device.is_some() {
                    // rng_normal_f32 takes its offset as an argument: it would not follow the device's count.
                    return Err(crate::Error::msg("normal_on: this stream's offsets are counted on the device"));
                }
                let n: usize = shape.iter().product();
                ensure_shape!(n <= i32::MAX as usize, "normal_on", "{n} elements do not fit the kernel's int count");
                let mut out = backend.empty(n)?;
                // The kernel writes n floats of out (one thread per block of 4) and reads nothing else.
                rng_normal_f32(backend, grid_1d(n.div_ceil(4)), &mut out, n as i32, self.seed, self.offset)?;
                self.offset += 1;
                Tensor::from_storage(Storage::Cuda(out), shape)
            }
        }
    }
}
