//! The DDPM U-Net (Ho et al. 2020, official `unet.py`), with diffusers `UNet2DModel` parameter names.
//! Wide ResNet blocks with a time-embedding bias, single-head self-attention at chosen resolutions, stride-2
//! convs padded right/bottom to downsample, nearest ×2 + conv to upsample, skip connections by channel concat.

use serde::{Deserialize, Serialize};

use super::layers::{Conv2d, GroupNorm, Linear};
use super::{Ctx, ParamStore};
use crate::autograd::{reshape, to_dtype};
use crate::ops::attention::attention;
use crate::ops::concat::concat_channels;
use crate::ops::conv2d::{Conv2dParams, Padding};
use crate::ops::dropout::dropout_in_batch;
use crate::ops::embedding::timestep_embedding;
use crate::ops::silu::silu;
use crate::ops::upsample::upsample_nearest2x;
use crate::rng::Philox;
use crate::{DType, Error, Result, Var};

/// The official code's "zero" init for the last layer of each residual branch.
const ZERO_INIT: f64 = 1e-10;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UNetConfig {
    pub image_size: usize,
    pub in_channels: usize,
    /// Base channel count `ch`.
    pub ch: usize,
    pub ch_mult: Vec<usize>,
    pub num_res_blocks: usize,
    /// Resolutions (image side in pixels) that get a self-attention block.
    pub attn_resolutions: Vec<usize>,
    pub dropout: f32,
    #[serde(default = "default_groups")]
    pub norm_groups: usize,
    /// GroupNorm ε (1e-6 in the official code and google/ddpm-cifar10-32; diffusers' `norm_eps`).
    #[serde(default = "default_norm_eps")]
    pub norm_eps: f64,
    /// Padding of the stride-2 downsampling conv (diffusers' `downsample_padding`): 0 = the paper's TF "SAME",
    /// one row/column at the bottom/right only; 1 = one on every side.
    #[serde(default)]
    pub downsample_padding: usize,
}

fn default_groups() -> usize {
    32
}

fn default_norm_eps() -> f64 {
    1e-6
}

impl UNetConfig {
    /// The downsampling conv's stride and padding.
    pub fn down_conv(&self) -> Conv2dParams {
        match self.downsample_padding {
            0 => Conv2dParams::tf_same_down(),
            p => Conv2dParams { stride: 2, padding: Padding { top: p, bottom: p, left: p, right: p } },
        }
    }

    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(Error::msg(format!("invalid U-Net config: {m}")));
        if self.ch_mult.is_empty()
            || self.ch == 0
            || self.in_channels == 0
            || self.num_res_blocks == 0
            || self.norm_groups == 0
        {
            return bad("ch, in_channels, num_res_blocks, norm_groups and ch_mult must be non-zero".into());
        }
        let levels = self.ch_mult.len();
        if !self.image_size.is_multiple_of(1 << (levels - 1)) {
            return bad(format!("image_size {} is not divisible by 2^{}", self.image_size, levels - 1));
        }
        if !(0.0..1.0).contains(&self.dropout) {
            return bad(format!("dropout {} is not in [0, 1)", self.dropout));
        }
        if self.downsample_padding > 1 {
            return bad(format!("downsample_padding {} is not 0 or 1", self.downsample_padding));
        }
        if !(self.norm_eps > 0.0 && self.norm_eps.is_finite()) {
            return bad(format!("norm_eps {} must be positive", self.norm_eps));
        }
        for m in &self.ch_mult {
            if !(self.ch * m).is_multiple_of(self.norm_groups) {
                return bad(format!("channels {} not divisible by norm_groups {}", self.ch * m, self.norm_groups));
            }
        }
        Ok(())
    }
}

pub struct ResBlock {
    norm1: GroupNorm,
    conv1: Conv2d,
    time_emb_proj: Linear,
    norm2: GroupNorm,
    conv2: Conv2d,
    conv_shortcut: Option<Conv2d>,
    dropout: f32,
}

