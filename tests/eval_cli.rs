//! The evaluation subcommands end to end on tiny inputs: `sample --model empirical` reproduces training images,
//! `memorization` finds each sample's nearest training image (checked against a brute-force search here), `nll`
//! prints the bound the library computes for the same checkpoint and images, and `fid` / `fid-stats` without
//! the Inception weights say where to get them.
mod common;
#[path = "common/fixtures.rs"]
mod fixtures;
use fixtures::*;

use std::path::Path;
use std::process::{Command, Output};

use ddpm_cuda::checkpoint::Checkpoint;
use ddpm_cuda::data::load_mnist;
use ddpm_cuda::diffusion::Diffusion;
use ddpm_cuda::eval::Images;
use ddpm_cuda::nn::unet::UNet;
use ddpm_cuda::nn::{Ctx, ParamStore};
use ddpm_cuda::rng::Philox;
use ddpm_cuda::{train, Tensor, Var};

fn ddpm(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ddpm-cuda")).args(args).output().expect("run ddpm-cuda")
}

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// MNIST-format train and test splits (the test split a copy of the train images).
fn mnist_both_splits(name: &str, n: usize) -> std::path::PathBuf {
    let dir = temp_dir(name);
    write_mnist(&dir, n);
    std::fs::copy(dir.join("train-images-idx3-ubyte"), dir.join("t10k-images-idx3-ubyte")).unwrap();
    std::fs::copy(dir.join("train-labels-idx1-ubyte"), dir.join("t10k-labels-idx1-ubyte")).unwrap();
    dir
}

