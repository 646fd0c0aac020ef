//! The Inception-v3 network exactly as pytorch-fid runs it for FID: the TensorFlow 2015-12-05 graph ported to
//! PyTorch (`fid_inception_v3()`), with pytorch-fid's FIDInceptionA/C (average pools that skip the zero padding),
//! FIDInceptionE_1 (likewise) and FIDInceptionE_2 (a max pool where torchvision has an average pool), the input
//! path of `InceptionV3.forward` (bilinear resize to 299×299 with align_corners=False, then 2x − 1 on [0, 1]
//! pixels), and the final adaptive average pool giving the 2048-d pool3 features. The 1008-way logits are the
//! fc layer applied to pool3 without its bias, the "logits_unbiased" that torch-fidelity and the original
//! Inception Score code feed the softmax.
//!
//! Each BasicConv2d (conv without bias → BatchNorm(eps = 0.001) → ReLU) is folded at load time into one conv with
//! bias: w' = w·γ/√(var + ε), b' = β − mean·γ/√(var + ε).

use std::collections::HashMap;
use std::path::Path;

use crate::backend::cpu::{self, Mat, Threads};
use crate::ops::conv2d::{self, Conv2dParams, Padding};
use crate::ops::pool::{self, Pool2d};
use crate::ops::{concat, elementwise, relu, resize};
use crate::{Device, Error, Result, Tensor};

/// Where pytorch-fid's weights live; `--inception` takes the downloaded file.
pub const FID_WEIGHTS_URL: &str =
    "https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/pt_inception-2015-12-05-6726825d.pth";
pub const FID_WEIGHTS_FILE: &str = "pt_inception-2015-12-05-6726825d.pth";
pub const POOL3_DIM: usize = 2048;
pub const NUM_LOGITS: usize = 1008;
const BN_EPS: f64 = 0.001;

/// One BasicConv2d: its state-dict prefix and geometry.
#[derive(Clone, Debug)]
pub struct ConvSpec {
    pub name: String,
    pub cin: usize,
    pub cout: usize,
    pub kernel: (usize, usize),
    pub stride: usize,
    pub padding: (usize, usize),
}

fn spec(
    name: String,
    cin: usize,
    cout: usize,
    kernel: (usize, usize),
    stride: usize,
    padding: (usize, usize),
) -> ConvSpec {
    ConvSpec { name, cin, cout, kernel, stride, padding }
}

