//! diffusers' weight files: `diffusion_pytorch_model.safetensors` under `UNet2DModel`'s parameter names (which are
//! our `ParamStore` names), F32/F16/BF16. Older files name the attention projections query/key/value/proj_attn;
//! they are renamed on load as diffusers does. `load_any` opens either a ddpm-cuda training checkpoint or a
//! diffusers model (folder, or .safetensors with its config.json).

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::path::{Path, PathBuf};

use safetensors::tensor::{Dtype, SafeTensors, TensorView};

use super::{CONFIG_FILE, SCHEDULER_FILE, WEIGHTS_FILE};
use crate::checkpoint::{write_atomic, Checkpoint};
use crate::config::{Config, DiffusionConfig};
use crate::nn::unet::{UNet, UNetConfig};
use crate::nn::ParamStore;
use crate::rng::Philox;
use crate::{Error, Result, Tensor};

/// The names diffusers < 0.14 gave the attention projections, and today's.
const OLD_ATTENTION_NAMES: [(&str, &str); 4] =
    [(".query.", ".to_q."), (".key.", ".to_k."), (".value.", ".to_v."), (".proj_attn.", ".to_out.0.")];

fn current_name(name: &str) -> String {
    if name.contains(".attentions.") {
        for (old, new) in OLD_ATTENTION_NAMES {
            if name.contains(old) {
                return name.replacen(old, new, 1);
            }
        }
    }
    name.to_string()
}

fn to_f32(view: &TensorView, path: &Path, name: &str) -> Result<Vec<f32>> {
    let b = view.data();
    Ok(match view.dtype() {
        Dtype::F32 => b.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect(),
        Dtype::F16 => b.chunks_exact(2).map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32()).collect(),
        Dtype::BF16 => b.chunks_exact(2).map(|c| half::bf16::from_le_bytes([c[0], c[1]]).to_f32()).collect(),
        d => return Err(Error::bad_file(path, format!("{name}: dtype {d:?} (F32, F16 or BF16 expected)"))),
    })
}

/// The tensors of `path` in `store`'s order, checked name by name and shape by shape. A missing, unexpected or
/// misshapen tensor is an error naming it.
pub fn read_weights(path: &Path, store: &ParamStore) -> Result<Vec<Tensor>> {
    let bytes = fs::read(path).map_err(|e| Error::io(path, e))?;
    let st = SafeTensors::deserialize(&bytes)
        .map_err(|e| Error::bad_file(path, format!("not a readable safetensors file ({e})")))?;
    let mut by_name: HashMap<String, String> = HashMap::new();
    for name in st.names() {
        let cur = current_name(name);
        if let Some(other) = by_name.insert(cur.clone(), name.to_string()) {
            return Err(Error::bad_file(path, format!("both {other} and {name} hold {cur}")));
        }
    }
    let mut out = Vec::with_capacity(store.len());
    let mut missing = Vec::new();
    for (name, want) in store.names().iter().zip(store.tensors()) {
        let Some(file_name) = by_name.remove(name) else {
            missing.push(name.as_str());
            continue;
        };
        let view = st.tensor(&file_name).map_err(|e| Error::bad_file(path, format!("{file_name}: {e}")))?;
        // Attention projections saved as 1×1 convs ([C, C, 1, 1]) hold the same numbers as the Linear [C, C].
        let conv_form: Vec<usize> = want.shape().iter().copied().chain([1, 1]).collect();
        if view.shape() != want.shape() && !(want.shape().len() == 2 && view.shape() == conv_form.as_slice()) {
            return Err(Error::bad_file(
                path,
                format!("{file_name}: shape {:?}, the model needs {:?}", view.shape(), want.shape()),
            ));
        }
        out.push(Tensor::from_vec(to_f32(&view, path, &file_name)?, want.shape())?);
    }
    let mut problems = Vec::new();
    if !missing.is_empty() {
        let more = if missing.len() > 5 { format!(" and {} more", missing.len() - 5) } else { String::new() };
        problems.push(format!("missing tensors {}{more}", missing[..missing.len().min(5)].join(", ")));
    }
    if !by_name.is_empty() {
        let mut extra: Vec<String> = by_name.into_values().collect();
        extra.sort();
        problems.push(format!("tensors the model does not have: {}", extra.join(", ")));
    }
    if !problems.is_empty() {
        return Err(Error::bad_file(path, problems.join("; ")));
    }
    Ok(out)
}

/// Write `tensors` (F32) under `names` as a diffusers safetensors file, atomically.
pub fn write_weights(path: &Path, names: &[String], tensors: &[Tensor]) -> Result<()> {
    let st_err = |e: safetensors::SafeTensorError| Error::bad_file(path, format!("safetensors: {e}"));
    let mut host: Vec<(&str, Vec<usize>, Vec<u8>)> = Vec::with_capacity(names.len());
    for (name, t) in names.iter().zip(tensors) {
        host.push((name, t.shape().to_vec(), bytemuck::cast_slice::<f32, u8>(&t.to_vec()?).to_vec()));
    }
    let views = host
        .iter()
        .map(|(n, s, b)| Ok((*n, TensorView::new(Dtype::F32, s.clone(), b).map_err(st_err)?)))
        .collect::<Result<Vec<_>>>()?;
    let meta = HashMap::from([("format".to_string(), "pt".to_string())]);
    write_atomic(path, &safetensors::serialize(views, Some(meta)).map_err(st_err)?)
}

