//! Interchange with diffusers: `UNet2DModel`'s config.json ↔ `UNetConfig`, `DDPMScheduler`'s scheduler_config.json
//! ↔ `DiffusionConfig`, and (in `weights`) its safetensors files. Only the DDPM family maps: single-head attention
//! at whole levels, SiLU, sin-first timestep embedding with frequency shift 1, conv resampling, ε-prediction.
//! Every other key or value is refused with an error that names it, rather than loaded into a different model.

pub mod weights;

use std::path::Path;

use serde_json::{json, Map, Value};

use crate::config::DiffusionConfig;
use crate::diffusion::{BetaSchedule, Variance};
use crate::nn::unet::UNetConfig;
use crate::{Error, Result};

pub use weights::{export, load_any, read_weights, write_weights, Loaded};

/// The file names diffusers uses inside a model folder.
pub const CONFIG_FILE: &str = "config.json";
pub const WEIGHTS_FILE: &str = "diffusion_pytorch_model.safetensors";
pub const SCHEDULER_FILE: &str = "scheduler_config.json";

/// `UNet2DModel.__init__`'s defaults (diffusers 0.42): a key missing from config.json means this value.
fn unet_defaults() -> Map<String, Value> {
    let v = json!({
        "sample_size": null, "in_channels": 3, "out_channels": 3, "center_input_sample": false,
        "time_embedding_type": "positional", "time_embedding_dim": null, "freq_shift": 0, "flip_sin_to_cos": true,
        "down_block_types": ["DownBlock2D", "AttnDownBlock2D", "AttnDownBlock2D", "AttnDownBlock2D"],
        "mid_block_type": "UNetMidBlock2D",
        "up_block_types": ["AttnUpBlock2D", "AttnUpBlock2D", "AttnUpBlock2D", "UpBlock2D"],
        "block_out_channels": [224, 448, 672, 896], "layers_per_block": 2, "mid_block_scale_factor": 1,
        "downsample_padding": 1, "downsample_type": "conv", "upsample_type": "conv", "dropout": 0.0,
        "act_fn": "silu", "attention_head_dim": 8, "norm_num_groups": 32, "attn_norm_num_groups": null,
        "norm_eps": 1e-5, "resnet_time_scale_shift": "default", "add_attention": true, "class_embed_type": null,
        "num_class_embeds": null, "num_train_timesteps": null
    });
    v.as_object().expect("an object").clone()
}

