//! Run configuration: the model, the diffusion process and the trainer, as TOML. Presets are the files in
//! `configs/`, embedded in the binary; a user's `--config FILE` and command-line flags override them.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::backend::DType;
use crate::diffusion::schedule::{BetaSchedule, Variance};
use crate::nn::unet::UNetConfig;
use crate::{Device, Error, Result};

/// The dtype activations are computed in (`--precision`, `train.precision`). `auto`: bf16 mixed precision on a
/// CUDA device, f32 on the CPU. Master weights, Adam moments, EMA and checkpoints are f32 in every case.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    #[default]
    Auto,
    F32,
    Bf16,
}

impl Precision {
    /// The dtype on `device`: `auto` picks bf16 on CUDA and f32 on the CPU; bf16 on the CPU is an error.
    pub fn resolve(self, device: &Device) -> Result<DType> {
        match (self, device) {
            (Precision::F32, _) | (Precision::Auto, Device::Cpu) => Ok(DType::F32),
            (Precision::Bf16 | Precision::Auto, Device::Cuda(_)) => Ok(DType::Bf16),
            (Precision::Bf16, Device::Cpu) => Err(Error::msg(
                "--precision bf16 needs a CUDA device: the CPU computes in f32 (use --precision f32 or auto)",
            )),
        }
    }
}

pub const PRESETS: &[(&str, &str)] = &[
    ("tiny", include_str!("../configs/tiny.toml")),
    ("mnist", include_str!("../configs/mnist.toml")),
    ("cifar10", include_str!("../configs/cifar10.toml")),
];

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DiffusionConfig {
    pub steps: usize,
    pub beta_schedule: BetaSchedule,
    pub variance: Variance,
    /// Clip x̂0 to [−1, 1] in each reverse step (official code, diffusers `clip_sample`).
    pub clip_x0: bool,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainConfig {
    pub lr: f32,
    pub batch_size: usize,
    pub warmup_steps: u64,
    pub grad_clip: f32,
    pub ema_decay: f32,
    pub steps: u64,
    /// Activation dtype, as asked (`--precision`; a resume keeps it, and `auto` resolves on the device the run
    /// continues on). Configs without the key mean `auto`.
    #[serde(default)]
    pub precision: Precision,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub model: UNetConfig,
    pub diffusion: DiffusionConfig,
    pub train: TrainConfig,
}

impl Config {
    pub fn preset(name: &str) -> Result<Config> {
        let (_, text) = PRESETS.iter().find(|(n, _)| *n == name).ok_or_else(|| {
            let names: Vec<&str> = PRESETS.iter().map(|(n, _)| *n).collect();
            Error::msg(format!("unknown preset '{name}' (known: {})", names.join(", ")))
        })?;
        Config::parse(text, Path::new(&format!("configs/{name}.toml")))
    }

    pub fn from_file(path: &Path) -> Result<Config> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        Config::parse(&text, path)
    }

    fn parse(text: &str, path: &Path) -> Result<Config> {
        let cfg: Config = toml::from_str(text).map_err(|e| Error::bad_file(path, e.to_string()))?;
        cfg.model.validate().map_err(|e| Error::bad_file(path, e.to_string()))?;
        Ok(cfg)
    }

    /// Apply `section.key=value` overrides (the value in TOML syntax, e.g. `model.ch_mult=[1,2,2]`).
    pub fn with_overrides(self, sets: &[String]) -> Result<Config> {
        if sets.is_empty() {
            return Ok(self);
        }
        let mut doc: toml::Table = toml::from_str(&self.to_toml()).expect("a config round-trips");
        for set in sets {
            let bad = |m: &str| Error::msg(format!("--set {set}: {m}"));
            let (key, value) = set.split_once('=').ok_or_else(|| bad("expected section.key=value"))?;
            let (section, field) = key.trim().split_once('.').ok_or_else(|| bad("expected section.key=value"))?;
            let value: toml::Value = toml::from_str::<toml::Table>(&format!("v = {}", value.trim()))
                .or_else(|_| toml::from_str::<toml::Table>(&format!("v = \"{}\"", value.trim())))
                .map_err(|e| bad(&e.to_string()))?["v"]
                .clone();
            let table = doc.get_mut(section).and_then(|s| s.as_table_mut()).ok_or_else(|| bad("unknown section"))?;
            table.insert(field.to_string(), value);
        }
        let cfg: Config = doc.try_into().map_err(|e: toml::de::Error| Error::msg(format!("--set: {e}")))?;
        cfg.model.validate()?;
        Ok(cfg)
    }

    /// The values that differ from `other`, as `section.key: ours vs theirs`, in key order.
    pub fn diff(&self, other: &Config) -> Vec<String> {
        fn flat(prefix: &str, v: &toml::Value, out: &mut Vec<(String, String)>) {
            match v {
                toml::Value::Table(t) => {
                    for (k, v) in t {
                        let key = if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") };
                        flat(&key, v, out);
                    }
                }
                v => out.push((prefix.to_string(), v.to_string())),
            }
        }
        let table = |c: &Config| {
            let mut out = Vec::new();
            flat("", &toml::Value::Table(toml::from_str(&c.to_toml()).expect("a config round-trips")), &mut out);
            out.into_iter().collect::<std::collections::BTreeMap<_, _>>()
        };
        let (a, b) = (table(self), table(other));
        let keys: std::collections::BTreeSet<&String> = a.keys().chain(b.keys()).collect();
        let none = String::from("(none)");
        keys.into_iter()
            .filter(|k| a.get(*k) != b.get(*k))
            .map(|k| format!("{k}: {} vs {}", a.get(k).unwrap_or(&none), b.get(k).unwrap_or(&none)))
            .collect()
    }

    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).expect("a config serializes")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn precision_resolves_per_device_and_bf16_needs_cuda() {
        assert_eq!(Precision::Auto.resolve(&Device::Cpu).unwrap(), DType::F32);
        assert_eq!(Precision::F32.resolve(&Device::Cpu).unwrap(), DType::F32);
        let e = Precision::Bf16.resolve(&Device::Cpu).unwrap_err().to_string();
        assert!(e.contains("needs a CUDA device"), "{e}");
    }

    #[test]
    fn precision_is_stored_in_the_config_and_defaults_to_auto() {
        let mut c = Config::preset("tiny").unwrap();
        assert_eq!(c.train.precision, Precision::Auto);
        c = c.with_overrides(&["train.precision=bf16".into()]).unwrap();
        assert_eq!(c.train.precision, Precision::Bf16);
        let back: Config = toml::from_str(&c.to_toml()).unwrap();
        assert_eq!(back.train.precision, Precision::Bf16);
    }
}
