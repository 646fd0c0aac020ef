//! diffusers interchange: config.json keys and values we refuse (each error names its key), the weight-file checks
//! (missing / extra / misshapen tensors, F16), and the export round trip (ours → diffusers folder → ours).

use std::path::{Path, PathBuf};

use ddpm_cuda::config::Config;
use ddpm_cuda::diffusers::{self, export, load_any, read_weights, unet_config_from_json};
use ddpm_cuda::nn::unet::UNet;
use ddpm_cuda::nn::ParamStore;
use ddpm_cuda::rng::Philox;
use safetensors::tensor::{Dtype, SafeTensors, TensorView};

/// A tensor to write: name (empty: leave it out), dtype, shape, bytes.
type Item = (String, Dtype, Vec<usize>, Vec<u8>);

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/parity").join(name)
}

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("ddpm-diffusers-io-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn cifar_json() -> serde_json::Map<String, serde_json::Value> {
    let text = std::fs::read_to_string(fixture("cifar10_config.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn parse(m: &serde_json::Map<String, serde_json::Value>) -> Result<ddpm_cuda::nn::unet::UNetConfig, String> {
    unet_config_from_json(&serde_json::to_string(m).unwrap(), Path::new("cfg/config.json")).map_err(|e| e.to_string())
}

#[test]
fn unsupported_config_keys_and_values_are_named() {
    use serde_json::json;
    assert!(parse(&cifar_json()).is_ok());
    let cases: Vec<(&str, serde_json::Value, &str)> = vec![
        ("cross_attention_dim", json!(768), "cross_attention_dim"),
        ("flip_sin_to_cos", json!(true), "flip_sin_to_cos"),
        ("freq_shift", json!(0), "freq_shift"),
        ("act_fn", json!("gelu"), "act_fn"),
        ("attention_head_dim", json!(8), "attention_head_dim"),
        ("time_embedding_type", json!("fourier"), "time_embedding_type"),
        ("resnet_time_scale_shift", json!("scale_shift"), "resnet_time_scale_shift"),
        ("downsample_padding", json!(2), "downsample_padding"),
        ("out_channels", json!(6), "out_channels"),
        ("_class_name", json!("UNet2DConditionModel"), "_class_name"),
        (
            "down_block_types",
            json!(["DownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D", "DownBlock2D"]),
            "down_block_types[1]",
        ),
        ("up_block_types", json!(["UpBlock2D", "UpBlock2D", "UpBlock2D", "UpBlock2D"]), "differ in attention"),
        ("block_out_channels", json!([128, 192, 256, 256]), "block_out_channels"),
    ];
    for (key, value, needle) in cases {
        let mut m = cifar_json();
        m.insert(key.into(), value);
        let e = parse(&m).expect_err(key);
        assert!(e.contains(needle) && e.contains("cfg/config.json"), "{key}: {e}");
    }
    // A missing key means diffusers' default, which may be unsupported: attention_head_dim defaults to 8 heads' dim.
    let mut m = cifar_json();
    m.remove("attention_head_dim");
    assert!(parse(&m).unwrap_err().contains("attention_head_dim"));
    // ... or supported but different: downsample_padding defaults to 1 (symmetric).
    let mut m = cifar_json();
    m.remove("downsample_padding");
    assert_eq!(parse(&m).unwrap().downsample_padding, 1);
    // attention_head_dim equal to the attention blocks' channels (and the middle block's) is one head too.
    let mut m = cifar_json();
    m.insert("attention_head_dim".into(), json!(256));
    assert_eq!(parse(&m).unwrap(), parse(&cifar_json()).unwrap());
}

#[test]
fn weight_files_are_checked_name_by_name() {
    let dir = fixture("cifar_like");
    let loaded = load_any(&dir, None, false).unwrap();
    let mut store = ParamStore::new();
    UNet::new(&loaded.model, &mut store, &mut Philox::new(0)).unwrap();
    let bytes = std::fs::read(dir.join("diffusion_pytorch_model.safetensors")).unwrap();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let write = |path: &Path, edit: &dyn Fn(&str) -> Option<Item>| {
        let mut items = Vec::new();
        for (name, v) in st.tensors() {
            let default = (name.clone(), v.dtype(), v.shape().to_vec(), v.data().to_vec());
            if let Some(item) = edit(&name).or(Some(default)).filter(|i| !i.0.is_empty()) {
                items.push(item);
            }
        }
        let views: Vec<(String, TensorView)> =
            items.iter().map(|(n, d, s, b)| (n.clone(), TensorView::new(*d, s.clone(), b).unwrap())).collect();
        std::fs::write(path, safetensors::serialize(views, None).unwrap()).unwrap();
    };
    let d = tmp("weights");
    let p = d.join("w.safetensors");
    // Missing tensor.
    write(&p, &|n| (n == "conv_out.bias").then(|| (String::new(), Dtype::F32, vec![], vec![])));
    assert!(read_weights(&p, &store).unwrap_err().to_string().contains("missing tensors conv_out.bias"));
    // Extra tensor.
    write(&p, &|n| (n == "conv_out.bias").then(|| ("conv_out.extra".into(), Dtype::F32, vec![3], vec![0; 12])));
    let e = read_weights(&p, &store).unwrap_err().to_string();
    assert!(e.contains("conv_out.extra") && e.contains("missing tensors conv_out.bias"), "{e}");
    // Wrong shape.
    write(&p, &|n| (n == "conv_out.bias").then(|| ("conv_out.bias".into(), Dtype::F32, vec![1, 3], vec![0; 12])));
    let e = read_weights(&p, &store).unwrap_err().to_string();
    assert!(e.contains("conv_out.bias: shape [1, 3]") && e.contains("w.safetensors"), "{e}");
    // F16 weights load (converted to f32) and match the F32 file to f16 precision.
    let to_f16 = |name: &str| {
        let v = st.tensor(name).unwrap();
        let b: Vec<u8> = v
            .data()
            .chunks_exact(4)
            .flat_map(|c| half::f16::from_f32(f32::from_le_bytes(c.try_into().unwrap())).to_le_bytes())
            .collect();
        Some((name.to_string(), Dtype::F16, v.shape().to_vec(), b))
    };
    write(&p, &to_f16);
    let half_w = read_weights(&p, &store).unwrap();
    for (a, b) in half_w.iter().zip(&loaded.weights) {
        for (x, y) in a.to_vec().unwrap().iter().zip(b.to_vec().unwrap()) {
            assert!((x - y).abs() <= 1e-3 * y.abs().max(1e-4), "{x} vs {y}");
        }
    }
}

#[test]
fn export_round_trips_and_old_attention_names_load() {
    // pad0_oldnames holds query/key/value/proj_attn; exported again it has today's names and the same numbers.
    let src = load_any(&fixture("pad0_oldnames"), None, false).unwrap();
    let mut store = ParamStore::new();
    UNet::new(&src.model, &mut store, &mut Philox::new(0)).unwrap();
    let mut cfg = Config::preset("tiny").unwrap();
    cfg.model = src.model.clone();
    let d = tmp("export");
    export(&d, &cfg, store.names(), &src.weights).unwrap();
    let bytes = std::fs::read(d.join(diffusers::WEIGHTS_FILE)).unwrap();
    let names = SafeTensors::deserialize(&bytes).unwrap().names().iter().map(|s| s.to_string()).collect::<Vec<_>>();
    assert!(names.iter().any(|n| n == "mid_block.attentions.0.to_out.0.weight"));
    assert!(!names.iter().any(|n| n.contains("proj_attn") || n.contains(".query.")));
    let back = load_any(&d, None, false).unwrap();
    assert_eq!(back.model, src.model);
    assert_eq!(back.diffusion, cfg.diffusion); // via scheduler_config.json
    for (a, b) in back.weights.iter().zip(&src.weights) {
        assert_eq!(a.to_vec().unwrap(), b.to_vec().unwrap());
    }
    // Nothing that is neither format.
    let e = load_any(&d.join("config.json"), None, false).err().unwrap().to_string();
    assert!(e.contains("config.json"), "{e}");
}

/// The key set of the DDPM-family hub configs (google/ddpm-cat-256 as published, diffusers 0.0.4) parses, and its
/// cifar10 counterpart gives our `cifar10` preset's architecture.
#[test]
fn hub_ddpm_family_configs_parse() {
    let cat = r#"{"_class_name": "UNet2DModel", "_diffusers_version": "0.0.4", "act_fn": "silu",
        "attention_head_dim": null, "block_out_channels": [128, 128, 256, 256, 512, 512],
        "center_input_sample": false,
        "down_block_types": ["DownBlock2D", "DownBlock2D", "DownBlock2D", "DownBlock2D", "AttnDownBlock2D", "DownBlock2D"],
        "downsample_padding": 0, "flip_sin_to_cos": false, "freq_shift": 1, "in_channels": 3, "layers_per_block": 2,
        "mid_block_scale_factor": 1, "norm_eps": 1e-06, "norm_num_groups": 32, "out_channels": 3, "sample_size": 256,
        "time_embedding_type": "positional",
        "up_block_types": ["UpBlock2D", "AttnUpBlock2D", "UpBlock2D", "UpBlock2D", "UpBlock2D", "UpBlock2D"]}"#;
    let cfg = ddpm_cuda::diffusers::unet_config_from_json(cat, std::path::Path::new("config.json")).unwrap();
    assert_eq!((cfg.ch, cfg.ch_mult.clone(), cfg.attn_resolutions.clone()), (128, vec![1, 1, 2, 2, 4, 4], vec![16]));
    let cifar = cat
        .replace("[128, 128, 256, 256, 512, 512]", "[128, 256, 256, 256]")
        .replace(
            r#"["DownBlock2D", "DownBlock2D", "DownBlock2D", "DownBlock2D", "AttnDownBlock2D", "DownBlock2D"]"#,
            r#"["DownBlock2D", "AttnDownBlock2D", "DownBlock2D", "DownBlock2D"]"#,
        )
        .replace(
            r#"["UpBlock2D", "AttnUpBlock2D", "UpBlock2D", "UpBlock2D", "UpBlock2D", "UpBlock2D"]"#,
            r#"["UpBlock2D", "UpBlock2D", "AttnUpBlock2D", "UpBlock2D"]"#,
        )
        .replace(r#""sample_size": 256"#, r#""sample_size": 32"#);
    let cfg = ddpm_cuda::diffusers::unet_config_from_json(&cifar, std::path::Path::new("config.json")).unwrap();
    let mut preset = ddpm_cuda::config::Config::preset("cifar10").unwrap().model;
    preset.dropout = cfg.dropout; // the hub config does not record training dropout
    assert_eq!(cfg, preset);
}
