//! The U-Net: the paper's parameter count and diffusers names, shapes through the network, and the gradient of the
//! whole composition against finite differences.
mod common;
use common::*;
use ddpm_cuda::config::Config;
use ddpm_cuda::nn::unet::{UNet, UNetConfig};
use ddpm_cuda::nn::{Ctx, ParamStore};
use ddpm_cuda::ops::loss::mse;
use ddpm_cuda::rng::Philox;
use ddpm_cuda::{Tape, Tensor, Var};

#[test]
fn cifar10_preset_has_the_papers_parameter_count_and_diffusers_names() {
    let cfg = Config::preset("cifar10").unwrap();
    let mut store = ParamStore::new();
    UNet::new(&cfg.model, &mut store, &mut Philox::new(0)).unwrap();
    assert_eq!(store.num_scalars(), 35_746_307);
    let shape = |n: &str| store.get(store.find(n).unwrap_or_else(|| panic!("no {n}"))).shape().to_vec();
    assert_eq!(shape("conv_in.weight"), [128, 3, 3, 3]);
    assert_eq!(shape("time_embedding.linear_1.weight"), [512, 128]);
    assert_eq!(shape("down_blocks.1.attentions.1.to_q.weight"), [256, 256]);
    assert_eq!(shape("down_blocks.1.resnets.0.conv_shortcut.weight"), [256, 128, 1, 1]);
    assert_eq!(shape("down_blocks.2.downsamplers.0.conv.weight"), [256, 256, 3, 3]);
    assert_eq!(shape("mid_block.attentions.0.to_out.0.weight"), [256, 256]);
    assert_eq!(shape("up_blocks.0.resnets.0.conv1.weight"), [256, 512, 3, 3]);
    assert_eq!(shape("up_blocks.2.attentions.2.group_norm.weight"), [256]);
    assert_eq!(shape("up_blocks.3.resnets.2.conv_shortcut.weight"), [128, 256, 1, 1]);
    assert_eq!(shape("conv_out.weight"), [3, 128, 3, 3]);
    assert!(store.find("down_blocks.3.downsamplers.0.conv.weight").is_none(), "no downsampling at the last level");
    assert!(store.find("up_blocks.3.upsamplers.0.conv.weight").is_none(), "no upsampling at the top level");
}

#[test]
fn official_initialisation() {
    let cfg = Config::preset("cifar10").unwrap();
    let mut store = ParamStore::new();
    UNet::new(&cfg.model, &mut store, &mut Philox::new(3)).unwrap();
    let vals = |n: &str| store.get(store.find(n).unwrap()).to_vec().unwrap();
    // Residual-branch outputs use scale 1e-10: U(−l, l) with l = √(3e-10 / fan_avg), tiny but not all zero.
    let within = |n: &str, fan_in: f64, fan_out: f64| {
        let l = (3e-10 / ((fan_in + fan_out) / 2.0)).sqrt();
        let v = vals(n);
        assert!(v.iter().all(|&x| (x as f64).abs() <= l * 1.0001), "{n} exceeds {l}");
        assert!(v.iter().any(|&x| x != 0.0), "{n} is exactly zero");
    };
    within("conv_out.weight", 128.0 * 9.0, 3.0 * 9.0);
    within("down_blocks.0.resnets.0.conv2.weight", 128.0 * 9.0, 128.0 * 9.0);
    within("mid_block.attentions.0.to_out.0.weight", 256.0, 256.0);
    // Zero biases, unit GroupNorm scales.
    assert!(vals("conv_in.bias").iter().all(|&v| v == 0.0));
    assert!(vals("conv_norm_out.weight").iter().all(|&v| v == 1.0));
    // fan_avg uniform: conv1 of a 128→128 3×3 conv has limit √(3 / (128·9)), variance limit²/3.
    let w = vals("down_blocks.0.resnets.0.conv1.weight");
    let limit = (3.0f64 / (128.0 * 9.0)).sqrt();
    assert!(w.iter().all(|&v| (v as f64).abs() <= limit));
    let var = w.iter().map(|&v| (v as f64).powi(2)).sum::<f64>() / w.len() as f64;
    assert!((var / (limit * limit / 3.0) - 1.0).abs() < 0.02, "variance {var}");
}

