//! conv2d's selftest cases: every conv of the cifar10 U-Net (or its reduced families), odd sizes, a general padding.

use super::{tc, Conv2dParams, Geom, Padding};
use crate::ops::conv2d;
use crate::bench::kernels::{rand, row, Row, Work};
use crate::selftest::bf16::{
    backend, bf16_result, f32_result, host_input, round_bf16, tol_bf16_out, tol_f32_sum, upload_bf16, upload_f32,
};
use crate::selftest::{case, expect_dtype, input, input_bf16, param_bf16, Case, Shapes, B, BF16_ROUND};
use crate::{DType, Device, Error, Result, Tape, Tensor, Var};

/// The benchmark rows (`ddpm-cuda bench kernels`): forward, data and weight gradient at a sample of the cifar10
/// U-Net's convs, (cin, cout, H = W, k, params).
pub(crate) fn benches(rows: &mut Vec<Row>, batch: usize) {
    let same = Conv2dParams::same;
    let down = Conv2dParams::tf_same_down();
    let shapes = [
        (3, 128, 32, 3, same(3)),
        (128, 128, 32, 3, same(3)),
        (128, 128, 32, 3, down),
        (256, 256, 16, 3, same(3)),
        (512, 256, 16, 3, same(3)),
        (256, 256, 8, 3, same(3)),
        (512, 256, 4, 3, same(3)),
        (384, 128, 32, 3, same(3)),
        (256, 256, 32, 3, same(3)),
        (128, 3, 32, 3, same(3)),
        (384, 128, 32, 1, same(1)),
        (256, 256, 16, 1, same(1)),
    ];
    for (cin, cout, hw, k, p) in shapes {
        let ho = (hw + p.padding.top + p.padding.bottom - k) / p.stride + 1;
        let flops = Work::Flops(2.0 * (batch * cout * ho * ho * cin * k * k) as f64);
        let shape = format!("{cin}→{cout} {k}x{k}{} @{hw}²", if p.stride == 2 { " s2" } else { "" });
        // x, w, bias and an output gradient of y's shape.
        let inputs = move |d: &Device| -> Result<[Tensor; 4]> {
            Ok([
                rand(&[batch, cin, hw, hw], 1, d)?,
                rand(&[cout, cin, k, k], 2, d)?,
                rand(&[cout], 3, d)?,
                rand(&[batch, cout, ho, ho], 4, d)?,
            ])
        };
        rows.push(row("conv2d fwd", shape.clone(), flops, move |d| {
            let [x, w, b, _] = inputs(d)?;
            Ok(Box::new(move || conv2d::forward(&x, &w, Some(&b), p).map(drop)))
        }));
        for (op, needs) in [("conv2d dgrad", [true, false, false]), ("conv2d wgrad", [false, true, false])] {
            rows.push(row(op, shape.clone(), flops, move |d| {
                let [x, w, _, gy] = inputs(d)?;
                Ok(Box::new(move || conv2d::backward(&x, &w, &gy, p, needs).map(drop)))
            }));
        }
        // The bf16 tensor-core kernels: each call is what the op's bf16 arm runs (the NCHW → NHWC transposes
        // included; the weight pack, once per step, not).
        for (op, pass) in [("conv2d fwd (bf16 tc)", 0), ("conv2d dgrad (bf16 tc)", 1), ("conv2d wgrad (bf16 tc)", 2)] {
            let row = row(op, shape.clone(), flops, move |d| {
                let Device::Cuda(be) = d else { return Err(Error::msg("the tensor-core kernels need a CUDA device")) };
                let tc = super::tc::TcConvBench::new(be, [batch, cin, hw, hw], [cout, cin, k, k], p)?;
                Ok(Box::new(move || match pass {
                    0 => tc.forward(),
                    1 => tc.backward_data(),
                    _ => tc.backward_weight(),
                }))
            });
            rows.push(row.cuda_only());
        }
    }
}

