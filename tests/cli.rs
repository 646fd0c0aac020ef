//! The `ddpm-cuda` binary end to end: info, train → sample (grid, npz, progressive), forward, and the clear errors
//! for a missing GPU, a missing dataset and a bad checkpoint.
#[path = "common/fixtures.rs"]
mod fixtures;
use fixtures::*;

use std::process::{Command, Output};

fn ddpm(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ddpm-cuda")).args(args).output().expect("run ddpm-cuda")
}

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

#[test]
fn info_reports_the_papers_parameter_count() {
    let o = ddpm(&["info", "--preset", "cifar10"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("328 tensors, 35,746,307 parameters"), "{}", text(&o));
    let o = ddpm(&["info", "--preset", "nope"]);
    assert!(!o.status.success() && text(&o).contains("unknown preset 'nope'"));
    let o = ddpm(&["info", "--preset", "tiny", "--set", "model.norm_groups=5"]);
    assert!(!o.status.success() && text(&o).contains("norm_groups"), "{}", text(&o));
}

#[test]
fn selftest_without_a_gpu_is_a_clear_error() {
    if ddpm_cuda::backend::cuda::CudaBackend::open(0).is_ok() {
        eprintln!("skipped: a CUDA device is present (this test checks the no-GPU message)");
        return;
    }
    let o = ddpm(&["selftest", "--device", "cuda"]);
    assert!(!o.status.success());
    let t = text(&o);
    assert!(t.contains("no CUDA device") && !t.contains("panicked"), "{t}");
}

#[test]
fn train_then_sample_writes_grid_npz_and_progressive_figure() {
    let data = temp_dir("cli-data");
    write_mnist(&data, 40);
    let out = temp_dir("cli-run").join("run");
    let (d, o) = (data.to_str().unwrap(), out.to_str().unwrap());
    let sets = ["--set", "model.ch=8", "--set", "model.norm_groups=4"];
    let mut args = vec!["train", "--dataset", "mnist", "--data-dir", d, "--preset", "tiny", "--steps", "3"];
    args.extend(["--batch-size", "4", "--out", o, "--device", "cpu", "--quiet", "--log-every", "1"]);
    args.extend(["--sample-every", "3", "--num-samples", "4", "--grid-steps", "3"]);
    args.extend(sets);
    let r = ddpm(&args);
    assert!(r.status.success(), "{}", text(&r));
    let metrics = std::fs::read_to_string(out.join("metrics.jsonl")).unwrap();
    assert_eq!(metrics.lines().count(), 3);
    let first: serde_json::Value = serde_json::from_str(metrics.lines().next().unwrap()).unwrap();
    assert_eq!(first["step"], 1);
    assert!(first["loss"].as_f64().unwrap() > 0.0);
    assert!(out.join("samples_0000003.png").exists() && out.join("loss.png").exists());

    let ck = out.join("checkpoint.safetensors");
    let (grid, npz, prog) = (out.join("g.png"), out.join("s.npz"), out.join("p.png"));
    let r = ddpm(&[
        "sample",
        "--checkpoint",
        ck.to_str().unwrap(),
        "--ema",
        "--num",
        "5",
        "--batch-size",
        "3",
        "--sampler",
        "ddim",
        "--steps",
        "4",
        "--grid",
        grid.to_str().unwrap(),
        "--npz",
        npz.to_str().unwrap(),
        "--progressive",
        prog.to_str().unwrap(),
        "--device",
        "cpu",
    ]);
    assert!(r.status.success(), "{}", text(&r));
    assert!(grid.exists() && prog.exists());
    // The npz holds arr_0 as uint8 [N, H, W, C].
    let mut zip = npyz::zip::ZipArchive::new(std::fs::File::open(&npz).unwrap()).unwrap();
    let entry = zip.by_name("arr_0.npy").unwrap();
    let arr = npyz::NpyFile::new(entry).unwrap();
    assert_eq!(arr.shape(), &[5, 28, 28, 1]);
    assert_eq!(arr.dtype(), npyz::DType::Plain("|u1".parse().unwrap()));
    assert_eq!(arr.into_vec::<u8>().unwrap().len(), 5 * 28 * 28);

    // Same seed, same samples; a corrupt checkpoint is a clear error naming the file.
    let npz2 = out.join("s2.npz");
    let r = ddpm(
        &["sample", "--checkpoint", ck.to_str().unwrap(), "--ema", "--num", "5", "--batch-size", "3"]
            .into_iter()
            .chain(["--sampler", "ddim", "--steps", "4", "--npz", npz2.to_str().unwrap(), "--device", "cpu"])
            .collect::<Vec<_>>(),
    );
    assert!(r.status.success());
    assert_eq!(std::fs::read(&npz).unwrap(), std::fs::read(&npz2).unwrap());
    std::fs::write(&ck, b"not a checkpoint").unwrap();
    let r = ddpm(&["sample", "--checkpoint", ck.to_str().unwrap(), "--grid", grid.to_str().unwrap()]);
    assert!(!r.status.success() && text(&r).contains("checkpoint.safetensors"), "{}", text(&r));
}

#[test]
fn missing_dataset_is_a_clear_error() {
    let empty = temp_dir("cli-empty");
    let out = temp_dir("cli-out").join("run");
    let r = ddpm(
        &["train", "--dataset", "mnist", "--data-dir", empty.to_str().unwrap(), "--out", out.to_str().unwrap()]
            .into_iter()
            .chain(["--device", "cpu", "--steps", "1"])
            .collect::<Vec<_>>(),
    );
    assert!(!r.status.success());
    assert!(text(&r).contains("train-images-idx3-ubyte"), "{}", text(&r));
}

#[test]
fn forward_figure_is_written() {
    let data = temp_dir("cli-fwd");
    write_mnist(&data, 4);
    let out = data.join("forward.png");
    let r = ddpm(
        &["forward", "--dataset", "mnist", "--data-dir", data.to_str().unwrap(), "--num", "2"]
            .into_iter()
            .chain(["--t", "0,500,999", "--out", out.to_str().unwrap()])
            .collect::<Vec<_>>(),
    );
    assert!(r.status.success(), "{}", text(&r));
    // 2 rows × 3 columns of 56×56 tiles with 2-pixel borders.
    let dec = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(&out).unwrap()));
    let info = dec.read_info().unwrap().info().clone();
    assert_eq!((info.width, info.height), (3 * 58 + 2, 2 * 58 + 2));
}