/// Every BasicConv2d of the network, in torchvision's definition order.
pub fn conv_specs() -> Vec<ConvSpec> {
    let mut v = Vec::new();
    let mut c = |p: &str, n: &str, cin, cout, k, s, pad| {
        let name = if n.is_empty() { p.to_string() } else { format!("{p}.{n}") };
        v.push(spec(name, cin, cout, k, s, pad));
    };
    c("Conv2d_1a_3x3", "", 3, 32, (3, 3), 2, (0, 0));
    c("Conv2d_2a_3x3", "", 32, 32, (3, 3), 1, (0, 0));
    c("Conv2d_2b_3x3", "", 32, 64, (3, 3), 1, (1, 1));
    c("Conv2d_3b_1x1", "", 64, 80, (1, 1), 1, (0, 0));
    c("Conv2d_4a_3x3", "", 80, 192, (3, 3), 1, (0, 0));
    for (p, cin, pool) in [("Mixed_5b", 192, 32), ("Mixed_5c", 256, 64), ("Mixed_5d", 288, 64)] {
        c(p, "branch1x1", cin, 64, (1, 1), 1, (0, 0));
        c(p, "branch5x5_1", cin, 48, (1, 1), 1, (0, 0));
        c(p, "branch5x5_2", 48, 64, (5, 5), 1, (2, 2));
        c(p, "branch3x3dbl_1", cin, 64, (1, 1), 1, (0, 0));
        c(p, "branch3x3dbl_2", 64, 96, (3, 3), 1, (1, 1));
        c(p, "branch3x3dbl_3", 96, 96, (3, 3), 1, (1, 1));
        c(p, "branch_pool", cin, pool, (1, 1), 1, (0, 0));
    }
    c("Mixed_6a", "branch3x3", 288, 384, (3, 3), 2, (0, 0));
    c("Mixed_6a", "branch3x3dbl_1", 288, 64, (1, 1), 1, (0, 0));
    c("Mixed_6a", "branch3x3dbl_2", 64, 96, (3, 3), 1, (1, 1));
    c("Mixed_6a", "branch3x3dbl_3", 96, 96, (3, 3), 2, (0, 0));
    for (p, c7) in [("Mixed_6b", 128), ("Mixed_6c", 160), ("Mixed_6d", 160), ("Mixed_6e", 192)] {
        c(p, "branch1x1", 768, 192, (1, 1), 1, (0, 0));
        c(p, "branch7x7_1", 768, c7, (1, 1), 1, (0, 0));
        c(p, "branch7x7_2", c7, c7, (1, 7), 1, (0, 3));
        c(p, "branch7x7_3", c7, 192, (7, 1), 1, (3, 0));
        c(p, "branch7x7dbl_1", 768, c7, (1, 1), 1, (0, 0));
        c(p, "branch7x7dbl_2", c7, c7, (7, 1), 1, (3, 0));
        c(p, "branch7x7dbl_3", c7, c7, (1, 7), 1, (0, 3));
        c(p, "branch7x7dbl_4", c7, c7, (7, 1), 1, (3, 0));
        c(p, "branch7x7dbl_5", c7, 192, (1, 7), 1, (0, 3));
        c(p, "branch_pool", 768, 192, (1, 1), 1, (0, 0));
    }
    c("Mixed_7a", "branch3x3_1", 768, 192, (1, 1), 1, (0, 0));
    c("Mixed_7a", "branch3x3_2", 192, 320, (3, 3), 2, (0, 0));
    c("Mixed_7a", "branch7x7x3_1", 768, 192, (1, 1), 1, (0, 0));
    c("Mixed_7a", "branch7x7x3_2", 192, 192, (1, 7), 1, (0, 3));
    c("Mixed_7a", "branch7x7x3_3", 192, 192, (7, 1), 1, (3, 0));
    c("Mixed_7a", "branch7x7x3_4", 192, 192, (3, 3), 2, (0, 0));
    for (p, cin) in [("Mixed_7b", 1280), ("Mixed_7c", 2048)] {
        c(p, "branch1x1", cin, 320, (1, 1), 1, (0, 0));
        c(p, "branch3x3_1", cin, 384, (1, 1), 1, (0, 0));
        c(p, "branch3x3_2a", 384, 384, (1, 3), 1, (0, 1));
        c(p, "branch3x3_2b", 384, 384, (3, 1), 1, (1, 0));
        c(p, "branch3x3dbl_1", cin, 448, (1, 1), 1, (0, 0));
        c(p, "branch3x3dbl_2", 448, 384, (3, 3), 1, (1, 1));
        c(p, "branch3x3dbl_3a", 384, 384, (1, 3), 1, (0, 1));
        c(p, "branch3x3dbl_3b", 384, 384, (3, 1), 1, (1, 0));
        c(p, "branch_pool", cin, 192, (1, 1), 1, (0, 0));
    }
    v
}

/// Every floating tensor the network reads from a state dict, with its shape.
pub fn param_shapes() -> Vec<(String, Vec<usize>)> {
    let mut out = Vec::new();
    for s in conv_specs() {
        out.push((format!("{}.conv.weight", s.name), vec![s.cout, s.cin, s.kernel.0, s.kernel.1]));
        for p in ["weight", "bias", "running_mean", "running_var"] {
            out.push((format!("{}.bn.{p}", s.name), vec![s.cout]));
        }
    }
    out.push(("fc.weight".into(), vec![NUM_LOGITS, POOL3_DIM]));
    out.push(("fc.bias".into(), vec![NUM_LOGITS]));
    out
}

/// `n` f32-exact uniforms in [0, 1) for tensor `name`: the generator scripts/fid/make_fixtures.py shares, so
/// the tests can rebuild the fixture's random weights instead of committing 95 MB of them.
pub fn synthetic_uniforms(name: &str, n: usize, seed: u64) -> Vec<f64> {
    let key = name.bytes().fold(0xCBF29CE484222325u64, |h, b| (h ^ b as u64).wrapping_mul(0x100000001B3)) ^ seed;
    (0..n as u64)
        .map(|i| {
            let mut z = i.wrapping_add(key).wrapping_add(0x9E3779B97F4A7C15);
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58476D1CE4E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D049BB133111EB);
            z ^= z >> 31;
            (z >> 40) as f64 / (1u64 << 24) as f64
        })
        .collect()
}