/// The op's selftest cases (`ddpm-cuda selftest`), CPU reference against the device.
pub(crate) fn cases(cases: &mut Vec<Case>, shapes: Shapes) {
    let same = Conv2dParams::same;
    let down = Conv2dParams::tf_same_down();
    // (cin, cout, H = W, k, params): every conv of the cifar10 U-Net, then odd sizes and a general padding.
    // Reduced: each family of those convs (3-channel input, 3×3 same, 3×3 stride-2 TF-same, the concat inputs of
    // 1.5× and 2× channels, 1×1 skips, the 3-channel output) at fewer channels and pixels, with partial M, N and K
    // tiles, several tiles per dimension, and weight-gradient reductions both split and not.
    let reduced: Vec<(usize, usize, usize, usize, Conv2dParams)> = vec![
        (3, 32, 16, 3, same(3)),
        (32, 32, 16, 3, same(3)),
        (32, 32, 16, 3, down),
        (32, 80, 8, 3, same(3)),
        (80, 80, 8, 3, down),
        (160, 80, 4, 3, same(3)),
        (120, 80, 8, 3, same(3)),
        (96, 32, 16, 3, same(3)),
        (32, 3, 16, 3, same(3)),
        (32, 80, 8, 1, same(1)),
        (160, 80, 4, 1, same(1)),
        (96, 32, 16, 1, same(1)),
    ];
    let full: Vec<(usize, usize, usize, usize, Conv2dParams)> = vec![
        (3, 128, 32, 3, same(3)),
        (128, 128, 32, 3, same(3)),
        (128, 128, 32, 3, down),
        (128, 256, 16, 3, same(3)),
        (256, 256, 16, 3, same(3)),
        (256, 256, 16, 3, down),
        (256, 256, 8, 3, same(3)),
        (256, 256, 8, 3, down),
        (256, 256, 4, 3, same(3)),
        (512, 256, 4, 3, same(3)),
        (512, 256, 8, 3, same(3)),
        (512, 256, 16, 3, same(3)),
        (384, 256, 16, 3, same(3)),
        (256, 256, 32, 3, same(3)),
        (384, 128, 32, 3, same(3)),
        (256, 128, 32, 3, same(3)),
        (128, 3, 32, 3, same(3)),
        (128, 256, 16, 1, same(1)),
        (256, 256, 16, 1, same(1)),
        (512, 256, 4, 1, same(1)),
        (512, 256, 8, 1, same(1)),
        (512, 256, 16, 1, same(1)),
        (384, 256, 16, 1, same(1)),
        (384, 128, 32, 1, same(1)),
        (256, 128, 32, 1, same(1)),
    ];
    let unet = if shapes == Shapes::Full { full } else { reduced };
    for &(cin, cout, hw, k, p) in &unet {
        push_conv(cases, [B, cin, hw, hw], [cout, cin, k, k], p);
    }
    push_conv(cases, [3, 6, 5, 7], [5, 6, 3, 3], same(3));
    push_conv(cases, [3, 6, 5, 7], [5, 6, 3, 3], down);
    let odd = Conv2dParams { stride: 3, padding: Padding { top: 2, bottom: 1, left: 0, right: 3 } };
    push_conv(cases, [3, 6, 11, 9], [70, 6, 5, 4], odd);

    // The bf16 tensor-core kernels (tc.rs) at the same shapes, the epilogue options taking turns (every option on
    // every family across the list); the odd shapes take the element-wise load paths (channels not a multiple of
    // 8) and partial tiles in every dimension.
    let mut tc_shapes: Vec<([usize; 4], [usize; 4], Conv2dParams)> =
        unet.iter().map(|&(cin, cout, hw, k, p)| ([B, cin, hw, hw], [cout, cin, k, k], p)).collect();
    tc_shapes.push(([3, 6, 5, 7], [5, 6, 3, 3], same(3)));
    tc_shapes.push(([3, 6, 5, 7], [5, 6, 3, 3], down));
    tc_shapes.push(([3, 6, 11, 9], [70, 6, 5, 4], odd));
    // The input gradient's stride phases (ih mod s, iw mod s, each reducing over its own taps): stride 2 with odd
    // and even sizes (phases of different pixel counts, several tiles per phase, blocks past a smaller phase's
    // pixels), Cout a multiple of 8 but not of 16 (mma k-steps across two taps), and stride 3 over a 2×2 kernel
    // (phases that no tap reaches: their dx is zero).
    let wide = Conv2dParams { stride: 3, padding: Padding { top: 1, bottom: 0, left: 0, right: 2 } };
    let phases = [
        ([2, 16, 7, 10], [24, 16, 3, 3], down),
        ([2, 16, 23, 21], [32, 16, 3, 3], down),
        ([1, 8, 8, 7], [16, 8, 2, 2], wide),
    ];
    tc_shapes.extend(phases);
    for (i, &(xs, ws, p)) in tc_shapes.iter().enumerate() {
        push_conv_tc(cases, xs, ws, p, Epilogue::ALL[i % 4], false);
    }
    // Exact cases: one per family (3-channel input, 3×3 stride-2, 1×1, 3-channel output) and the odd shape.
    let exact: Vec<([usize; 4], [usize; 4], Conv2dParams)> = if shapes == Shapes::Full {
        vec![
            ([B, 3, 32, 32], [128, 3, 3, 3], same(3)),
            ([B, 128, 32, 32], [128, 128, 3, 3], down),
            ([B, 384, 32, 32], [128, 384, 1, 1], same(1)),
            ([B, 128, 32, 32], [3, 128, 3, 3], same(3)),
        ]
    } else {
        vec![
            ([B, 3, 16, 16], [32, 3, 3, 3], same(3)),
            ([B, 32, 16, 16], [32, 32, 3, 3], down),
            ([B, 32, 8, 8], [80, 32, 1, 1], same(1)),
            ([B, 32, 16, 16], [3, 32, 3, 3], same(3)),
        ]
    };
    for (xs, ws, p) in exact.into_iter().chain([([3, 6, 5, 7], [5, 6, 3, 3], down)]).chain(phases) {
        push_conv_tc(cases, xs, ws, p, Epilogue::ALL[3], true);
    }
    // The Var-level fused op (`conv2d_fused`, the ResBlock's convs and the attention output projection): every
    // combination of the epilogue operands on a shape of element-wise loads (3 and 6 channels) and on one of 16-byte
    // loads with partial tiles in M (72 pixels), N (72 channels: 64 + 8) and K (360 = 11¼ steps); then the U-Net's
    // own uses (conv1 + b + time embedding, conv2 and the 1×1 projection + b + residual); exact cases on both load
    // paths.
    let odd_s = ([3, 6, 5, 7], [5, 6, 3, 3], same(3));
    let edge = ([2, 40, 6, 6], [72, 40, 3, 3], same(3));
    for (xs, ws, p) in [odd_s, edge] {
        for ep in Epilogue::EVERY {
            push_conv_fused(cases, xs, ws, p, ep, false);
        }
    }
    let (conv1, conv2) = (Epilogue::ALL[2], Epilogue { bias: true, add_nc: false, residual: true });
    let resblock: Vec<([usize; 4], [usize; 4], Epilogue)> = match shapes {
        Shapes::Full => vec![
            ([B, 128, 32, 32], [128, 128, 3, 3], conv1),
            ([B, 384, 16, 16], [256, 384, 3, 3], conv1),
            ([B, 256, 16, 16], [256, 256, 3, 3], conv2),
            ([B, 256, 16, 16], [256, 256, 1, 1], conv2),
        ],
        Shapes::Reduced => vec![
            ([B, 32, 16, 16], [32, 32, 3, 3], conv1),
            ([B, 32, 8, 8], [80, 32, 3, 3], conv1),
            ([B, 80, 8, 8], [80, 80, 3, 3], conv2),
            ([B, 80, 8, 8], [80, 80, 1, 1], conv2),
        ],
    };
    for &(xs, ws, ep) in &resblock {
        push_conv_fused(cases, xs, ws, same(ws[2]), ep, false);
    }
    let all = Epilogue::ALL[3];
    for (xs, ws, p) in [odd_s, edge, (resblock[1].0, resblock[1].1, same(3))] {
        push_conv_fused(cases, xs, ws, p, all, true);
    }

    // bf16 arm, one shape per conv family of the U-Net (3-channel in and out, 3×3 same, stride-2, 1×1 skip).
    let bf16: Vec<([usize; 4], [usize; 4], Conv2dParams)> = match shapes {
        Shapes::Full => vec![
            ([B, 3, 32, 32], [128, 3, 3, 3], same(3)),
            ([B, 128, 32, 32], [128, 128, 3, 3], same(3)),
            ([B, 128, 32, 32], [128, 128, 3, 3], down),
            ([B, 384, 16, 16], [256, 384, 1, 1], same(1)),
            ([B, 128, 32, 32], [3, 128, 3, 3], same(3)),
        ],
        Shapes::Reduced => vec![
            ([B, 3, 16, 16], [32, 3, 3, 3], same(3)),
            ([B, 32, 16, 16], [32, 32, 3, 3], same(3)),
            ([B, 80, 8, 8], [80, 80, 3, 3], down),
            ([B, 96, 16, 16], [32, 96, 1, 1], same(1)),
            ([B, 32, 16, 16], [3, 32, 3, 3], same(3)),
        ],
    };
    for (xs, ws, p) in bf16 {
        push_conv_bf16(cases, xs, ws, p);
    }
}

