use ddpm_cuda::optim::{clip_grad_norm, warmup_lr, Adam, AdamConfig, Ema};
use ddpm_cuda::Tensor;

fn t(v: &[f32]) -> Tensor {
    Tensor::from_vec(v.to_vec(), &[v.len()]).unwrap()
}

const P0: [f64; 3] = [0.5, -1.0, 2.0];
/// Per-step gradients; element 2 is tiny so ε (added after √v̂) visibly matters.
const GRADS: [[f64; 3]; 3] = [[0.3, -2.0, 1e-3], [-0.1, 1.5, 2e-3], [0.4, -0.5, -1e-3]];
const LRS: [f64; 3] = [0.1, 0.05, 0.02];

/// Adam / AdamW written out in f64 from the PyTorch documentation's algorithm box.
fn reference_adam(wd: f64, decoupled: bool, eps: f64) -> ([f64; 3], [f64; 3]) {
    let (b1, b2) = (0.9f64, 0.999f64);
    let (mut p, mut m, mut v) = (P0, [0.0; 3], [0.0; 3]);
    for (step, (g, lr)) in GRADS.iter().zip(LRS).enumerate() {
        let t = (step + 1) as i32;
        for i in 0..3 {
            let mut gi = g[i];
            if decoupled {
                p[i] -= lr * wd * p[i];
            } else {
                gi += wd * p[i];
            }
            m[i] = b1 * m[i] + (1.0 - b1) * gi;
            v[i] = b2 * v[i] + (1.0 - b2) * gi * gi;
            let m_hat = m[i] / (1.0 - b1.powi(t));
            let v_hat = v[i] / (1.0 - b2.powi(t));
            p[i] -= lr * m_hat / (v_hat.sqrt() + eps);
        }
    }
    (p, m)
}

fn run_adam(config: AdamConfig, steps: usize) -> (Vec<Tensor>, Adam) {
    let mut params = vec![t(&P0.map(|x| x as f32))];
    let mut adam = Adam::new(config, &params).unwrap();
    for (g, lr) in GRADS.iter().zip(LRS).take(steps) {
        adam.step(&mut params, &[t(&g.map(|x| x as f32))], lr as f32).unwrap();
    }
    (params, adam)
}

#[test]
fn adam_and_adamw_match_written_out_formulas() {
    for (wd, decoupled) in [(0.0, false), (0.1, false), (0.1, true)] {
        let eps = 1e-3;
        let config = AdamConfig { eps: eps as f32, weight_decay: wd as f32, decoupled, ..AdamConfig::default() };
        let (params, adam) = run_adam(config, 3);
        let (want_p, want_m) = reference_adam(wd, decoupled, eps);
        let got = params[0].to_vec().unwrap();
        for i in 0..3 {
            assert!(
                (got[i] as f64 - want_p[i]).abs() < 2e-6,
                "wd={wd} decoupled={decoupled} p[{i}]: {} vs {}",
                got[i],
                want_p[i]
            );
        }
        let (m, _, steps) = adam.state();
        assert_eq!(steps, 3);
        for (i, mi) in m[0].to_vec().unwrap().iter().enumerate() {
            assert!((*mi as f64 - want_m[i]).abs() < 1e-6);
        }
    }
    // The three variants really differ (the test would catch a decay applied the wrong way).
    let a = reference_adam(0.1, false, 1e-3).0;
    let w = reference_adam(0.1, true, 1e-3).0;
    assert!((a[0] - w[0]).abs() > 1e-4);
}

#[test]
fn adam_resumes_exactly_from_state() {
    let config = AdamConfig { weight_decay: 0.01, decoupled: true, ..AdamConfig::default() };
    let (full, _) = run_adam(config, 3);
    let (mut params, adam) = run_adam(config, 2);
    let (m, v, step) = adam.state();
    let mut resumed = Adam::from_state(config, m.to_vec(), v.to_vec(), step).unwrap();
    resumed.step(&mut params, &[t(&GRADS[2].map(|x| x as f32))], LRS[2] as f32).unwrap();
    assert_eq!(params[0].to_vec().unwrap(), full[0].to_vec().unwrap());
}