impl ResBlock {
    fn new(s: &mut ParamStore, r: &mut Philox, name: &str, cin: usize, cout: usize, cfg: &UNetConfig) -> Result<Self> {
        let temb = 4 * cfg.ch;
        let g = cfg.norm_groups;
        Ok(ResBlock {
            norm1: GroupNorm::new(s, r, &format!("{name}.norm1"), cin, g, cfg.norm_eps as f32)?,
            conv1: Conv2d::new(s, r, &format!("{name}.conv1"), (cin, cout, 3), Conv2dParams::same(3), 1.0)?,
            time_emb_proj: Linear::new(s, r, &format!("{name}.time_emb_proj"), temb, cout, 1.0)?,
            norm2: GroupNorm::new(s, r, &format!("{name}.norm2"), cout, g, cfg.norm_eps as f32)?,
            conv2: Conv2d::new(s, r, &format!("{name}.conv2"), (cout, cout, 3), Conv2dParams::same(3), ZERO_INIT)?,
            conv_shortcut: if cin != cout {
                let p = Conv2dParams::same(1);
                Some(Conv2d::new(s, r, &format!("{name}.conv_shortcut"), (cin, cout, 1), p, 1.0)?)
            } else {
                None
            },
            dropout: cfg.dropout,
        })
    }

    /// `temb` is swish(time embedding), [N, 4ch], shared by every block. diffusers' ResnetBlock2D (output scale 1):
    /// h = conv1(swish(norm1(x))) + time_emb_proj(temb)[:, :, None, None]; h = conv2(dropout(swish(norm2(h))));
    /// out = shortcut(x) + h. Both adds ride in the convs' epilogues (`Conv2d::forward_fused`: in bf16 one launch
    /// each, no separate pass over the activations; in f32 the same ops in the same order as unfused).
    pub fn forward(&self, cx: &Ctx, x: &Var, temb: &Var) -> Result<Var> {
        let time_bias = self.time_emb_proj.forward(cx, temb)?;
        let h = self.conv1.forward_fused(cx, &self.norm1.forward_silu(cx, x)?, Some(&time_bias), None)?;
        let h = self.norm2.forward_silu(cx, &h)?;
        let h = dropout_in_batch(&h, self.dropout, &mut cx.rng(), cx.train, cx.first_row())?;
        let skip = match &self.conv_shortcut {
            Some(c) => c.forward(cx, x)?,
            None => x.clone(),
        };
        self.conv2.forward_fused(cx, &h, None, Some(&skip))
    }
}

pub struct AttnBlock {
    group_norm: GroupNorm,
    to_q: Linear,
    to_k: Linear,
    to_v: Linear,
    to_out: Linear,
}

impl AttnBlock {
    fn new(s: &mut ParamStore, r: &mut Philox, name: &str, c: usize, cfg: &UNetConfig) -> Result<Self> {
        Ok(AttnBlock {
            group_norm: GroupNorm::new(s, r, &format!("{name}.group_norm"), c, cfg.norm_groups, cfg.norm_eps as f32)?,
            to_q: Linear::new(s, r, &format!("{name}.to_q"), c, c, 1.0)?,
            to_k: Linear::new(s, r, &format!("{name}.to_k"), c, c, 1.0)?,
            to_v: Linear::new(s, r, &format!("{name}.to_v"), c, c, 1.0)?,
            to_out: Linear::new(s, r, &format!("{name}.to_out.0"), c, c, ZERO_INIT)?,
        })
    }

    /// x + proj_out(softmax(q kᵀ / √C) v), over the H·W positions.
    pub fn forward(&self, cx: &Ctx, x: &Var) -> Result<Var> {
        let (n, c, h, w) = x.value().dims4("attention block")?;
        let hn = self.group_norm.forward(cx, x)?;
        let tokens = |l: &Linear| reshape(&l.forward_pixels(cx, &hn)?, &[n, c, h * w]);
        let a = attention(&tokens(&self.to_q)?, &tokens(&self.to_k)?, &tokens(&self.to_v)?)?;
        // diffusers adds the residual after to_out (x + out): fused into the projection's epilogue.
        self.to_out.forward_pixels_residual(cx, &reshape(&a, &[n, c, h, w])?, x)
    }
}