/// bf16 x and dy, the f32 weight rounded to bf16 by the op (the CPU reference gets the rounded weight): the f32
/// cases' accumulation (1e-4) plus one rounding of y and dx (2⁻⁹); dW and db are f32.
fn push_conv_bf16(cases: &mut Vec<Case>, xs: [usize; 4], ws: [usize; 4], p: Conv2dParams) {
    let stride = if p.stride == 1 { String::new() } else { format!(" s{}", p.stride) };
    cases.push(case(
        "conv2d fwd+bwd bf16",
        format!("{:?}*{}x{}{}", xs, ws[0], ws[2], stride),
        BF16_ROUND + 1e-4,
        Box::new(move |d| {
            let x = input_bf16(&xs, 1, d)?;
            let w = param_bf16(&input(&ws, 2, &Device::Cpu)?, d)?;
            let b = input(&[ws[0]], 3, d)?;
            let y = expect_dtype(conv2d::forward(&x, &w, Some(&b), p)?, DType::Bf16)?;
            let gy = input_bf16(y.shape(), 4, d)?;
            let g = conv2d::backward(&x, &w, &gy, p, [true; 3])?;
            let dx = expect_dtype(g.dx.expect("dx"), DType::Bf16)?;
            let dw = expect_dtype(g.dw.expect("dw"), DType::F32)?;
            Ok(vec![y, dx, dw, expect_dtype(g.db.expect("db"), DType::F32)?])
        }),
    ));
}

