//! `ddpm-cuda fid` and `fid-stats` end to end on a few tiny images, with the synthetic Inception weights of
//! `eval::inception::synthetic_weights` written as a torch zip-format `.pth` (tests/common/pth.rs): the stats
//! npz `fid-stats` writes, the FID and Inception Score `fid` prints against a samples npz, a stats npz and a
//! dataset, each checked against the library computing the same features and distances, and the FID of a set
//! against itself ≈ 0. The Inception forward at 299×299 costs ~5.7 GFLOP per image on the CPU: 4 images a set.
#[path = "common/fixtures.rs"]
mod fixtures;
#[path = "common/pth.rs"]
mod pth;
use fixtures::*;

use std::path::Path;
use std::process::{Command, Output};

use ddpm_cuda::data::load_mnist;
use ddpm_cuda::eval::fid::{frechet_distance, inception_score, Stats};
use ddpm_cuda::eval::inception::{synthetic_weights, Inception, NUM_LOGITS, POOL3_DIM};
use ddpm_cuda::eval::Images;
use ddpm_cuda::Device;

fn ddpm(args: &[&str]) -> Output {
    let t = std::time::Instant::now();
    let o = Command::new(env!("CARGO_BIN_EXE_ddpm-cuda")).args(args).output().expect("run ddpm-cuda");
    eprintln!("ddpm-cuda {}: {:.1} s", args[0], t.elapsed().as_secs_f64());
    assert!(o.status.success(), "ddpm-cuda {args:?}:\n{}", text(&o));
    o
}

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// (FID, IS mean, IS std, IS splits) from `fid`'s stdout.
fn printed(o: &Output) -> (f64, f64, f64, usize) {
    let out = String::from_utf8_lossy(&o.stdout).to_string();
    let field = |prefix: &str| out.lines().find_map(|l| l.strip_prefix(prefix)).unwrap_or_else(|| panic!("{out}"));
    let fid = field("FID: ").trim().parse().unwrap();
    // "Inception Score: 1.2345 ± 0.0123 (2 splits)"
    let is: Vec<&str> = field("Inception Score: ").split_whitespace().collect();
    assert_eq!((is[1], is[4]), ("±", "splits)"), "{out}");
    (fid, is[0].parse().unwrap(), is[2].parse().unwrap(), is[3].trim_start_matches('(').parse().unwrap())
}

/// |got − want| within what printing with 4 decimals and f32 feature round-off allow.
fn close(what: &str, got: f64, want: f64) {
    let tol = 1e-4 + 1e-6 * want.abs();
    eprintln!("{what}: CLI {got} vs library {want:.6}");
    assert!((got - want).abs() <= tol, "{what}: CLI {got} vs library {want:.6} (tolerance {tol:.1e})");
}

fn trace(st: &Stats) -> f64 {
    (0..st.dim()).map(|i| st.sigma[i * st.dim() + i]).sum()
}

/// The synthetic fc layer gives every image the same top class (IS ≡ 1). This one has the direction of `feats`'
/// mean projected out of each row and is rescaled, so that the logits follow how the images differ: a
/// discriminating Inception Score. pool3 does not depend on fc, so the features stay those of the network.
fn spread_fc(w: &[f32], feats: &[f32]) -> Vec<f32> {
    let n = feats.len() / POOL3_DIM;
    let mut u = vec![0.0f64; POOL3_DIM];
    feats.chunks_exact(POOL3_DIM).for_each(|f| u.iter_mut().zip(f).for_each(|(u, &v)| *u += v as f64));
    let norm = u.iter().map(|v| v * v).sum::<f64>().sqrt();
    u.iter_mut().for_each(|v| *v /= norm);
    let w1: Vec<f64> = w
        .chunks_exact(POOL3_DIM)
        .flat_map(|row| {
            let along: f64 = row.iter().zip(&u).map(|(&a, b)| a as f64 * b).sum();
            row.iter().zip(&u).map(move |(&a, b)| a as f64 - along * b).collect::<Vec<_>>()
        })
        .collect();
    let logits = logits_f64(&w1.iter().map(|&v| v as f32).collect::<Vec<_>>(), feats);
    let mean = logits.iter().sum::<f64>() / (n * NUM_LOGITS) as f64;
    let std = (logits.iter().map(|l| (l - mean).powi(2)).sum::<f64>() / logits.len() as f64).sqrt();
    w1.iter().map(|&v| (v * 1.5 / std) as f32).collect()
}

