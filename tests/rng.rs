use ddpm_cuda::rng::{philox4x32_10, uniform_from_u32, Philox};

/// Random123 `tests/kat_vectors`, the three `philox4x32 10` lines: counter[4] key[2] → result[4].
#[test]
fn philox_matches_random123_known_answers() {
    let cases: [([u32; 4], [u32; 2], [u32; 4]); 3] = [
        ([0, 0, 0, 0], [0, 0], [0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8]),
        ([u32::MAX; 4], [u32::MAX; 2], [0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd]),
        (
            [0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344],
            [0xa4093822, 0x299f31d0],
            [0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1],
        ),
    ];
    for (ctr, key, want) in cases {
        assert_eq!(philox4x32_10(ctr, key), want, "ctr {ctr:08x?} key {key:08x?}");
    }
}

/// The stream layout: element e of draw `offset` is word e%4 of block e/4 with counter [i, 0, offset_lo, offset_hi].
#[test]
fn uniform_stream_uses_documented_counter_layout() {
    let seed = 0x0123_4567_89ab_cdef_u64;
    let offset = 0x0000_0002_0000_0005_u64;
    let mut rng = Philox::from_state(seed, offset);
    let u = rng.uniform(10);
    let key = [0x89ab_cdef, 0x0123_4567];
    for (e, got) in u.iter().enumerate() {
        let w = philox4x32_10([(e / 4) as u32, 0, 5, 2], key)[e % 4];
        let want = ((w >> 8) as f64 + 1.0) / 16_777_216.0;
        assert_eq!(*got as f64, want, "element {e}");
    }
    assert_eq!(rng.offset(), offset + 1);
}

#[test]
fn uniform_conversion_covers_half_open_interval_exactly() {
    assert_eq!(uniform_from_u32(0), 1.0 / 16_777_216.0);
    assert_eq!(uniform_from_u32(u32::MAX), 1.0);
    assert_eq!(uniform_from_u32(0x8000_0000), 0.5 + 1.0 / 16_777_216.0);
    let u = Philox::new(3).uniform(1 << 20);
    assert!(u.iter().all(|&x| x > 0.0 && x <= 1.0));
    let mean: f64 = u.iter().map(|&x| x as f64).sum::<f64>() / u.len() as f64;
    assert!((mean - 0.5).abs() < 0.002, "uniform mean {mean}");
}

#[test]
fn normals_have_unit_moments_and_gaussian_tails() {
    let n = 1_000_000;
    let z = Philox::new(42).normal(n);
    let mean = z.iter().map(|&x| x as f64).sum::<f64>() / n as f64;
    let var = z.iter().map(|&x| (x as f64 - mean).powi(2)).sum::<f64>() / n as f64;
    let beyond3 = z.iter().filter(|x| x.abs() > 3.0).count() as f64 / n as f64;
    let beyond1 = z.iter().filter(|x| x.abs() > 1.0).count() as f64 / n as f64;
    assert!(mean.abs() < 0.005, "mean {mean}");
    assert!((var - 1.0).abs() < 0.01, "var {var}");
    // P(|Z| > 3) = 0.0027 (sd of the estimate ≈ 5e-5); P(|Z| > 1) = 0.3173.
    assert!((beyond3 - 0.0027).abs() < 0.0004, "fraction beyond 3 sigma {beyond3}");
    assert!((beyond1 - 0.3173).abs() < 0.003, "fraction beyond 1 sigma {beyond1}");
    assert!(z.iter().all(|x| x.is_finite()));
}

/// Normals are Box–Muller of the stream's uniforms, pairwise, computed here in f64.
#[test]
fn normals_are_box_muller_of_the_uniform_stream() {
    let u = Philox::from_state(9, 4).uniform(12);
    let z = Philox::from_state(9, 4).normal(12);
    for p in 0..6 {
        let (u1, u2) = (u[2 * p] as f64, u[2 * p + 1] as f64);
        let r = (-2.0 * u1.ln()).sqrt();
        let theta = std::f64::consts::TAU * u2;
        assert!((z[2 * p] as f64 - r * theta.cos()).abs() < 1e-5);
        assert!((z[2 * p + 1] as f64 - r * theta.sin()).abs() < 1e-5);
    }
}

#[test]
fn same_state_repeats_and_offset_changes_stream() {
    let mut a = Philox::new(7);
    let mut b = Philox::new(7);
    let (a0, b0) = (a.normal(1001), b.normal(1001));
    assert_eq!(a0, b0);
    let a1 = a.normal(1001);
    assert_ne!(a0, a1, "the next draw must differ");
    assert_eq!(a.offset(), 2);
    // Checkpoint/resume: (seed, offset) reproduces the draw exactly.
    let resumed = Philox::from_state(a.seed(), 1).normal(1001);
    assert_eq!(resumed, a1);
    // Another seed, another stream; a prefix of a draw is the shorter draw.
    assert_ne!(Philox::new(8).normal(1001), a0);
    assert_eq!(Philox::new(7).normal(5)[..], a0[..5]);
}

#[test]
fn normal_tensor_has_shape_and_stream_values() {
    let mut rng = Philox::new(11);
    let t = rng.normal_tensor(&[2, 3, 4, 5]).unwrap();
    assert_eq!(t.shape(), &[2, 3, 4, 5]);
    assert_eq!(t.to_vec().unwrap(), Philox::new(11).normal(120));
    let t2 = rng.normal_on(&[7], &ddpm_cuda::Device::Cpu).unwrap();
    assert_eq!(t2.to_vec().unwrap(), Philox::from_state(11, 1).normal(7));
}