fn push_conv(cases: &mut Vec<Case>, xs: [usize; 4], ws: [usize; 4], p: Conv2dParams) {
    let stride = if p.stride == 1 { String::new() } else { format!(" s{}", p.stride) };
    let shape = format!("{:?}*{}x{}{}", xs, ws[0], ws[2], stride);
    cases.push(case(
        "conv2d fwd",
        shape.clone(),
        1e-4,
        Box::new(move |d| {
            let (x, w, b) = (input(&xs, 1, d)?, input(&ws, 2, d)?, input(&[ws[0]], 3, d)?);
            Ok(vec![conv2d::forward(&x, &w, Some(&b), p)?])
        }),
    ));
    cases.push(case(
        "conv2d bwd (dx dw db)",
        shape,
        1e-4,
        Box::new(move |d| {
            let (x, w) = (input(&xs, 1, d)?, input(&ws, 2, d)?);
            let y_shape = conv2d::forward(&x, &w, None, p)?.shape().to_vec();
            let gy = input(&y_shape, 4, d)?;
            let g = conv2d::backward(&x, &w, &gy, p, [true; 3])?;
            Ok(vec![g.dx.expect("dx"), g.dw.expect("dw"), g.db.expect("db")])
        }),
    ));
}

/// Which of the forward's fused epilogue operands a tensor-core case passes.
#[derive(Clone, Copy, Debug)]
struct Epilogue {
    bias: bool,
    add_nc: bool,
    residual: bool,
}

