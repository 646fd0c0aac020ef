//! FID / IS / Inception parity with pytorch-fid and torch-fidelity, on fixtures written by
//! scripts/fid/make_fixtures.py (the Inception weights are regenerated here from the generator it shares).

use std::path::{Path, PathBuf};

use ddpm_cuda::eval::fid::{frechet_distance, inception_score, Stats};
use ddpm_cuda::eval::inception::{self, Inception, NUM_LOGITS, POOL3_DIM};
use ddpm_cuda::eval::pth::load_state_dict;
use ddpm_cuda::eval::Images;
use ddpm_cuda::ops::pool::{avg_pool2d_forward, global_avg_pool_forward, max_pool2d_forward, Pool2d};
use ddpm_cuda::ops::relu::relu_forward;
use ddpm_cuda::ops::resize::resize_bilinear_forward;
use ddpm_cuda::{Device, Tensor};
use safetensors::SafeTensors;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name)
}

fn f32s(st: &SafeTensors, name: &str) -> Vec<f32> {
    st.tensor(name).unwrap().data().chunks_exact(4).map(|b| f32::from_le_bytes(b.try_into().unwrap())).collect()
}

fn f64s(st: &SafeTensors, name: &str) -> Vec<f64> {
    st.tensor(name).unwrap().data().chunks_exact(8).map(|b| f64::from_le_bytes(b.try_into().unwrap())).collect()
}

fn rel(a: f64, b: f64) -> f64 {
    (a - b).abs() / b.abs().max(1e-300)
}

#[test]
fn pth_reader_reads_both_torch_save_formats_with_views() {
    let conv = inception::synthetic_tensor("Conv2d_1a_3x3.conv.weight", &[4, 3, 3, 3], 2015).unwrap();
    let var = inception::synthetic_tensor("Conv2d_1a_3x3.bn.running_var", &[4], 2015).unwrap();
    let big = inception::synthetic_tensor("fc.weight", &[6, 5], 2015).unwrap().to_vec().unwrap();
    for file in ["fid_tiny_zip.pth", "fid_tiny_legacy.pth"] {
        let sd = load_state_dict(&fixture(file)).unwrap();
        assert_eq!(sd.len(), 4, "{file}: the int64 num_batches_tracked is skipped, 4 float tensors remain");
        assert_eq!(sd["Conv2d_1a_3x3.conv.weight"].shape(), &[4, 3, 3, 3]);
        assert_eq!(sd["Conv2d_1a_3x3.conv.weight"].to_vec().unwrap(), conv.to_vec().unwrap(), "{file}");
        assert_eq!(sd["Conv2d_1a_3x3.bn.running_var"].to_vec().unwrap(), var.to_vec().unwrap(), "{file}");
        // big[2:5]: a storage offset; big.t()[1]: stride 5 through the same storage.
        assert_eq!(sd["fc.weight"].shape(), &[3, 5]);
        assert_eq!(sd["fc.weight"].to_vec().unwrap(), big[10..25].to_vec(), "{file}");
        let column: Vec<f32> = (0..6).map(|r| big[r * 5 + 1]).collect();
        assert_eq!(sd["fc.bias"].to_vec().unwrap(), column, "{file}");
    }
}

#[test]
fn wrong_or_missing_weights_say_what_to_do() {
    let err = Inception::from_file(Path::new("/nonexistent/pt_inception.pth"), &Device::Cpu).err().unwrap().to_string();
    assert!(err.contains("not found") && err.contains(inception::FID_WEIGHTS_URL), "{err}");
    let err = Inception::from_file(&fixture("fid_tiny_zip.pth"), &Device::Cpu).err().unwrap().to_string();
    // Its first tensor has the wrong shape for pytorch-fid's network.
    assert!(err.contains("has shape [4, 3, 3, 3], expected [32, 3, 3, 3]"), "{err}");
    assert!(err.contains("fid_tiny_zip.pth") && err.contains(inception::FID_WEIGHTS_URL), "{err}");
    let err = Inception::from_file(&fixture("fid_stats2.npz"), &Device::Cpu).err().unwrap().to_string();
    assert!(err.contains("fid_stats2.npz") && err.contains(inception::FID_WEIGHTS_URL), "{err}");
}