/// One resolution level: its ResBlocks, their attention blocks (if any) and the resampling conv.
struct Level {
    resnets: Vec<ResBlock>,
    attentions: Vec<AttnBlock>,
    resample: Option<Conv2d>,
}

pub struct UNet {
    pub config: UNetConfig,
    conv_in: Conv2d,
    linear_1: Linear,
    linear_2: Linear,
    down: Vec<Level>,
    mid: (ResBlock, AttnBlock, ResBlock),
    up: Vec<Level>,
    conv_norm_out: GroupNorm,
    conv_out: Conv2d,
}

impl UNet {
    /// Build the network and register (and initialise) its parameters in `store`.
    pub fn new(cfg: &UNetConfig, store: &mut ParamStore, rng: &mut Philox) -> Result<UNet> {
        cfg.validate()?;
        let (s, r) = (store, rng);
        let ch = cfg.ch;
        let levels = cfg.ch_mult.len();
        let same3 = Conv2dParams::same(3);
        let conv_in = Conv2d::new(s, r, "conv_in", (cfg.in_channels, ch, 3), same3, 1.0)?;
        let linear_1 = Linear::new(s, r, "time_embedding.linear_1", ch, 4 * ch, 1.0)?;
        let linear_2 = Linear::new(s, r, "time_embedding.linear_2", 4 * ch, 4 * ch, 1.0)?;

        // Channels of every skip activation, in the order the down path produces them.
        let mut skips = vec![ch];
        let mut cur = ch;
        let mut down = Vec::new();
        for (i, m) in cfg.ch_mult.iter().enumerate() {
            let res = cfg.image_size >> i;
            let out = ch * m;
            let mut level = Level { resnets: vec![], attentions: vec![], resample: None };
            for j in 0..cfg.num_res_blocks {
                level.resnets.push(ResBlock::new(s, r, &format!("down_blocks.{i}.resnets.{j}"), cur, out, cfg)?);
                cur = out;
                if cfg.attn_resolutions.contains(&res) {
                    level.attentions.push(AttnBlock::new(s, r, &format!("down_blocks.{i}.attentions.{j}"), cur, cfg)?);
                }
                skips.push(cur);
            }
            if i + 1 < levels {
                let name = format!("down_blocks.{i}.downsamplers.0.conv");
                level.resample = Some(Conv2d::new(s, r, &name, (cur, cur, 3), cfg.down_conv(), 1.0)?);
                skips.push(cur);
            }
            down.push(level);
        }

        let mid = (
            ResBlock::new(s, r, "mid_block.resnets.0", cur, cur, cfg)?,
            AttnBlock::new(s, r, "mid_block.attentions.0", cur, cfg)?,
            ResBlock::new(s, r, "mid_block.resnets.1", cur, cur, cfg)?,
        );

        // diffusers numbers up blocks from the lowest resolution: up_blocks.{i} is level levels-1-i.
        let mut up = Vec::new();
        for i in 0..levels {
            let level_idx = levels - 1 - i;
            let res = cfg.image_size >> level_idx;
            let out = ch * cfg.ch_mult[level_idx];
            let mut level = Level { resnets: vec![], attentions: vec![], resample: None };
            for j in 0..=cfg.num_res_blocks {
                let cin = cur + skips.pop().expect("one skip per up ResBlock");
                level.resnets.push(ResBlock::new(s, r, &format!("up_blocks.{i}.resnets.{j}"), cin, out, cfg)?);
                cur = out;
                if cfg.attn_resolutions.contains(&res) {
                    level.attentions.push(AttnBlock::new(s, r, &format!("up_blocks.{i}.attentions.{j}"), cur, cfg)?);
                }
            }
            if level_idx > 0 {
                let name = format!("up_blocks.{i}.upsamplers.0.conv");
                level.resample = Some(Conv2d::new(s, r, &name, (cur, cur, 3), same3, 1.0)?);
            }
            up.push(level);
        }
        let conv_norm_out = GroupNorm::new(s, r, "conv_norm_out", cur, cfg.norm_groups, cfg.norm_eps as f32)?;
        let conv_out = Conv2d::new(s, r, "conv_out", (cur, cfg.in_channels, 3), same3, ZERO_INIT)?;
        Ok(UNet { config: cfg.clone(), conv_in, linear_1, linear_2, down, mid, up, conv_norm_out, conv_out })
    }