impl Epilogue {
    const ALL: [Epilogue; 4] = [
        Epilogue { bias: false, add_nc: false, residual: false },
        Epilogue { bias: true, add_nc: false, residual: false },
        Epilogue { bias: true, add_nc: true, residual: false },
        Epilogue { bias: true, add_nc: true, residual: true },
    ];

    /// Every combination of the three operands.
    const EVERY: [Epilogue; 8] = {
        let mut every = [Epilogue { bias: false, add_nc: false, residual: false }; 8];
        let mut i = 0;
        while i < 8 {
            every[i] = Epilogue { bias: i & 1 != 0, add_nc: i & 2 != 0, residual: i & 4 != 0 };
            i += 1;
        }
        every
    };

    fn name(&self) -> String {
        let mut s = String::new();
        for (on, n) in [(self.bias, "+b"), (self.add_nc, "+t"), (self.residual, "+r")] {
            if on {
                s.push_str(n);
            }
        }
        s
    }
}

/// The bf16 tensor-core conv against the f32 CPU reference on the bf16-rounded inputs (tolerances derived in
/// selftest/bf16.rs), or (`exact`) on small-integer inputs, where it must match bit for bit: forward with the
/// epilogue `ep`, input gradient, weight and bias gradients (split or not, as the device's SM count makes it) and
/// the gradient of the fused per-(image, channel) add.
fn push_conv_tc(cases: &mut Vec<Case>, xs: [usize; 4], ws: [usize; 4], p: Conv2dParams, ep: Epilogue, exact: bool) {
    let stride = if p.stride == 1 { String::new() } else { format!(" s{}", p.stride) };
    let shape = format!("{:?}*{}x{}{}", xs, ws[0], ws[2], stride);
    let g = Geom::new(&xs, &ws, None, p).expect("a valid case geometry");
    let ys = g.out_shape();
    let (n, cout) = (xs[0], ws[0]);
    let (k_fwd, k_dgrad, r) = (g.k(), cout * ws[2] * ws[3], g.n * g.p());
    let kind = if exact { "conv2d tc exact" } else { "conv2d tc" };
    // Exact: the reference (exact in f32) rounded once to bf16, as the kernel rounds its exact f32 sum.
    let out_bf16 = move |v: Vec<f32>| if exact { round_bf16(&v) } else { v };
    let tol = |t: f32| if exact { 0.0 } else { t };

    cases.push(case(
        format!("{kind} fwd{}", ep.name()),
        shape.clone(),
        tol(tol_bf16_out(k_fwd + 3)),
        Box::new(move |d| {
            let x = host_input(&xs, 1, exact)?;
            let w = host_input(&ws, 2, exact)?;
            let bias = host_input(&[cout], 3, exact)?;
            let add_nc = host_input(&[n, cout], 5, exact)?;
            let res = host_input(&ys, 6, exact)?;
            if d.is_cpu() {
                let b = ep.bias.then(|| Tensor::from_vec(bias.clone(), &[cout])).transpose()?;
                let xt = Tensor::from_vec(x, &xs)?;
                let mut y = conv2d::forward(&xt, &Tensor::from_vec(w, &ws)?, b.as_ref(), p)?.to_vec()?;
                let plane = g.p();
                for (i, v) in y.iter_mut().enumerate() {
                    let nc = i / plane;
                    if ep.add_nc {
                        *v += add_nc[nc];
                    }
                    if ep.residual {
                        *v += res[i];
                    }
                }
                return Tensor::from_vec(out_bf16(y), &ys).map(|t| vec![t]);
            }
            let be = backend(d, "conv2d tc")?;
            let wp = tc::pack_weight_bf16(&be, &upload_f32(&be, &w)?, &g)?;
            let (bias, add_nc) = (upload_f32(&be, &bias)?, upload_f32(&be, &add_nc)?);
            let res = upload_bf16(&be, &res)?;
            let y = tc::forward_bf16(
                &be,
                &g,
                &upload_bf16(&be, &x)?,
                &wp,
                ep.bias.then_some(&bias),
                ep.add_nc.then_some(&add_nc),
                ep.residual.then_some(&res),
            )?;
            Ok(vec![bf16_result(&be, &y, &ys)?])
        }),
    ));
    cases.push(case(
        format!("{kind} dgrad"),
        shape.clone(),
        tol(tol_bf16_out(k_dgrad)),
        Box::new(move |d| {
            let w = host_input(&ws, 2, exact)?;
            let gy = host_input(&ys, 4, exact)?;
            if d.is_cpu() {
                let x = Tensor::zeros(&xs, &Device::Cpu)?;
                let (w, gy) = (Tensor::from_vec(w, &ws)?, Tensor::from_vec(gy, &ys)?);
                let dx = conv2d::backward(&x, &w, &gy, p, [true, false, false])?.dx.expect("dx").to_vec()?;
                return Tensor::from_vec(out_bf16(dx), &xs).map(|t| vec![t]);
            }
            let be = backend(d, "conv2d tc")?;
            let wp = tc::pack_weight_bf16(&be, &upload_f32(&be, &w)?, &g)?;
            let dx = tc::backward_data_bf16(&be, &g, &upload_bf16(&be, &gy)?, &wp)?;
            Ok(vec![bf16_result(&be, &dx, &xs)?])
        }),
    ));
    cases.push(case(
        format!("{kind} wgrad (dw db dt)"),
        shape,
        tol(tol_f32_sum(r)),
        Box::new(move |d| {
            let x = host_input(&xs, 1, exact)?;
            let gy = host_input(&ys, 4, exact)?;
            if d.is_cpu() {
                let w = Tensor::zeros(&ws, &Device::Cpu)?;
                let (x, gy) = (Tensor::from_vec(x, &xs)?, Tensor::from_vec(gy, &ys)?);
                let gr = conv2d::backward(&x, &w, &gy, p, [false, true, true])?;
                // d(add_nc)[n, c] = Σ_p gy[n, c, p].
                let dt = crate::ops::elementwise::reduce_to_shape(&gy, &[n, cout, 1, 1])?.reshape(&[n, cout])?;
                return Ok(vec![gr.dw.expect("dw"), gr.db.expect("db"), dt]);
            }
            let be = backend(d, "conv2d tc")?;
            let gy = upload_bf16(&be, &gy)?;
            let (dw, db) = tc::backward_weight_bf16(&be, &g, &upload_bf16(&be, &x)?, &gy)?;
            let dt = tc::add_nc_grad_bf16(&be, &g, &gy)?;
            Ok(vec![f32_result(&be, dw, &ws)?, f32_result(&be, db, &[cout])?, f32_result(&be, dt, &[n, cout])?])
        }),
    ));
}