/// The synthetic value of one tensor (the same ranges as the fixture script's `synthetic_value`).
pub fn synthetic_tensor(name: &str, shape: &[usize], seed: u64) -> Result<Tensor> {
    let n: usize = shape.iter().product();
    let u = synthetic_uniforms(name, n, seed);
    let f: Box<dyn Fn(f64) -> f64> = if name.ends_with("conv.weight") {
        let fan_in: usize = shape[1..].iter().product();
        let a = (6.0 / fan_in as f64).sqrt();
        Box::new(move |u| (2.0 * u - 1.0) * a)
    } else if name.ends_with("bn.weight") || name.ends_with("bn.running_var") {
        Box::new(|u| 0.5 + u)
    } else if name.ends_with("bn.bias") || name.ends_with("bn.running_mean") || name == "fc.bias" {
        Box::new(|u| (2.0 * u - 1.0) * 0.1)
    } else if name == "fc.weight" {
        let a = (3.0 / shape[1] as f64).sqrt();
        Box::new(move |u| (2.0 * u - 1.0) * a * 4.0)
    } else {
        return Err(Error::msg(format!("no synthetic rule for {name}")));
    };
    Tensor::from_vec(u.into_iter().map(|u| f(u) as f32).collect(), shape)
}

/// A whole synthetic state dict (see `synthetic_uniforms`).
pub fn synthetic_weights(seed: u64) -> Result<HashMap<String, Tensor>> {
    param_shapes().into_iter().map(|(name, shape)| Ok((name.clone(), synthetic_tensor(&name, &shape, seed)?))).collect()
}

fn weights_help() -> String {
    format!("download pytorch-fid's Inception weights from {FID_WEIGHTS_URL} and pass the file with --inception")
}

/// pytorch-fid's weights file (`pt_inception-2015-12-05-6726825d.pth`), read directly.
pub fn load_weights(path: &Path) -> Result<HashMap<String, Tensor>> {
    if !path.is_file() {
        return Err(Error::msg(format!("Inception weights {} not found: {}", path.display(), weights_help())));
    }
    crate::eval::pth::load_state_dict(path).map_err(|e| Error::msg(format!("{e}\n{}", weights_help())))
}

/// A BasicConv2d with its BatchNorm folded in.
struct FoldedConv {
    w: Tensor,
    b: Tensor,
    params: Conv2dParams,
}

pub struct Inception {
    convs: HashMap<String, FoldedConv>,
    /// fc.weight [1008, 2048], kept on the CPU (one small GEMM per batch).
    fc_w: Vec<f32>,
    device: Device,
}

/// What the network gives for a batch: pool3 features [N, 2048] and unbiased logits [N, 1008].
pub struct InceptionOutput {
    pub pool3: Vec<f32>,
    pub logits: Vec<f32>,
}

impl Inception {
    /// Check every tensor against the expected shapes (naming `source` in errors), fold the BatchNorms and move
    /// the weights to `device`.
    pub fn new(weights: &HashMap<String, Tensor>, device: &Device, source: &str) -> Result<Inception> {
        for (name, shape) in param_shapes() {
            let t = weights.get(&name).ok_or_else(|| {
                Error::msg(format!(
                    "{source}: missing tensor {name}: not pytorch-fid's Inception weights; {}",
                    weights_help()
                ))
            })?;
            if t.shape() != shape.as_slice() {
                return Err(Error::msg(format!(
                    "{source}: {name} has shape {:?}, expected {shape:?}: not pytorch-fid's Inception weights; {}",
                    t.shape(),
                    weights_help()
                )));
            }
        }
        let get = |n: String| weights[&n].cpu_data().map(|v| v.to_vec());
        let mut convs = HashMap::new();
        for s in conv_specs() {
            let w = get(format!("{}.conv.weight", s.name))?;
            let (gamma, beta) = (get(format!("{}.bn.weight", s.name))?, get(format!("{}.bn.bias", s.name))?);
            let (mean, var) = (get(format!("{}.bn.running_mean", s.name))?, get(format!("{}.bn.running_var", s.name))?);
            let per_out = w.len() / s.cout;
            let mut wf = vec![0.0f32; w.len()];
            let mut bf = vec![0.0f32; s.cout];
            for o in 0..s.cout {
                let scale = gamma[o] as f64 / (var[o] as f64 + BN_EPS).sqrt();
                for (d, &v) in wf[o * per_out..(o + 1) * per_out].iter_mut().zip(&w[o * per_out..(o + 1) * per_out]) {
                    *d = (v as f64 * scale) as f32;
                }
                bf[o] = (beta[o] as f64 - mean[o] as f64 * scale) as f32;
            }
            let (ph, pw) = s.padding;
            let params =
                Conv2dParams { stride: s.stride, padding: Padding { top: ph, bottom: ph, left: pw, right: pw } };
            let w = Tensor::from_vec(wf, &[s.cout, s.cin, s.kernel.0, s.kernel.1])?.to_device(device)?;
            let b = Tensor::from_vec(bf, &[s.cout])?.to_device(device)?;
            convs.insert(s.name.clone(), FoldedConv { w, b, params });
        }
        Ok(Inception { convs, fc_w: get("fc.weight".into())?, device: device.clone() })
    }