/// Read a `UNet2DModel` config.json into our config. Errors name the file and the key.
pub fn unet_config_from_json(text: &str, path: &Path) -> Result<UNetConfig> {
    let file: Map<String, Value> =
        serde_json::from_str(text).map_err(|e| Error::bad_file(path, format!("not a JSON object: {e}")))?;
    let err = |m: String| Error::bad_file(path, m);
    let mut c = unet_defaults();
    for (k, v) in file {
        if k == "_class_name" && v != "UNet2DModel" {
            return Err(err(format!("_class_name {v} is not UNet2DModel")));
        } else if k.starts_with('_') {
            continue; // _diffusers_version, _name_or_path
        } else if !c.contains_key(&k) {
            return Err(err(format!("unsupported UNet2DModel config key '{k}'")));
        }
        c.insert(k, v);
    }
    let unsupported = |k: &str| err(format!("unsupported value for '{k}': {} (ddpm-cuda runs the DDPM U-Net)", c[k]));
    let want = |k: &str, ok: &[Value]| if ok.contains(&c[k]) { Ok(()) } else { Err(unsupported(k)) };
    let uint = |k: &str| c[k].as_u64().map(|v| v as usize).ok_or_else(|| err(format!("'{k}' must be an integer")));
    let ints = |k: &str| -> Result<Vec<usize>> {
        let bad = || err(format!("'{k}' must be a list of integers"));
        c[k].as_array().ok_or_else(bad)?.iter().map(|v| v.as_u64().map(|v| v as usize).ok_or_else(bad)).collect()
    };
    let strs = |k: &str| -> Result<Vec<String>> {
        let bad = || err(format!("'{k}' must be a list of strings"));
        c[k].as_array().ok_or_else(bad)?.iter().map(|v| v.as_str().map(String::from).ok_or_else(bad)).collect()
    };

    want("center_input_sample", &[json!(false)])?;
    want("time_embedding_type", &[json!("positional")])?;
    want("flip_sin_to_cos", &[json!(false)])?;
    if c["freq_shift"].as_f64() != Some(1.0) {
        return Err(unsupported("freq_shift"));
    }
    want("mid_block_type", &[json!("UNetMidBlock2D")])?;
    if c["mid_block_scale_factor"].as_f64() != Some(1.0) {
        return Err(unsupported("mid_block_scale_factor"));
    }
    want("downsample_type", &[json!("conv")])?;
    want("upsample_type", &[json!("conv")])?;
    want("act_fn", &[json!("silu"), json!("swish")])?;
    want("resnet_time_scale_shift", &[json!("default")])?;
    want("add_attention", &[json!(true)])?;
    want("class_embed_type", &[Value::Null])?;
    want("num_class_embeds", &[Value::Null])?;

    let image_size = match &c["sample_size"] {
        Value::Array(hw) if hw.len() == 2 && hw[0] == hw[1] => hw[0].as_u64(),
        v => v.as_u64(),
    }
    .ok_or_else(|| err(format!("'sample_size' must be one image side (square images), got {}", c["sample_size"])))?
        as usize;
    let in_channels = uint("in_channels")?;
    if uint("out_channels")? != in_channels {
        return Err(err(format!("out_channels {} differs from in_channels {in_channels}", c["out_channels"])));
    }
    let blocks = ints("block_out_channels")?;
    let ch = *blocks.first().ok_or_else(|| err("'block_out_channels' is empty".into()))?;
    if ch == 0 || blocks.iter().any(|b| b % ch != 0) {
        return Err(err(format!("block_out_channels {blocks:?}: each must be a multiple of the first")));
    }
    let levels = blocks.len();
    let (down, up) = (strs("down_block_types")?, strs("up_block_types")?);
    if down.len() != levels || up.len() != levels {
        return Err(err(format!("{levels} block_out_channels but {} down and {} up blocks", down.len(), up.len())));
    }
    let mut attn_resolutions = Vec::new();
    for (i, kind) in down.iter().enumerate() {
        let d = match kind.as_str() {
            "DownBlock2D" => false,
            "AttnDownBlock2D" => true,
            other => return Err(err(format!("unsupported down_block_types[{i}] '{other}'"))),
        };
        let j = levels - 1 - i;
        let u = match up[j].as_str() {
            "UpBlock2D" => false,
            "AttnUpBlock2D" => true,
            other => return Err(err(format!("unsupported up_block_types[{j}] '{other}'"))),
        };
        if d != u {
            return Err(err(format!(
                "down_block_types[{i}] '{kind}' and up_block_types[{j}] '{}' differ in attention",
                up[j]
            )));
        }
        if d {
            attn_resolutions.push(image_size >> i);
        }
    }
    // One head: attention_head_dim null, or equal to the channels of every attention block (mid included).
    if !c["attention_head_dim"].is_null() {
        let mut attn_channels: Vec<usize> =
            (0..levels).filter(|&i| down[i] == "AttnDownBlock2D").map(|i| blocks[i]).collect();
        attn_channels.push(blocks[levels - 1]);
        if attn_channels.iter().any(|&a| c["attention_head_dim"].as_u64() != Some(a as u64)) {
            return Err(err(format!(
                "attention_head_dim {} makes multi-head attention (only one head is supported: null or the block's channels)",
                c["attention_head_dim"]
            )));
        }
    }
    let norm_groups = uint("norm_num_groups")?;
    if !c["attn_norm_num_groups"].is_null() && c["attn_norm_num_groups"].as_u64() != Some(norm_groups as u64) {
        return Err(unsupported("attn_norm_num_groups"));
    }
    if !c["time_embedding_dim"].is_null() && c["time_embedding_dim"].as_u64() != Some(4 * ch as u64) {
        return Err(unsupported("time_embedding_dim"));
    }
    let num = |k: &str| c[k].as_f64().ok_or_else(|| err(format!("'{k}' must be a number")));
    let cfg = UNetConfig {
        image_size,
        in_channels,
        ch,
        ch_mult: blocks.iter().map(|b| b / ch).collect(),
        num_res_blocks: uint("layers_per_block")?,
        attn_resolutions,
        dropout: num("dropout")? as f32,
        norm_groups,
        norm_eps: num("norm_eps")?,
        downsample_padding: uint("downsample_padding")?,
    };
    cfg.validate().map_err(|e| err(e.to_string()))?;
    Ok(cfg)
}