/// `conv2d_fused` on vars through the tape, bf16 on the device against the f32 CPU reference (the unfused ops, on
/// the same bf16-rounded values), or (`exact`) on small integers, bit for bit: y (bf16), then the gradients dx
/// (bf16), dW (f32) and those of the operands `ep` passes: db, d add_nc (f32), d residual (bf16, = dy).
///
/// Tolerance (selftest/bf16.rs): the largest of its outputs' — y sums K = Cin·kh·kw products and the three
/// operands, then is rounded (`tol_bf16_out(K + 3)`); dx sums Cout·kh·kw products, rounded; dW and db sum N·Ho·Wo
/// terms, d add_nc Ho·Wo (f32, `tol_f32_sum`); d residual is dy copied (exact).
fn push_conv_fused(cases: &mut Vec<Case>, xs: [usize; 4], ws: [usize; 4], p: Conv2dParams, ep: Epilogue, exact: bool) {
    let stride = if p.stride == 1 { String::new() } else { format!(" s{}", p.stride) };
    let shape = format!("{:?}*{}x{}{}", xs, ws[0], ws[2], stride);
    let g = Geom::new(&xs, &ws, None, p).expect("a valid case geometry");
    let ys = g.out_shape();
    let (n, cout) = (xs[0], ws[0]);
    let tol = if exact {
        0.0
    } else {
        let sums = tol_f32_sum(g.n * g.p());
        tol_bf16_out(g.k() + 3).max(tol_bf16_out(cout * ws[2] * ws[3])).max(sums)
    };
    let kind = if exact { "conv2d fused exact" } else { "conv2d fused bf16" };
    cases.push(case(
        format!("{kind} fwd+bwd{}", ep.name()),
        shape,
        tol,
        Box::new(move |d| {
            let host = |shape: &[usize], seed: u32| -> Result<Tensor> {
                Tensor::from_vec(host_input(shape, seed, exact)?, shape)?.to_device(d)
            };
            // Activations (x, the residual, dy) bf16 on the device; the weight, bias and add_nc f32.
            let act = |shape: &[usize], seed: u32| -> Result<Tensor> {
                let t = host(shape, seed)?;
                if d.is_cpu() {
                    Ok(t)
                } else {
                    t.to_dtype(DType::Bf16)
                }
            };
            let tape = Tape::new();
            let x = tape.leaf(act(&xs, 1)?);
            let w = tape.leaf(host(&ws, 2)?);
            let b = tape.leaf(host(&[cout], 3)?);
            let add_nc = tape.leaf(host(&[n, cout], 5)?);
            let res = tape.leaf(act(&ys, 6)?);
            let y = conv2d::conv2d_fused(
                &x,
                &w,
                ep.bias.then_some(&b),
                ep.add_nc.then_some(&add_nc),
                ep.residual.then_some(&res),
                p,
            )?;
            let mut grads = tape.backward_with(&y, act(&ys, 4)?)?;
            let mut grad = |v: &Var, dtype: DType| -> Result<Tensor> {
                let g = grads.take(v).ok_or_else(|| Error::msg("conv2d fused: a gradient is missing"))?;
                expect_dtype(g, dtype)
            };
            // Exact: the CPU's exact f32 results rounded once to bf16 where the device's output is bf16.
            let rounded = |t: Tensor| -> Result<Tensor> {
                if exact && d.is_cpu() {
                    Tensor::from_vec(round_bf16(&t.to_vec()?), t.shape())
                } else {
                    Ok(t)
                }
            };
            let mut out = vec![rounded(expect_dtype(y.into_value(), DType::Bf16)?)?];
            out.push(rounded(grad(&x, DType::Bf16)?)?);
            out.push(grad(&w, DType::F32)?);
            let (wide, narrow) = (DType::F32, DType::Bf16);
            for (on, v, dtype) in [(ep.bias, &b, wide), (ep.add_nc, &add_nc, wide), (ep.residual, &res, narrow)] {
                if on {
                    out.push(grad(v, dtype)?);
                }
            }
            Ok(out)
        }),
    ));
}
