use ddpm_cuda::ops::embedding::timestep_embedding;

/// The closed form in f64: [sin(t·f_i)]_i ++ [cos(t·f_i)]_i with f_i = 10000^(−i/(half−1)).
fn closed_form(t: f64, dim: usize) -> Vec<f64> {
    let half = dim / 2;
    let f = |i: usize| 10000f64.powf(-(i as f64) / (half - 1) as f64);
    let mut row: Vec<f64> = (0..half).map(|i| (t * f(i)).sin()).collect();
    row.extend((0..half).map(|i| (t * f(i)).cos()));
    row.resize(dim, 0.0);
    row
}

#[test]
fn embedding_matches_closed_form() {
    let ts = [0.0f32, 1.0, 999.0];
    for dim in [8, 128, 9] {
        let e = timestep_embedding(&ts, dim).unwrap();
        assert_eq!(e.shape(), &[3, dim]);
        let e = e.to_vec().unwrap();
        for (n, &t) in ts.iter().enumerate() {
            for (j, want) in closed_form(t as f64, dim).iter().enumerate() {
                let got = e[n * dim + j] as f64;
                assert!((got - want).abs() <= 1e-6, "t={t} dim={dim} col {j}: {got} vs {want}");
            }
        }
    }
}

#[test]
fn embedding_hand_values() {
    // dim 8: half 4, frequencies 1, 10^(−4/3), 10^(−8/3), 10^(−4).
    let e = timestep_embedding(&[0.0, 1.0], 8).unwrap().to_vec().unwrap();
    assert_eq!(&e[..8], &[0.0, 0.0, 0.0, 0.0, 1.0, 1.0, 1.0, 1.0], "t = 0: sin 0 = 0, cos 0 = 1");
    let want = [
        0.841_470_984_807_896_5, // sin 1
        0.046_399_223_464_731_26,
        0.002_154_433_023_365_602_7,
        9.999_999_983_333_325e-5,
        0.540_302_305_868_139_8, // cos 1
        0.998_922_976_040_630_4,
        0.999_997_679_206_480_9,
        0.999_999_995,
    ];
    for (j, w) in want.iter().enumerate() {
        assert!((e[8 + j] as f64 - w).abs() < 1e-7, "col {j}: {} vs {w}", e[8 + j]);
    }
    // Odd dim: the dim-8 row plus one zero column.
    let odd = timestep_embedding(&[1.0], 9).unwrap().to_vec().unwrap();
    assert_eq!(&odd[..8], &e[8..]);
    assert_eq!(odd[8], 0.0);
}

#[test]
fn embedding_rejects_small_dim() {
    for dim in 0..4 {
        assert!(timestep_embedding(&[1.0], dim).is_err(), "dim {dim}");
    }
    assert!(timestep_embedding(&[1.0], 4).is_ok());
    assert_eq!(timestep_embedding(&[], 16).unwrap().shape(), &[0, 16]);
}