#[test]
fn adam_rejects_mismatched_lists_without_changing_state() {
    let mut params = vec![t(&[1.0, 2.0]), t(&[3.0])];
    let mut adam = Adam::new(AdamConfig::default(), &params).unwrap();
    assert!(adam.step(&mut params, &[t(&[1.0, 1.0])], 0.1).is_err());
    assert!(adam.step(&mut params, &[t(&[1.0, 1.0]), t(&[1.0, 1.0])], 0.1).is_err());
    assert_eq!(adam.state().2, 0);
    assert_eq!(params[0].to_vec().unwrap(), vec![1.0, 2.0]);
}

#[test]
fn clip_grad_norm_scales_only_above_threshold() {
    // Global norm over both tensors: sqrt(9 + 16 + 144) = 13.
    let mut grads = vec![t(&[3.0, 4.0]), t(&[12.0])];
    let norm = clip_grad_norm(&mut grads, 26.0).unwrap();
    assert!((norm - 13.0).abs() < 1e-6);
    assert_eq!(grads[0].to_vec().unwrap(), vec![3.0, 4.0]);
    assert_eq!(grads[1].to_vec().unwrap(), vec![12.0]);

    let norm = clip_grad_norm(&mut grads, 6.5).unwrap();
    assert!((norm - 13.0).abs() < 1e-6, "returns the pre-clip norm");
    let coef = 6.5 / (13.0 + 1e-6);
    let flat: Vec<f32> = grads.iter().flat_map(|g| g.to_vec().unwrap()).collect();
    for (got, orig) in flat.iter().zip([3.0f64, 4.0, 12.0]) {
        assert!((*got as f64 - orig * coef).abs() < 1e-6);
    }
    let new_norm: f64 = flat.iter().map(|&x| (x as f64).powi(2)).sum::<f64>().sqrt();
    assert!((new_norm - 6.5).abs() < 1e-5);
}

#[test]
fn clip_grad_norm_leaves_nonfinite_grads_and_rejects_bad_max() {
    let mut grads = vec![t(&[f32::INFINITY, 1.0])];
    assert!(clip_grad_norm(&mut grads, 1.0).unwrap().is_infinite());
    assert_eq!(grads[0].to_vec().unwrap(), vec![f32::INFINITY, 1.0]);
    assert!(clip_grad_norm(&mut grads, 0.0).is_err());
    assert!(clip_grad_norm(&mut grads, f32::NAN).is_err());
}

#[test]
fn warmup_is_linear_from_zero_then_flat() {
    let (lr, w) = (2e-4f32, 5000u64);
    assert_eq!(warmup_lr(0, lr, w), 0.0);
    assert!((warmup_lr(1, lr, w) - 2e-4 / 5000.0).abs() < 1e-12);
    assert!((warmup_lr(w / 2, lr, w) - 1e-4).abs() < 1e-10);
    assert_eq!(warmup_lr(w, lr, w), lr);
    assert_eq!(warmup_lr(2 * w, lr, w), lr);
    assert_eq!(warmup_lr(0, lr, 0), lr, "no warm-up");
}

#[test]
fn ema_matches_closed_form_after_three_updates() {
    let d = 0.9f64;
    let s0 = [1.0f64, -2.0];
    let ps = [[0.5f64, 0.0], [2.0, 1.0], [-1.0, 3.0]];
    let params0 = vec![t(&s0.map(|x| x as f32))];
    let mut ema = Ema::new(&params0, d as f32).unwrap();
    for p in &ps {
        ema.update(&[t(&p.map(|x| x as f32))]).unwrap();
    }
    // s3 = d³ s0 + (1 − d)(d² p1 + d p2 + p3)
    let got = ema.shadow()[0].to_vec().unwrap();
    for i in 0..2 {
        let want = d.powi(3) * s0[i] + (1.0 - d) * (d * d * ps[0][i] + d * ps[1][i] + ps[2][i]);
        assert!((got[i] as f64 - want).abs() < 1e-6, "shadow[{i}]: {} vs {want}", got[i]);
    }
    // The shadow started as a shared copy of the parameters: updating it must not write through.
    assert_eq!(params0[0].to_vec().unwrap(), vec![1.0, -2.0]);
    assert!(ema.update(&[t(&[1.0])]).is_err());
    assert!(Ema::new(&params0, 1.5).is_err());
}