#[test]
fn inception_pool3_and_logits_equal_pytorch_fid() {
    let net = Inception::new(&inception::synthetic_weights(2015).unwrap(), &Device::Cpu, "synthetic").unwrap();
    let bytes = std::fs::read(fixture("fid_inception_synthetic.safetensors")).unwrap();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    for side in [32usize, 64, 299] {
        let images = st.tensor(&format!("images_{side}")).unwrap();
        let n = images.shape()[0];
        let out = net.run_u8_nhwc(images.data(), n, side, side).unwrap();
        for (what, ours, dim) in [("pool3", &out.pool3, POOL3_DIM), ("logits_unbiased", &out.logits, NUM_LOGITS)] {
            let want = f32s(&st, &format!("{what}_{side}"));
            assert_eq!(ours.len(), n * dim);
            let scale = want.iter().fold(0.0f32, |m, v| m.max(v.abs()));
            let err = ours.iter().zip(&want).fold(0.0f32, |m, (a, b)| m.max((a - b).abs()));
            assert!(scale > 1.0, "degenerate fixture");
            eprintln!("{what} {side}×{side}: max |error| {err:.3e}, max |value| {scale:.3e}");
            assert!(err <= 1e-4 * scale, "{what} at {side}×{side}: max error {err} vs scale {scale}");
        }
    }
}

#[test]
fn frechet_distance_equals_pytorch_fid() {
    let bytes = std::fs::read(fixture("fid_frechet_is.safetensors")).unwrap();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let (f1, f2) = (f32s(&st, "feats1"), f32s(&st, "feats2"));
    let s1 = Stats::from_features(&f1, 300, 64).unwrap();
    let s2 = Stats::from_features(&f2, 200, 64).unwrap();
    let want = f64s(&st, "fid")[0];
    let fid = frechet_distance(&s1, &s2, 1e-6).unwrap();
    assert!(rel(fid, want) < 1e-6, "FID {fid} vs pytorch-fid {want}");
    // The stats npz pytorch-fid wrote (savez_compressed) reads back as our own statistics.
    let ref2 = Stats::read_npz(&fixture("fid_stats2.npz")).unwrap();
    let worst = ref2.sigma.iter().zip(&s2.sigma).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max);
    assert!(worst < 1e-10, "sigma differs from np.cov by {worst}");
    assert!(rel(frechet_distance(&s1, &ref2, 1e-6).unwrap(), want) < 1e-6);
    // Identical distributions are at distance 0; our own npz round-trips exactly.
    assert!(frechet_distance(&s1, &s1, 1e-6).unwrap().abs() < 1e-9);
    let path = std::env::temp_dir().join(format!("ddpm-cuda-fid-stats-{}.npz", std::process::id()));
    s1.write_npz(&path).unwrap();
    let back = Stats::read_npz(&path).unwrap();
    assert_eq!((back.mu, back.sigma), (s1.mu.clone(), s1.sigma.clone()));
    std::fs::remove_file(path).ok();
}

#[test]
fn frechet_distance_of_rank_deficient_covariances_is_finite() {
    // 10 samples in 64 dimensions: both covariances are singular, as with too few samples for 2048-d features.
    let a: Vec<f32> = (0..640).map(|i| ((i * 37 % 101) as f32 / 50.0) - 1.0).collect();
    let b: Vec<f32> = (0..640).map(|i| ((i * 53 % 97) as f32 / 40.0) - 1.0).collect();
    let (sa, sb) = (Stats::from_features(&a, 10, 64).unwrap(), Stats::from_features(&b, 10, 64).unwrap());
    let fid = frechet_distance(&sa, &sb, 1e-6).unwrap();
    assert!(fid.is_finite() && fid > 0.0, "{fid}");
}

#[test]
fn inception_score_equals_torch_fidelity() {
    let bytes = std::fs::read(fixture("fid_frechet_is.safetensors")).unwrap();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let logits = f32s(&st, "logits");
    let want = f64s(&st, "is_mean_std");
    let (mean, std) = inception_score(&logits, 120, 1008, 10).unwrap();
    assert!(rel(mean, want[0]) < 1e-9 && rel(std, want[1]) < 1e-7, "IS {mean} ± {std} vs {want:?}");
    // One class for everything: p(y|x) = p(y), IS = 1.
    let flat: Vec<f32> = (0..20 * 5).map(|i| if i % 5 == 2 { 50.0 } else { 0.0 }).collect();
    let (m, s) = inception_score(&flat, 20, 5, 10).unwrap();
    assert!((m - 1.0).abs() < 1e-12 && s < 1e-12);
}