    /// ε̂(x_t, t): x [N, C, H, W], one timestep per sample (0-based, as the official code). Under a bf16 `Ctx`
    /// (mixed precision) the time-embedding MLP stays f32 ([N, 4ch]: negligible work, and its per-channel biases
    /// are added in f32), x is rounded to bf16 at the input, every activation and its gradient is bf16, and ε̂ comes
    /// back as f32: the model's interface is f32 either way.
    pub fn forward(&self, cx: &Ctx, x: &Var, t: &[f32]) -> Result<Var> {
        let (n, c, h, w) = x.value().dims4("unet")?;
        let cfg = &self.config;
        if c != cfg.in_channels || h != cfg.image_size || w != cfg.image_size || t.len() != n {
            return Err(Error::shape(
                "unet",
                format!(
                    "input {:?} with {} timesteps; the model takes [N, {}, {}, {}] and N timesteps",
                    x.shape(),
                    t.len(),
                    cfg.in_channels,
                    cfg.image_size,
                    cfg.image_size
                ),
            ));
        }
        let emb = Var::constant(timestep_embedding(t, cfg.ch)?.to_device(&x.device())?);
        self.forward_embedded(cx, x, &emb)
    }

    /// `forward` from the sinusoidal timestep embedding [N, ch] already on x's device (`timestep_embedding`'s
    /// rows): a replayed CUDA graph reads it from device memory that is refilled at every step.
    pub fn forward_embedded(&self, cx: &Ctx, x: &Var, emb: &Var) -> Result<Var> {
        let n = x.value().dims4("unet")?.0;
        let ch = self.config.ch;
        if emb.shape() != [n, ch] {
            return Err(Error::shape(
                "unet",
                format!("embedding {:?} for {n} images, expected [{n}, {ch}]", emb.shape()),
            ));
        }
        let temb = self.linear_2.forward(cx, &silu(&self.linear_1.forward(cx, emb)?)?)?;
        let temb = silu(&temb)?;

        let x = &to_dtype(x, cx.dtype())?;
        let mut hs = vec![self.conv_in.forward(cx, x)?];
        for level in &self.down {
            for (j, block) in level.resnets.iter().enumerate() {
                let mut h = block.forward(cx, hs.last().expect("non-empty"), &temb)?;
                if let Some(attn) = level.attentions.get(j) {
                    h = attn.forward(cx, &h)?;
                }
                hs.push(h);
            }
            if let Some(conv) = &level.resample {
                let h = conv.forward(cx, hs.last().expect("non-empty"))?;
                hs.push(h);
            }
        }

        let mut h = hs.last().expect("non-empty").clone();
        h = self.mid.0.forward(cx, &h, &temb)?;
        h = self.mid.1.forward(cx, &h)?;
        h = self.mid.2.forward(cx, &h, &temb)?;

        for level in &self.up {
            for (j, block) in level.resnets.iter().enumerate() {
                let skip = hs.pop().expect("one skip per up ResBlock");
                h = block.forward(cx, &concat_channels(&[&h, &skip])?, &temb)?;
                if let Some(attn) = level.attentions.get(j) {
                    h = attn.forward(cx, &h)?;
                }
            }
            if let Some(conv) = &level.resample {
                h = conv.forward(cx, &upsample_nearest2x(&h)?)?;
            }
        }
        let out = self.conv_out.forward(cx, &self.conv_norm_out.forward_silu(cx, &h)?)?;
        to_dtype(&out, DType::F32)
    }
}