/// Write a diffusers model folder: config.json, diffusion_pytorch_model.safetensors and (when the schedule has a
/// diffusers form) scheduler_config.json. `UNet2DModel.from_pretrained(dir)` loads it.
pub fn export(dir: &Path, config: &Config, names: &[String], tensors: &[Tensor]) -> Result<()> {
    fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    write_weights(&dir.join(WEIGHTS_FILE), names, tensors)?;
    write_atomic(&dir.join(CONFIG_FILE), super::unet_config_to_json(&config.model).as_bytes())?;
    if let Some(s) = super::diffusion_config_to_json(&config.diffusion) {
        write_atomic(&dir.join(SCHEDULER_FILE), s.as_bytes())?;
    }
    Ok(())
}

/// A model ready to run: its U-Net config, diffusion config and weights (in store order, on the CPU).
pub struct Loaded {
    pub model: UNetConfig,
    pub diffusion: DiffusionConfig,
    pub weights: Vec<Tensor>,
    /// What was read, for messages: "ddpm-cuda checkpoint (EMA)", "diffusers model".
    pub kind: String,
}

/// The `format` tag in a safetensors header's metadata: Ok(Some("ddpm-cuda-checkpoint-1")) for ours, Ok(None)
/// for a file without one, Err for a file that is not safetensors at all.
fn format_tag(path: &Path) -> Result<Option<String>> {
    let bad = || Error::bad_file(path, "not a safetensors file (neither a ddpm-cuda checkpoint nor a diffusers model)");
    let mut f = fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let mut len = [0u8; 8];
    std::io::Read::read_exact(&mut f, &mut len).map_err(|_| bad())?;
    let n = u64::from_le_bytes(len);
    if n > 100_000_000 {
        return Err(bad());
    }
    let mut header = vec![0u8; n as usize];
    std::io::Read::read_exact(&mut f, &mut header).map_err(|_| bad())?;
    let h: BTreeMap<String, serde_json::Value> = serde_json::from_slice(&header).map_err(|_| bad())?;
    Ok(h.get("__metadata__").and_then(|m| m.get("format")).and_then(|f| f.as_str()).map(String::from))
}

/// Open `path`: a ddpm-cuda checkpoint file (or a run folder holding checkpoint.safetensors), a diffusers model
/// folder (config.json + diffusion_pytorch_model.safetensors), or a diffusers .safetensors file with its config
/// beside it or given by `config`. For our checkpoints `ema` picks the EMA weights; a diffusers file holds one set.
/// A diffusers model's diffusion process comes from scheduler_config.json beside it, else the paper's (linear
/// 1e-4..0.02, T = 1000, σ² = β, clipped x̂0: google/ddpm-cifar10-32's scheduler).
pub fn load_any(path: &Path, config: Option<&Path>, ema: bool) -> Result<Loaded> {
    let ours = if path.is_dir() { path.join("checkpoint.safetensors") } else { path.to_path_buf() };
    if ours.is_file() && format_tag(&ours)?.as_deref() == Some(crate::checkpoint::FORMAT) {
        if config.is_some() {
            return Err(Error::msg(format!(
                "{}: a ddpm-cuda checkpoint carries its config; drop --config",
                ours.display()
            )));
        }
        let ck = Checkpoint::load(&ours)?;
        let kind = format!("ddpm-cuda checkpoint ({})", if ema { "EMA weights" } else { "raw weights" });
        let weights = if ema { ck.ema } else { ck.model };
        return Ok(Loaded { model: ck.config.model, diffusion: ck.config.diffusion, weights, kind });
    }
    let (weights_path, folder): (PathBuf, PathBuf) = if path.is_dir() {
        (path.join(WEIGHTS_FILE), path.to_path_buf())
    } else {
        (path.to_path_buf(), path.parent().map_or_else(|| PathBuf::from("."), Path::to_path_buf))
    };
    if !weights_path.is_file() {
        return Err(Error::msg(format!(
            "{}: neither a ddpm-cuda checkpoint nor a diffusers model (no {WEIGHTS_FILE})",
            path.display()
        )));
    }
    let config_path = config.map_or_else(|| folder.join(CONFIG_FILE), Path::to_path_buf);
    let text = fs::read_to_string(&config_path).map_err(|e| Error::io(&config_path, e))?;
    let model = super::unet_config_from_json(&text, &config_path)?;
    let sched = folder.join(SCHEDULER_FILE);
    let diffusion = if sched.is_file() {
        let text = fs::read_to_string(&sched).map_err(|e| Error::io(&sched, e))?;
        super::diffusion_config_from_json(&text, &sched)?
    } else {
        Config::preset("cifar10")?.diffusion
    };
    let mut store = ParamStore::new();
    UNet::new(&model, &mut store, &mut Philox::new(0))?;
    let weights = read_weights(&weights_path, &store)?;
    Ok(Loaded { model, diffusion, weights, kind: "diffusers model".into() })
}