#[test]
fn pools_match_hand_computed_values() {
    // 3×3 plane 1..9.
    let x = Tensor::from_vec((1..=9).map(|v| v as f32).collect(), &[1, 1, 3, 3]).unwrap();
    let avg = avg_pool2d_forward(&x, Pool2d::new(3, 1, 1), false).unwrap().to_vec().unwrap();
    // Corner (0,0) averages 1,2,4,5 only; the centre all nine.
    assert_eq!(avg[0], 3.0);
    assert_eq!(avg[4], 5.0);
    assert_eq!(avg[1], (1.0 + 2.0 + 3.0 + 4.0 + 5.0 + 6.0) / 6.0);
    let avg_pad = avg_pool2d_forward(&x, Pool2d::new(3, 1, 1), true).unwrap().to_vec().unwrap();
    assert_eq!(avg_pad[0], 12.0 / 9.0);
    let max = max_pool2d_forward(&x, Pool2d::new(3, 1, 1)).unwrap().to_vec().unwrap();
    assert_eq!(max, vec![5.0, 6.0, 6.0, 8.0, 9.0, 9.0, 8.0, 9.0, 9.0]);
    let neg = Tensor::from_vec((1..=16).map(|v| -(v as f32)).collect(), &[1, 1, 4, 4]).unwrap();
    let m = max_pool2d_forward(&neg, Pool2d::new(3, 2, 0)).unwrap();
    assert_eq!(m.shape(), &[1, 1, 1, 1]);
    assert_eq!(m.to_vec().unwrap(), vec![-1.0]);
    let g = global_avg_pool_forward(&x).unwrap();
    assert_eq!((g.shape().to_vec(), g.to_vec().unwrap()), (vec![1, 1, 1, 1], vec![5.0]));
    assert_eq!(relu_forward(&neg).unwrap().to_vec().unwrap(), vec![0.0; 16]);
}

#[test]
fn bilinear_resize_matches_align_corners_false() {
    let x = Tensor::from_vec(vec![0.0, 4.0, 8.0, 12.0], &[1, 1, 2, 2]).unwrap();
    let y = resize_bilinear_forward(&x, 4, 4).unwrap().to_vec().unwrap();
    // Sources 0, 0.25, 0.75, 1.25→(1, clamped): row weights of [a, b] are a, .75a+.25b, .25a+.75b, b.
    let r = |a: f32, b: f32| [a, 0.75 * a + 0.25 * b, 0.25 * a + 0.75 * b, b];
    let (top, bottom) = (r(0.0, 4.0), r(8.0, 12.0));
    let want: Vec<f32> = (0..4).flat_map(|i| (0..4).map(move |j| [top[j], r(top[j], bottom[j])[i]][1])).collect();
    for (a, b) in y.iter().zip(&want) {
        assert!((a - b).abs() < 1e-6, "{y:?} vs {want:?}");
    }
    // Same size is the identity.
    let same = resize_bilinear_forward(&x, 2, 2).unwrap().to_vec().unwrap();
    assert_eq!(same, x.to_vec().unwrap());
}

#[test]
fn samples_npz_reads_as_rgb() {
    let dir = std::env::temp_dir().join(format!("ddpm-cuda-eval-npz-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("gray.npz");
    let data: Vec<u8> = (0..2 * 3 * 4).map(|v| v as u8).collect();
    ddpm_cuda::report::save_npz_u8(&path, &data, [2, 3, 4, 1]).unwrap();
    let img = Images::read_npz(&path).unwrap();
    assert_eq!((img.n, img.height, img.width), (2, 3, 4));
    assert_eq!(&img.pixels[..6], &[0, 0, 0, 1, 1, 1]);
    let err = Images::read_npz(&fixture("fid_stats2.npz")).err().unwrap().to_string();
    assert!(err.contains("arr_0"), "{err}");
    std::fs::remove_dir_all(dir).ok();
}
