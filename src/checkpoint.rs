//! Training checkpoints: one safetensors file holding the weights (`model.*`), their EMA (`ema.*`), Adam's moments
//! (`adam_m.*`, `adam_v.*`) under diffusers' parameter names, and the trainer state (step, RNG streams, config) in
//! the header's metadata. Written to a temporary file, synced, then renamed over the old one: a crash or Ctrl-C
//! mid-write never leaves a broken checkpoint behind.

use std::collections::HashMap;
use std::fs;
use std::io::Write;
use std::path::Path;

use safetensors::tensor::{Dtype, SafeTensors, TensorView};

use crate::config::Config;
use crate::nn::ParamStore;
use crate::rng::Philox;
use crate::{Error, Result, Tensor};

/// The `format` tag in a checkpoint's safetensors metadata.
pub const FORMAT: &str = "ddpm-cuda-checkpoint-1";
const GROUPS: [&str; 4] = ["model", "ema", "adam_m", "adam_v"];

/// Everything needed to continue a run exactly where it stopped.
#[derive(Clone)]
pub struct Checkpoint {
    pub config: Config,
    /// Optimizer steps taken.
    pub step: u64,
    pub model: Vec<Tensor>,
    pub ema: Vec<Tensor>,
    pub adam_m: Vec<Tensor>,
    pub adam_v: Vec<Tensor>,
    /// The RNG streams: timesteps and noise for L_simple, and dropout.
    pub noise_rng: Philox,
    pub dropout_rng: Philox,
    /// The data order's seed (the loader derives each batch from (seed, step)).
    pub data_seed: u64,
}

impl Checkpoint {
    /// Write atomically to `path` (via `path.tmp` and a rename).
    pub fn save(&self, path: &Path, names: &[String]) -> Result<()> {
        let groups = [&self.model, &self.ema, &self.adam_m, &self.adam_v];
        let mut host: Vec<(String, Vec<usize>, Vec<u8>)> = Vec::new();
        for (group, tensors) in GROUPS.iter().zip(groups) {
            if tensors.len() != names.len() {
                return Err(Error::msg(format!(
                    "checkpoint: {} {group} tensors for {} names",
                    tensors.len(),
                    names.len()
                )));
            }
            for (name, t) in names.iter().zip(tensors.iter()) {
                let bytes = bytemuck::cast_slice::<f32, u8>(&t.to_vec()?).to_vec();
                host.push((format!("{group}.{name}"), t.shape().to_vec(), bytes));
            }
        }
        let views = host
            .iter()
            .map(|(n, s, b)| Ok((n.as_str(), TensorView::new(Dtype::F32, s.clone(), b).map_err(st_err(path))?)))
            .collect::<Result<Vec<_>>>()?;
        let meta = HashMap::from([
            ("format".to_string(), FORMAT.to_string()),
            ("step".to_string(), self.step.to_string()),
            ("noise_rng".to_string(), format!("{} {}", self.noise_rng.seed(), self.noise_rng.offset())),
            ("dropout_rng".to_string(), format!("{} {}", self.dropout_rng.seed(), self.dropout_rng.offset())),
            ("data_seed".to_string(), self.data_seed.to_string()),
            ("config".to_string(), self.config.to_toml()),
        ]);
        let bytes = safetensors::serialize(views, Some(meta)).map_err(st_err(path))?;
        write_atomic(path, &bytes)
    }