/// Unbiased logits pool3 · fcᵀ in f64, here rather than through the library's GEMM.
fn logits_f64(w: &[f32], feats: &[f32]) -> Vec<f64> {
    feats
        .chunks_exact(POOL3_DIM)
        .flat_map(|f| {
            w.chunks_exact(POOL3_DIM).map(move |row| row.iter().zip(f).map(|(&a, &b)| a as f64 * b as f64).sum())
        })
        .collect()
}

#[test]
fn fid_and_fid_stats_print_the_librarys_values() {
    let dir = temp_dir("fidcli");
    // A: the 4 images of a tiny MNIST (as a grayscale samples npz and as --ref-dataset); B: 4 colour images.
    let data = dir.join("mnist");
    std::fs::create_dir_all(&data).unwrap();
    write_mnist(&data, 4);
    let mnist = load_mnist(&data, true).unwrap();
    let a_px: Vec<u8> = (0..4).flat_map(|i| mnist.image_u8(i).to_vec()).collect();
    let a_npz = dir.join("a.npz");
    ddpm_cuda::report::save_npz_u8(&a_npz, &a_px, [4, 28, 28, 1]).unwrap();
    let b_px: Vec<u8> = (0..4 * 20 * 24 * 3)
        .map(|k| {
            let (i, p, c) = (k / (20 * 24 * 3), k / 3 % (20 * 24), k % 3);
            let (y, x) = (p / 24, p % 24);
            (((x * (c + 1) * 9 + y * (i + 2) * 7 + i * 50) % 256) as u8).wrapping_mul(if c == 1 { 3 } else { 1 })
        })
        .collect();
    let b_npz = dir.join("b.npz");
    ddpm_cuda::report::save_npz_u8(&b_npz, &b_px, [4, 20, 24, 3]).unwrap();

    // The library: the same network from the same weights, features of whole sets in one batch.
    let t = std::time::Instant::now();
    let mut weights = synthetic_weights(2015).unwrap();
    let net = Inception::new(&weights, &Device::Cpu, "synthetic").unwrap();
    let (a, b) = (Images::read_npz(&a_npz).unwrap(), Images::read_npz(&b_npz).unwrap());
    let fa = net.run_u8_nhwc(&a.pixels, 4, 28, 28).unwrap().pool3;
    let fb = net.run_u8_nhwc(&b.pixels, 4, 20, 24).unwrap().pool3;
    drop(net);
    let (sa, sb) = (Stats::from_features(&fa, 4, POOL3_DIM).unwrap(), Stats::from_features(&fb, 4, POOL3_DIM).unwrap());
    let fid_ab = frechet_distance(&sa, &sb, 1e-6).unwrap();
    let fc = spread_fc(&weights["fc.weight"].to_vec().unwrap(), &fa);
    let logits_a: Vec<f32> = logits_f64(&fc, &fa).iter().map(|&l| l as f32).collect();
    let (is_mean, is_std) = inception_score(&logits_a, 4, NUM_LOGITS, 2).unwrap();
    eprintln!(
        "library: FID(A, B) {fid_ab:.4}, IS(A) {is_mean:.4} ± {is_std:.4}, tr ΣA {:.4}, tr ΣB {:.4} ({:.1} s)",
        trace(&sa),
        trace(&sb),
        t.elapsed().as_secs_f64()
    );
    // The sets must differ measurably, and the IS be away from its bounds, for the comparisons to mean anything.
    assert!(fid_ab.is_finite() && fid_ab > 1.0 && fid_ab > 1e-3 * (trace(&sa) + trace(&sb)), "{fid_ab}");
    assert!(is_mean > 1.05 && is_mean < 1.95 && is_std > 1e-3, "IS {is_mean} ± {is_std}");

    // The weights, written as torch would save pytorch-fid's state dict, and read back exactly by the library.
    let t = std::time::Instant::now();
    weights.insert("fc.weight".into(), ddpm_cuda::Tensor::from_vec(fc, &[NUM_LOGITS, POOL3_DIM]).unwrap());
    let pth_path = dir.join("synthetic_inception.pth");
    pth::write_state_dict_zip(&pth_path, &weights);
    let back = ddpm_cuda::eval::pth::load_state_dict(&pth_path).unwrap();
    assert_eq!(back.len(), weights.len());
    for (name, w) in &weights {
        assert_eq!(back[name].shape(), w.shape(), "{name}");
        assert!(back[name].to_vec().unwrap() == w.to_vec().unwrap(), "{name} does not read back");
    }
    drop(back);
    eprintln!("weights written and read back: {:.1} s", t.elapsed().as_secs_f64());

    let common = ["--inception", s(&pth_path), "--device", "cpu", "--batch-size", "3"];
    let run = |head: &[&str]| ddpm(&head.iter().chain(&common).copied().collect::<Vec<_>>());

    // fid-stats of B (batches of 3 + 1) writes B's μ and Σ.
    let stats_b = dir.join("stats_b.npz");
    let o = run(&["fid-stats", "--samples", s(&b_npz), "--out", s(&stats_b)]);
    assert!(text(&o).contains("(4 images)"), "{}", text(&o));
    let written = Stats::read_npz(&stats_b).unwrap();
    assert_eq!(written.dim(), POOL3_DIM);
    let max_abs = |v: &[f64]| v.iter().fold(0.0f64, |m, x| m.max(x.abs()));
    let max_diff = |x: &[f64], y: &[f64]| x.iter().zip(y).map(|(p, q)| (p - q).abs()).fold(0.0, f64::max);
    let (d_sigma, d_mu) = (max_diff(&written.sigma, &sb.sigma), max_diff(&written.mu, &sb.mu));
    assert!(
        d_sigma <= 1e-4 * max_abs(&sb.sigma) && d_mu <= 1e-5 * max_abs(&sb.mu),
        "Σ off by {d_sigma} (of {}), μ by {d_mu} (of {})",
        max_abs(&sb.sigma),
        max_abs(&sb.mu)
    );

    // fid against B's images and against B's stats: the library's FID and IS, and one value for both references.
    let by_images = printed(&run(&["fid", "--samples", s(&a_npz), "--ref", s(&b_npz), "--splits", "2"]));
    let by_stats = printed(&run(&["fid", "--samples", s(&a_npz), "--ref", s(&stats_b), "--splits", "2"]));
    close("FID(A, B npz)", by_images.0, fid_ab);
    close("FID(A, B stats)", by_stats.0, fid_ab);
    assert!((by_images.0 - by_stats.0).abs() <= 2e-4, "--ref b.npz {} vs --ref stats {}", by_images.0, by_stats.0);
    for (fid, m, sd, k) in [by_images, by_stats] {
        assert!(fid.is_finite());
        assert_eq!(k, 2);
        close("IS mean", m, is_mean);
        close("IS std", sd, is_std);
        // exp(mutual information) of 2 images a split: between 1 and 2 (and so within [1, 1008 classes]).
        assert!(m.is_finite() && (1.0..=2.0).contains(&m), "IS {m}");
    }

    // fid of A against the dataset it was taken from: 0 up to round-off, far below FID(A, B).
    let (fid_self, m, sd, _) = printed(&run(&[
        "fid",
        "--samples",
        s(&a_npz),
        "--ref-dataset",
        "mnist",
        "--data-dir",
        s(&data),
        "--splits",
        "2",
    ]));
    // Round-off: the noise eigenvalues of the rank-3 covariances add their square roots to tr √(Σ Σ).
    let tol = 1e-4 + 1e-5 * trace(&sa);
    eprintln!("FID of A against itself: {fid_self}");
    assert!(fid_self.abs() <= tol, "FID of A against itself {fid_self} (tolerance {tol:.1e}; FID(A, B) {fid_ab})");
    close("IS mean (dataset reference)", m, is_mean);
    close("IS std (dataset reference)", sd, is_std);
    std::fs::remove_dir_all(&dir).ok(); // the 95 MB weights file
}
