//! `nll` loads what `sample` and `eps` load, through the same function: a run folder, its checkpoint file, the
//! diffusers folder a run exports, and the bare diffusers .safetensors with --config all give the same bound.
#[path = "common/fixtures.rs"]
mod fixtures;
use fixtures::{temp_dir, write_mnist};

use std::path::Path;
use std::process::{Command, Output};

fn ddpm(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ddpm-cuda")).args(args).output().expect("run ddpm-cuda")
}

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

/// Test-split IDX files (t10k-*) next to the training ones, so `nll` has a test set.
fn write_test_split(dir: &Path) {
    for (from, to) in
        [("train-images-idx3-ubyte", "t10k-images-idx3-ubyte"), ("train-labels-idx1-ubyte", "t10k-labels-idx1-ubyte")]
    {
        std::fs::copy(dir.join(from), dir.join(to)).unwrap();
    }
}

#[test]
fn nll_takes_run_folders_diffusers_folders_and_bare_safetensors() {
    let data = temp_dir("nllcli-data");
    write_mnist(&data, 8);
    write_test_split(&data);
    let out = temp_dir("nllcli").join("run");
    let d = data.to_str().unwrap();
    let o = ddpm(&[
        "train",
        "--dataset",
        "mnist",
        "--data-dir",
        d,
        "--preset",
        "tiny",
        "--set",
        "model.ch=8",
        "--set",
        "model.norm_groups=4",
        "--set",
        "diffusion.steps=50",
        "--batch-size",
        "4",
        "--steps",
        "2",
        "--out",
        out.to_str().unwrap(),
        "--device",
        "cpu",
        "--quiet",
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let nll = |extra: &[&str]| -> String {
        let mut args = vec!["nll", "--dataset", "mnist", "--data-dir", d, "--num", "3", "--device", "cpu"];
        args.extend(extra);
        let o = ddpm(&args);
        assert!(o.status.success(), "{extra:?}: {}", text(&o));
        let line = String::from_utf8_lossy(&o.stdout).lines().find(|l| l.starts_with("NLL")).unwrap().to_string();
        line
    };
    let run = out.to_str().unwrap();
    let ck = out.join("checkpoint.safetensors");
    let folder = out.join("diffusers");
    let bare = folder.join("diffusion_pytorch_model.safetensors");
    let config = folder.join("config.json");
    let ema = nll(&["--checkpoint", run, "--ema"]);
    assert_eq!(ema, nll(&["--checkpoint", ck.to_str().unwrap(), "--ema"]));
    // The diffusers export holds the EMA weights and the run's schedule.
    assert_eq!(ema, nll(&["--checkpoint", folder.to_str().unwrap()]));
    assert_eq!(ema, nll(&["--checkpoint", bare.to_str().unwrap(), "--config", config.to_str().unwrap()]));
    // A plot of the terms, when asked for.
    let plot = out.join("terms.png");
    nll(&["--checkpoint", run, "--ema", "--plot", plot.to_str().unwrap()]);
    assert!(plot.is_file());
    // Bad input names the file.
    let o = ddpm(&[
        "nll",
        "--checkpoint",
        data.to_str().unwrap(),
        "--dataset",
        "mnist",
        "--data-dir",
        d,
        "--device",
        "cpu",
    ]);
    assert!(!o.status.success() && text(&o).contains(data.to_str().unwrap()), "{}", text(&o));
}