fn micro() -> UNetConfig {
    UNetConfig {
        image_size: 8,
        in_channels: 2,
        ch: 8,
        ch_mult: vec![1, 2],
        num_res_blocks: 1,
        attn_resolutions: vec![4],
        dropout: 0.0,
        norm_groups: 4,
        norm_eps: 1e-6,
        downsample_padding: 0,
    }
}

#[test]
fn forward_keeps_the_image_shape_and_rejects_bad_inputs() {
    let mut store = ParamStore::new();
    let unet = UNet::new(&micro(), &mut store, &mut Philox::new(1)).unwrap();
    let cx = Ctx::no_grad(&store);
    let x = Var::constant(rand_tensor(&[3, 2, 8, 8], 1));
    assert_eq!(unet.forward(&cx, &x, &[0.0, 10.0, 999.0]).unwrap().shape(), &[3, 2, 8, 8]);
    assert!(unet.forward(&cx, &x, &[0.0]).is_err(), "one timestep per sample");
    assert!(unet.forward(&cx, &Var::constant(rand_tensor(&[1, 2, 6, 6], 1)), &[0.0]).is_err());
    let mut bad = micro();
    bad.norm_groups = 3;
    assert!(UNet::new(&bad, &mut ParamStore::new(), &mut Philox::new(1)).is_err());
}

#[test]
fn whole_unet_gradient_matches_finite_differences() {
    let mut store = ParamStore::new();
    let unet = UNet::new(&micro(), &mut store, &mut Philox::new(2)).unwrap();
    // Perturb every parameter so zero-initialised layers are not trivially right.
    let perturbed: Vec<Tensor> = store
        .tensors()
        .iter()
        .enumerate()
        .map(|(i, t)| {
            let noise = rand_vec(t.numel(), 100 + i as u64);
            let v = t.to_vec().unwrap().iter().zip(noise).map(|(a, b)| a + 0.2 * b).collect();
            Tensor::from_vec(v, t.shape()).unwrap()
        })
        .collect();
    store.set_tensors(perturbed).unwrap();
    let x = rand_tensor(&[2, 2, 8, 8], 3);
    let target = rand_tensor(&[2, 2, 8, 8], 4);
    let t = [3.0, 700.0];
    let loss_of = |s: &ParamStore| -> f64 {
        let cx = Ctx::no_grad(s);
        let y = unet.forward(&cx, &Var::constant(x.clone()), &t).unwrap();
        mse(&y, &Var::constant(target.clone())).unwrap().value().item().unwrap() as f64
    };
    let tape = Tape::new();
    let cx = Ctx::with_grad(&tape, &store, false, Philox::new(0));
    let y = unet.forward(&cx, &Var::constant(x.clone()), &t).unwrap();
    let loss = mse(&y, &Var::constant(target.clone())).unwrap();
    let grads = tape.backward(&loss).unwrap();
    let h = 1e-2f32;
    let mut checked = 0;
    for (pi, name) in store.names().to_vec().iter().enumerate() {
        let g = grads.get(&cx.param_vars()[pi]).unwrap_or_else(|| panic!("no gradient for {name}")).to_vec().unwrap();
        for j in [0, g.len() / 2, g.len() - 1] {
            let mut plus = store.clone();
            let mut minus = store.clone();
            plus.tensors_mut()[pi].cpu_data_mut().unwrap()[j] += h;
            minus.tensors_mut()[pi].cpu_data_mut().unwrap()[j] -= h;
            let numeric = (loss_of(&plus) - loss_of(&minus)) / (2.0 * h as f64);
            let err = (g[j] as f64 - numeric).abs() / numeric.abs().max(1e-2);
            assert!(err < 2e-2, "{name}[{j}]: analytic {} vs numeric {numeric}", g[j]);
            checked += 1;
        }
    }
    assert!(checked > 100);
}