#[test]
fn empirical_samples_are_training_images_and_memorization_finds_them() {
    let data = mnist_both_splits("evalcli-emp", 20);
    let out = temp_dir("evalcli-emp-out");
    let npz = out.join("emp.npz");
    let limit = 12;
    let o = ddpm(&[
        "sample",
        "--model",
        "empirical",
        "--dataset",
        "mnist",
        "--data-dir",
        s(&data),
        "--train-limit",
        "12",
        "--sampler",
        "ddim",
        "--steps",
        "50",
        "--num",
        "5",
        "--batch-size",
        "2",
        "--seed",
        "3",
        "--npz",
        s(&npz),
        "--device",
        "cpu",
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let samples = Images::read_npz(&npz).unwrap();
    assert_eq!((samples.n, samples.height, samples.width), (5, 28, 28));
    let train = load_mnist(&data, true).unwrap();
    let hw = 28 * 28;
    // Brute force here: each sample's nearest of the first `limit` training images, in [−1, 1] pixels.
    let nearest: Vec<(usize, f64)> = (0..samples.n)
        .map(|i| {
            let px = |p: usize| samples.pixels[(i * hw + p) * 3] as f64 / 127.5 - 1.0;
            (0..limit)
                .map(|j| {
                    let tr = train.image_u8(j);
                    let d2: f64 = (0..hw).map(|p| (px(p) - (tr[p] as f64 / 127.5 - 1.0)).powi(2)).sum();
                    (j, d2.sqrt())
                })
                .min_by(|a, b| a.1.total_cmp(&b.1))
                .unwrap()
        })
        .collect();
    // The optimal denoiser of a training set reproduces its images: every sample is (nearly) one of them.
    for (i, &(j, d)) in nearest.iter().enumerate() {
        let rms = d / (hw as f64).sqrt();
        assert!(rms < 0.05, "sample {i}: nearest training image {j} at per-pixel RMS {rms:.3}");
    }

    let (png, csv) = (out.join("pairs.png"), out.join("nn.csv"));
    let o = ddpm(&[
        "memorization",
        "--samples",
        s(&npz),
        "--dataset",
        "mnist",
        "--data-dir",
        s(&data),
        "--train-limit",
        "12",
        "--out",
        s(&png),
        "--csv",
        s(&csv),
        "--pairs",
        "4",
    ]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(std::fs::metadata(&png).unwrap().len() > 0);
    let rows: Vec<Vec<String>> = std::fs::read_to_string(&csv)
        .unwrap()
        .lines()
        .skip(1)
        .map(|l| l.split(',').map(str::to_string).collect())
        .collect();
    assert_eq!(rows.len(), samples.n);
    for (i, r) in rows.iter().enumerate() {
        assert_eq!(r[0].parse::<usize>().unwrap(), i);
        let (j, d) = (r[1].parse::<usize>().unwrap(), r[2].parse::<f64>().unwrap());
        assert_eq!(j, nearest[i].0, "sample {i}: nearest training image");
        assert!((d - nearest[i].1).abs() <= 1e-5 + 1e-4 * nearest[i].1, "sample {i}: distance {d} vs {}", nearest[i].1);
    }
    // A sample that is exactly a training image is at distance 0 from it, and nothing past --train-limit counts.
    let exact = out.join("exact.npz");
    let img: Vec<u8> = train.image_u8(15).iter().flat_map(|&v| [v, v, v]).collect();
    ddpm_cuda::report::save_npz_u8(&exact, &img, [1, 28, 28, 3]).unwrap();
    let o = ddpm(&[
        "memorization",
        "--samples",
        s(&exact),
        "--dataset",
        "mnist",
        "--data-dir",
        s(&data),
        "--out",
        s(&png),
        "--csv",
        s(&csv),
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let line = std::fs::read_to_string(&csv).unwrap().lines().nth(1).unwrap().to_string();
    assert_eq!(line, "0,15,0.000000,0.000000");
}

#[test]
fn nll_prints_the_librarys_bound() {
    let data = mnist_both_splits("evalcli-nll", 8);
    let run = temp_dir("evalcli-nll-run");
    let mut cfg = micro_config(2);
    cfg.diffusion.steps = 100; // the bound sums T terms: a short schedule keeps the test quick
    train::run(run_options(&data, &run, cfg, false)).unwrap();
    let ck_path = run.join("checkpoint.safetensors");
    let o = ddpm(&[
        "nll",
        "--checkpoint",
        s(&ck_path),
        "--dataset",
        "mnist",
        "--data-dir",
        s(&data),
        "--num",
        "3",
        "--batch-size",
        "2",
        "--seed",
        "4",
        "--device",
        "cpu",
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let out = text(&o);
    let got: f64 = out.split("NLL ≤ ").nth(1).unwrap().split(' ').next().unwrap().parse().unwrap();
    assert!(out.contains("on 3 test images"), "{out}");

    // The same bound from the library: batches [0, 1] and [2] of the test split, one Philox(4) stream.
    let ck = Checkpoint::load(&ck_path).unwrap();
    let mut params = ParamStore::new();
    let unet = UNet::new(&ck.config.model, &mut params, &mut Philox::new(0)).unwrap();
    params.set_tensors(ck.model.clone()).unwrap();
    let d = Diffusion::new(&ck.config.diffusion).unwrap();
    let test = load_mnist(&data, false).unwrap();
    let cx = Ctx::no_grad(&params);
    let mut model = |x: &Tensor, t: &[f32]| Ok(unet.forward(&cx, &Var::constant(x.clone()), t)?.into_value());
    let mut rng = Philox::new(4);
    let mut sum = 0.0;
    for (start, count) in [(0, 2), (2, 1)] {
        let mut x = vec![0.0f32; count * hw()];
        for (i, row) in x.chunks_exact_mut(hw()).enumerate() {
            test.image_f32(start + i, false, row);
        }
        let x0 = Tensor::from_vec(x, &[count, 1, 28, 28]).unwrap();
        sum += ddpm_cuda::eval::nll::bits_per_dim(&mut model, &d, &x0, &mut rng).unwrap().total.iter().sum::<f64>();
    }
    let want = sum / 3.0;
    assert!(want.is_finite() && want > 0.0, "{want}");
    assert!((got - want).abs() <= 6e-5, "CLI {got} vs library {want:.6}");
}

fn hw() -> usize {
    28 * 28
}

#[test]
fn fid_and_fid_stats_without_weights_say_where_to_get_them() {
    let data = mnist_both_splits("evalcli-fid", 4);
    let out = temp_dir("evalcli-fid-out");
    let npz = out.join("s.npz");
    ddpm_cuda::report::save_npz_u8(&npz, &[128; 2 * 28 * 28 * 3], [2, 28, 28, 3]).unwrap();
    let missing = out.join("missing.pth");
    let o = ddpm(&[
        "fid",
        "--samples",
        s(&npz),
        "--ref-dataset",
        "mnist",
        "--data-dir",
        s(&data),
        "--inception",
        s(&missing),
        "--device",
        "cpu",
    ]);
    assert!(!o.status.success());
    assert!(
        text(&o).contains("missing.pth") && text(&o).contains(ddpm_cuda::eval::inception::FID_WEIGHTS_URL),
        "{}",
        text(&o)
    );
    let o = ddpm(&[
        "fid-stats",
        "--samples",
        s(&npz),
        "--inception",
        s(&missing),
        "--out",
        s(&out.join("st.npz")),
        "--device",
        "cpu",
    ]);
    assert!(!o.status.success());
    assert!(text(&o).contains(ddpm_cuda::eval::inception::FID_WEIGHTS_URL), "{}", text(&o));
}
