//! `ddpm-cuda eps` on diffusers-saved checkpoints (UNet2DModel.save_pretrained folders in tests/fixtures/parity)
//! reproduces diffusers' forward to 1e-4 relative; the folder, the bare .safetensors with --config, int32
//! timesteps and bad inputs.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use safetensors::SafeTensors;

#[path = "common/fixtures.rs"]
mod fixtures;
use fixtures::{temp_dir, write_mnist};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/parity").join(name)
}

fn ddpm(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ddpm-cuda")).args(args).output().unwrap()
}

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

fn reference_eps(dir: &Path) -> Vec<f32> {
    let bytes = std::fs::read(dir.join("io.safetensors")).unwrap();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    st.tensor("eps").unwrap().data().chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect()
}

fn read_npy(path: &Path) -> (Vec<f32>, Vec<usize>) {
    ddpm_cuda::npy::read_f32(path).unwrap()
}

fn rel_err(got: &[f32], want: &[f32]) -> f32 {
    let scale = want.iter().fold(0.0f32, |m, x| m.max(x.abs()));
    got.iter().zip(want).fold(0.0f32, |m, (a, b)| m.max((a - b).abs())) / scale
}

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("ddpm-eps-cli-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d.join(name)
}

/// Run `ddpm-cuda eps` on the CPU with the given files and extra flags.
fn eps(checkpoint: &Path, x: &Path, t: &Path, out: &Path, extra: &[&str]) -> Output {
    let mut args = vec!["eps", "--checkpoint", checkpoint.to_str().unwrap(), "--x", x.to_str().unwrap()];
    args.extend(["--t", t.to_str().unwrap(), "--out", out.to_str().unwrap(), "--device", "cpu"]);
    args.extend(extra);
    ddpm(&args)
}

#[test]
fn eps_on_diffusers_folders_matches_diffusers_forward() {
    for name in ["pad0_oldnames", "pad1_attn_top", "cifar_like"] {
        let dir = fixture(name);
        let out = tmp(&format!("{name}.npy"));
        let o = eps(&dir, &dir.join("x.npy"), &dir.join("t.npy"), &out, &[]);
        assert!(o.status.success(), "{}", text(&o));
        let (got, shape) = read_npy(&out);
        let want = reference_eps(&dir);
        assert_eq!(shape[0], 3);
        let err = rel_err(&got, &want);
        assert!(err < 1e-4, "{name}: eps relative error {err:.2e}");
    }
}

#[test]
fn eps_takes_a_bare_safetensors_with_config_and_int32_timesteps() {
    let dir = fixture("cifar_like");
    // The weights file copied alone, its config given by --config; t as int32.
    let weights = tmp("bare.safetensors");
    std::fs::copy(dir.join("diffusion_pytorch_model.safetensors"), &weights).unwrap();
    let t32 = tmp("t32.npy");
    let mut buf = Vec::new();
    {
        use npyz::WriterBuilder;
        let mut w = npyz::WriteOptions::new().default_dtype().shape(&[3]).writer(&mut buf).begin_nd().unwrap();
        w.extend([0i32, 417, 999]).unwrap();
        w.finish().unwrap();
    }
    std::fs::write(&t32, buf).unwrap();
    let out = tmp("bare_eps.npy");
    let cfg = dir.join("config.json");
    let o = eps(&weights, &dir.join("x.npy"), &t32, &out, &["--config", cfg.to_str().unwrap()]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(rel_err(&read_npy(&out).0, &reference_eps(&dir)) < 1e-4);

    // Without --config there is no config.json beside the bare file: an error naming it.
    let o = eps(&weights, &dir.join("x.npy"), &t32, &out, &[]);
    assert!(!o.status.success() && text(&o).contains("config.json"), "{}", text(&o));
}

#[test]
fn eps_rejects_mismatched_inputs() {
    let dir = fixture("pad0_oldnames");
    let other = fixture("pad1_attn_top"); // 1 channel: the wrong x for a 3-channel model
    let out = tmp("bad.npy");
    let o = eps(&dir, &other.join("x.npy"), &dir.join("t.npy"), &out, &[]);
    assert!(!o.status.success() && text(&o).contains("unet"), "{}", text(&o));
    // x given as timesteps: a float32 array where int64/int32 is expected.
    let o = eps(&dir, &dir.join("x.npy"), &dir.join("x.npy"), &out, &[]);
    assert!(!o.status.success() && text(&o).contains("x.npy"), "{}", text(&o));
}

#[test]
fn training_writes_a_diffusers_folder_holding_the_ema_weights() {
    let data = temp_dir("eps-cli-data");
    write_mnist(&data, 16);
    let run = temp_dir("eps-cli-run").join("run");
    let (d, r) = (data.to_str().unwrap(), run.to_str().unwrap());
    let o = ddpm(&[
        "train",
        "--dataset",
        "mnist",
        "--data-dir",
        d,
        "--preset",
        "tiny",
        "--steps",
        "2",
        "--batch-size",
        "2",
        "--out",
        r,
        "--device",
        "cpu",
        "--quiet",
        "--set",
        "model.ch=8",
        "--set",
        "model.norm_groups=4",
        "--set",
        "model.downsample_padding=1",
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let folder = run.join("diffusers");
    for f in ["config.json", "diffusion_pytorch_model.safetensors", "scheduler_config.json"] {
        assert!(folder.join(f).is_file(), "{f}");
    }
    let cfg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(folder.join("config.json")).unwrap()).unwrap();
    assert_eq!(cfg["downsample_padding"], 1);
    assert_eq!(cfg["block_out_channels"], serde_json::json!([8, 16]));

    // x and t for a 1×28×28 model, written here.
    let x = tmp("mnist_x.npy");
    let xs: Vec<f32> = (0..2 * 28 * 28).map(|i| ((i * 37 % 101) as f32 / 50.0) - 1.0).collect();
    ddpm_cuda::npy::write_f32(&x, &xs, &[2, 1, 28, 28]).unwrap();
    let t = tmp("mnist_t.npy");
    let mut buf = Vec::new();
    {
        use npyz::WriterBuilder;
        let mut w = npyz::WriteOptions::new().default_dtype().shape(&[2]).writer(&mut buf).begin_nd().unwrap();
        w.extend([5i64, 700]).unwrap();
        w.finish().unwrap();
    }
    std::fs::write(&t, buf).unwrap();
    let eps_of = |ck: &Path, extra: &[&str], out: &str| {
        let out = tmp(out);
        let o = eps(ck, &x, &t, &out, extra);
        assert!(o.status.success(), "{}", text(&o));
        read_npy(&out).0
    };
    let from_ema = eps_of(&run.join("checkpoint.safetensors"), &["--ema"], "ema.npy");
    let from_raw = eps_of(&run.join("checkpoint.safetensors"), &[], "raw.npy");
    let from_diffusers = eps_of(&folder, &[], "diffusers.npy");
    assert_eq!(from_diffusers, from_ema);
    assert_ne!(from_raw, from_ema);
}