    /// Read a checkpoint and check it against the model its config describes. Errors name the file and what is
    /// wrong (missing tensor, wrong shape, not a checkpoint, truncated).
    pub fn load(path: &Path) -> Result<Checkpoint> {
        let bytes = fs::read(path).map_err(|e| Error::io(path, e))?;
        let st = SafeTensors::deserialize(&bytes)
            .map_err(|e| Error::bad_file(path, format!("not a readable safetensors checkpoint ({e})")))?;
        let (_, header) = SafeTensors::read_metadata(&bytes).map_err(st_err(path))?;
        let meta = header.metadata().clone().unwrap_or_default();
        let get = |k: &str| {
            meta.get(k).ok_or_else(|| Error::bad_file(path, format!("not a ddpm-cuda checkpoint: no '{k}' metadata")))
        };
        if get("format")? != FORMAT {
            return Err(Error::bad_file(path, format!("unknown checkpoint format '{}'", get("format")?)));
        }
        let bad = |k: &str| Error::bad_file(path, format!("bad '{k}' metadata"));
        let step: u64 = get("step")?.parse().map_err(|_| bad("step"))?;
        let rng = |k: &str| -> Result<Philox> {
            let v = get(k)?;
            let mut it = v.split(' ').map(|x| x.parse::<u64>());
            match (it.next(), it.next()) {
                (Some(Ok(seed)), Some(Ok(offset))) => Ok(Philox::from_state(seed, offset)),
                _ => Err(bad(k)),
            }
        };
        let config: Config = toml::from_str(get("config")?)
            .map_err(|e| Error::bad_file(path, format!("bad config in checkpoint: {e}")))?;

        // The expected names and shapes come from the model the stored config builds.
        let mut store = ParamStore::new();
        crate::nn::unet::UNet::new(&config.model, &mut store, &mut Philox::new(0))?;
        let mut groups: Vec<Vec<Tensor>> = Vec::new();
        for group in GROUPS {
            let mut tensors = Vec::with_capacity(store.len());
            for (name, want) in store.names().iter().zip(store.tensors()) {
                let key = format!("{group}.{name}");
                let view = st.tensor(&key).map_err(|_| Error::bad_file(path, format!("missing tensor {key}")))?;
                if view.dtype() != Dtype::F32 || view.shape() != want.shape() {
                    return Err(Error::bad_file(
                        path,
                        format!("{key}: {:?} {:?}, expected F32 {:?}", view.dtype(), view.shape(), want.shape()),
                    ));
                }
                let data: Vec<f32> =
                    view.data().chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect();
                tensors.push(Tensor::from_vec(data, want.shape())?);
            }
            groups.push(tensors);
        }
        let adam_v = groups.pop().expect("4 groups");
        let adam_m = groups.pop().expect("4 groups");
        let ema = groups.pop().expect("4 groups");
        let model = groups.pop().expect("4 groups");
        Ok(Checkpoint {
            config,
            step,
            model,
            ema,
            adam_m,
            adam_v,
            noise_rng: rng("noise_rng")?,
            dropout_rng: rng("dropout_rng")?,
            data_seed: get("data_seed")?.parse().map_err(|_| bad("data_seed"))?,
        })
    }
}

/// The config and step of a checkpoint, from its header alone (the tensors are not read). Errors name the file.
pub fn read_config(path: &Path) -> Result<(Config, u64)> {
    use std::io::Read;
    let not_ours = |m: &str| Error::bad_file(path, format!("not a ddpm-cuda checkpoint ({m})"));
    let mut f = fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let mut len = [0u8; 8];
    f.read_exact(&mut len).map_err(|_| not_ours("too short"))?;
    let n = u64::from_le_bytes(len);
    if n > 100_000_000 {
        return Err(not_ours("bad header length"));
    }
    let mut header = vec![0u8; n as usize];
    f.read_exact(&mut header).map_err(|_| not_ours("truncated header"))?;
    let h: serde_json::Value = serde_json::from_slice(&header).map_err(|_| not_ours("bad header"))?;
    let meta = &h["__metadata__"];
    if meta["format"].as_str() != Some(FORMAT) {
        return Err(not_ours("no 'format' metadata"));
    }
    let step = meta["step"].as_str().and_then(|s| s.parse().ok()).ok_or_else(|| not_ours("bad 'step' metadata"))?;
    let text = meta["config"].as_str().ok_or_else(|| not_ours("no 'config' metadata"))?;
    let config: Config =
        toml::from_str(text).map_err(|e| Error::bad_file(path, format!("bad config in checkpoint: {e}")))?;
    Ok((config, step))
}

fn st_err(path: &Path) -> impl Fn(safetensors::SafeTensorError) -> Error + '_ {
    move |e| Error::bad_file(path, format!("safetensors: {e}"))
}

/// Write `bytes` to `path.tmp`, sync it, and rename it over `path`.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = std::path::PathBuf::from(tmp);
    let mut f = fs::File::create(&tmp).map_err(|e| Error::io(&tmp, e))?;
    f.write_all(bytes).and_then(|_| f.sync_all()).map_err(|e| Error::io(&tmp, e))?;
    drop(f);
    fs::rename(&tmp, path).map_err(|e| Error::io(path, e))
}