    /// Load pytorch-fid's weights file onto `device`.
    pub fn from_file(path: &Path, device: &Device) -> Result<Inception> {
        Inception::new(&load_weights(path)?, device, &path.display().to_string())
    }

    pub fn device(&self) -> &Device {
        &self.device
    }

    /// conv (BN folded) → ReLU.
    fn conv(&self, block: &str, branch: &str, x: &Tensor) -> Result<Tensor> {
        let name = if branch.is_empty() { block.to_string() } else { format!("{block}.{branch}") };
        let c = &self.convs[&name];
        relu::relu_forward(&conv2d::forward(x, &c.w, Some(&c.b), c.params)?)
    }

    fn chain(&self, block: &str, branches: &[&str], x: &Tensor) -> Result<Tensor> {
        let mut y = x.clone();
        for b in branches {
            y = self.conv(block, b, &y)?;
        }
        Ok(y)
    }

    /// FIDInceptionA: the pool branch averages only in-image pixels.
    fn block_a(&self, p: &str, x: &Tensor) -> Result<Tensor> {
        let b1 = self.conv(p, "branch1x1", x)?;
        let b5 = self.chain(p, &["branch5x5_1", "branch5x5_2"], x)?;
        let b3 = self.chain(p, &["branch3x3dbl_1", "branch3x3dbl_2", "branch3x3dbl_3"], x)?;
        let bp = self.conv(p, "branch_pool", &pool::avg_pool2d_forward(x, Pool2d::new(3, 1, 1), false)?)?;
        concat::forward(&[b1, b5, b3, bp])
    }

    /// torchvision's InceptionB (Mixed_6a): stride-2 reduction.
    fn block_b(&self, p: &str, x: &Tensor) -> Result<Tensor> {
        let b3 = self.conv(p, "branch3x3", x)?;
        let bd = self.chain(p, &["branch3x3dbl_1", "branch3x3dbl_2", "branch3x3dbl_3"], x)?;
        let bp = pool::max_pool2d_forward(x, Pool2d::new(3, 2, 0))?;
        concat::forward(&[b3, bd, bp])
    }

    /// FIDInceptionC: factorised 7×7 branches, in-image average pool.
    fn block_c(&self, p: &str, x: &Tensor) -> Result<Tensor> {
        let b1 = self.conv(p, "branch1x1", x)?;
        let b7 = self.chain(p, &["branch7x7_1", "branch7x7_2", "branch7x7_3"], x)?;
        let dbl = ["branch7x7dbl_1", "branch7x7dbl_2", "branch7x7dbl_3", "branch7x7dbl_4", "branch7x7dbl_5"];
        let bd = self.chain(p, &dbl, x)?;
        let bp = self.conv(p, "branch_pool", &pool::avg_pool2d_forward(x, Pool2d::new(3, 1, 1), false)?)?;
        concat::forward(&[b1, b7, bd, bp])
    }

    /// torchvision's InceptionD (Mixed_7a): stride-2 reduction.
    fn block_d(&self, p: &str, x: &Tensor) -> Result<Tensor> {
        let b3 = self.chain(p, &["branch3x3_1", "branch3x3_2"], x)?;
        let b7 = self.chain(p, &["branch7x7x3_1", "branch7x7x3_2", "branch7x7x3_3", "branch7x7x3_4"], x)?;
        let bp = pool::max_pool2d_forward(x, Pool2d::new(3, 2, 0))?;
        concat::forward(&[b3, b7, bp])
    }