/// Our config as a `UNet2DModel` config.json (every key explicit, so diffusers' defaults play no part).
pub fn unet_config_to_json(cfg: &UNetConfig) -> String {
    let levels = cfg.ch_mult.len();
    let attn = |i: usize| cfg.attn_resolutions.contains(&(cfg.image_size >> i));
    let down: Vec<&str> = (0..levels).map(|i| if attn(i) { "AttnDownBlock2D" } else { "DownBlock2D" }).collect();
    let up: Vec<&str> = (0..levels).rev().map(|i| if attn(i) { "AttnUpBlock2D" } else { "UpBlock2D" }).collect();
    let v = json!({
        "_class_name": "UNet2DModel",
        "sample_size": cfg.image_size, "in_channels": cfg.in_channels, "out_channels": cfg.in_channels,
        "center_input_sample": false, "time_embedding_type": "positional", "time_embedding_dim": null,
        "freq_shift": 1, "flip_sin_to_cos": false, "down_block_types": down, "mid_block_type": "UNetMidBlock2D",
        "up_block_types": up, "block_out_channels": cfg.ch_mult.iter().map(|m| m * cfg.ch).collect::<Vec<_>>(),
        "layers_per_block": cfg.num_res_blocks, "mid_block_scale_factor": 1,
        "downsample_padding": cfg.downsample_padding, "downsample_type": "conv", "upsample_type": "conv",
        "dropout": cfg.dropout as f64, "act_fn": "silu", "attention_head_dim": null,
        "norm_num_groups": cfg.norm_groups, "attn_norm_num_groups": null, "norm_eps": cfg.norm_eps,
        "resnet_time_scale_shift": "default", "add_attention": true, "class_embed_type": null,
        "num_class_embeds": null, "num_train_timesteps": null
    });
    serde_json::to_string_pretty(&v).expect("JSON serializes") + "\n"
}

/// Read a `DDPMScheduler` scheduler_config.json (diffusers' defaults for missing keys).
pub fn diffusion_config_from_json(text: &str, path: &Path) -> Result<DiffusionConfig> {
    let file: Map<String, Value> =
        serde_json::from_str(text).map_err(|e| Error::bad_file(path, format!("not a JSON object: {e}")))?;
    let err = |m: String| Error::bad_file(path, m);
    let get = |k: &str, d: Value| file.get(k).cloned().unwrap_or(d);
    let bad = |k: &str, v: &Value| err(format!("unsupported scheduler value for '{k}': {v}"));
    if let Some(v) = file.get("_class_name").filter(|v| *v != "DDPMScheduler") {
        return Err(err(format!("_class_name {v} is not DDPMScheduler")));
    }
    for (k, ok) in [
        ("prediction_type", json!("epsilon")),
        ("thresholding", json!(false)),
        ("trained_betas", Value::Null),
        ("rescale_betas_zero_snr", json!(false)),
        ("clip_sample_range", json!(1.0)),
    ] {
        let v = get(k, ok.clone());
        if v != ok && !(v.as_f64().is_some() && v.as_f64() == ok.as_f64()) {
            return Err(bad(k, &v));
        }
    }
    let steps =
        get("num_train_timesteps", json!(1000)).as_u64().ok_or_else(|| err("bad num_train_timesteps".into()))?;
    let f = |k: &str, d: f64| get(k, json!(d)).as_f64().ok_or_else(|| err(format!("'{k}' must be a number")));
    let beta_schedule = match get("beta_schedule", json!("linear")).as_str() {
        Some("linear") => BetaSchedule::Linear { start: f("beta_start", 1e-4)?, end: f("beta_end", 0.02)? },
        Some("squaredcos_cap_v2") => BetaSchedule::Cosine { s: 0.008 },
        _ => return Err(bad("beta_schedule", &file["beta_schedule"])),
    };
    let variance = match get("variance_type", json!("fixed_small")).as_str() {
        Some("fixed_small") => Variance::FixedSmall,
        Some("fixed_large") => Variance::FixedLarge,
        _ => return Err(bad("variance_type", &file["variance_type"])),
    };
    let clip_x0 =
        get("clip_sample", json!(true)).as_bool().ok_or_else(|| err("'clip_sample' must be a bool".into()))?;
    Ok(DiffusionConfig { steps: steps as usize, beta_schedule, variance, clip_x0 })
}

/// Our diffusion config as a `DDPMScheduler` scheduler_config.json; None for a schedule diffusers cannot express.
pub fn diffusion_config_to_json(cfg: &DiffusionConfig) -> Option<String> {
    let (start, end, kind) = match cfg.beta_schedule {
        BetaSchedule::Linear { start, end } => (start, end, "linear"),
        BetaSchedule::Cosine { s: 0.008 } => (1e-4, 0.02, "squaredcos_cap_v2"),
        BetaSchedule::Cosine { .. } => return None,
    };
    let variance = match cfg.variance {
        Variance::FixedLarge => "fixed_large",
        Variance::FixedSmall => "fixed_small",
    };
    let v = json!({
        "_class_name": "DDPMScheduler", "num_train_timesteps": cfg.steps, "beta_start": start, "beta_end": end,
        "beta_schedule": kind, "variance_type": variance, "clip_sample": cfg.clip_x0, "prediction_type": "epsilon"
    });
    Some(serde_json::to_string_pretty(&v).expect("JSON serializes") + "\n")
}