    /// FIDInceptionE_1 (in-image average pool) and FIDInceptionE_2 (`max_pool_branch`: a 3×3 max pool).
    fn block_e(&self, p: &str, x: &Tensor, max_pool_branch: bool) -> Result<Tensor> {
        let b1 = self.conv(p, "branch1x1", x)?;
        let t = self.conv(p, "branch3x3_1", x)?;
        let b3 = concat::forward(&[self.conv(p, "branch3x3_2a", &t)?, self.conv(p, "branch3x3_2b", &t)?])?;
        let t = self.chain(p, &["branch3x3dbl_1", "branch3x3dbl_2"], x)?;
        let bd = concat::forward(&[self.conv(p, "branch3x3dbl_3a", &t)?, self.conv(p, "branch3x3dbl_3b", &t)?])?;
        let pooled = if max_pool_branch {
            pool::max_pool2d_forward(x, Pool2d::new(3, 1, 1))?
        } else {
            pool::avg_pool2d_forward(x, Pool2d::new(3, 1, 1), false)?
        };
        let bp = self.conv(p, "branch_pool", &pooled)?;
        concat::forward(&[b1, b3, bd, bp])
    }

    /// pool3 features [N, 2048, 1, 1] of images [N, 3, H, W] in [0, 1] on the network's device.
    pub fn pool3(&self, x: &Tensor) -> Result<Tensor> {
        let (_, c, _, _) = x.dims4("inception")?;
        crate::ensure_shape!(c == 3, "inception", "expected 3-channel images, got {:?}", x.shape());
        let x = resize::resize_bilinear_forward(x, 299, 299)?;
        let x = elementwise::add_scalar_tensor(&elementwise::scale_tensor(&x, 2.0)?, -1.0)?;
        let mut x = x;
        for name in ["Conv2d_1a_3x3", "Conv2d_2a_3x3", "Conv2d_2b_3x3"] {
            x = self.conv(name, "", &x)?;
        }
        x = pool::max_pool2d_forward(&x, Pool2d::new(3, 2, 0))?;
        for name in ["Conv2d_3b_1x1", "Conv2d_4a_3x3"] {
            x = self.conv(name, "", &x)?;
        }
        x = pool::max_pool2d_forward(&x, Pool2d::new(3, 2, 0))?;
        for p in ["Mixed_5b", "Mixed_5c", "Mixed_5d"] {
            x = self.block_a(p, &x)?;
        }
        x = self.block_b("Mixed_6a", &x)?;
        for p in ["Mixed_6b", "Mixed_6c", "Mixed_6d", "Mixed_6e"] {
            x = self.block_c(p, &x)?;
        }
        x = self.block_d("Mixed_7a", &x)?;
        x = self.block_e("Mixed_7b", &x, false)?;
        x = self.block_e("Mixed_7c", &x, true)?;
        pool::global_avg_pool_forward(&x)
    }

    /// pool3 features and unbiased logits of uint8 images [N, H, W, 3] (the npz layout), as pytorch-fid feeds
    /// them: ToTensor (x / 255, CHW), resize, 2x − 1.
    pub fn run_u8_nhwc(&self, pixels: &[u8], n: usize, h: usize, w: usize) -> Result<InceptionOutput> {
        crate::ensure_shape!(pixels.len() == n * h * w * 3, "inception", "{} bytes for {n}×{h}×{w}×3", pixels.len());
        let mut x = vec![0.0f32; pixels.len()];
        for i in 0..n {
            for c in 0..3 {
                for p in 0..h * w {
                    x[(i * 3 + c) * h * w + p] = pixels[(i * h * w + p) * 3 + c] as f32 / 255.0;
                }
            }
        }
        let x = Tensor::from_vec(x, &[n, 3, h, w])?.to_device(&self.device)?;
        let pool3 = self.pool3(&x)?.to_vec()?;
        let mut logits = vec![0.0f32; n * NUM_LOGITS];
        cpu::gemm(
            &mut logits,
            Mat::new(&pool3, n, POOL3_DIM),
            Mat::new(&self.fc_w, NUM_LOGITS, POOL3_DIM).t(),
            false,
            Threads::All,
        );
        Ok(InceptionOutput { pool3, logits })
    }
}
