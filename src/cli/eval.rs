//! The evaluation subcommands' arguments and drivers: `ddpm-cuda fid`, `fid-stats`, `nll` and `memorization`.

use std::path::PathBuf;

use ddpm_cuda::data::{self, DatasetKind};
use ddpm_cuda::eval::fid::{frechet_distance, inception_score, npz_has_stats, Stats};
use ddpm_cuda::eval::inception::{Inception, FID_WEIGHTS_FILE, FID_WEIGHTS_URL, NUM_LOGITS, POOL3_DIM};
use ddpm_cuda::eval::{extract_features, images_to_rows, Images};
use ddpm_cuda::{Device, Error, Result};

/// Where the Inception weights come from and how the network runs.
#[derive(clap::Args, Debug)]
pub struct InceptionArgs {
    /// pytorch-fid's Inception weights (pt_inception-2015-12-05-6726825d.pth), downloaded from
    /// https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/pt_inception-2015-12-05-6726825d.pth
    #[arg(long, value_name = "FILE", default_value = FID_WEIGHTS_FILE)]
    pub inception: PathBuf,
    /// auto (CUDA device 0 if present, else the CPU), cpu, cuda or cuda:N.
    #[arg(long, default_value = "auto")]
    pub device: String,
    /// Images per Inception forward pass.
    #[arg(long, default_value_t = 50)]
    pub batch_size: usize,
}

/// A dataset given on the command line.
#[derive(clap::Args, Debug)]
pub struct DatasetArgs {
    /// mnist, fashion-mnist, cifar10 or folder.
    #[arg(long = "ref-dataset", value_parser = DatasetKind::parse)]
    pub ref_dataset: Option<DatasetKind>,
    /// The folder holding the --ref-dataset's files.
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Use the test split (default: the training set, as the DDPM paper's FID).
    #[arg(long)]
    pub test_split: bool,
    /// Image side for --ref-dataset folder.
    #[arg(long, default_value_t = 64)]
    pub image_size: usize,
}

impl DatasetArgs {
    fn load(&self) -> Result<Option<Images>> {
        let Some(kind) = self.ref_dataset else { return Ok(None) };
        let dir = self.data_dir.as_ref().ok_or_else(|| Error::msg("--ref-dataset needs --data-dir DIR"))?;
        let ds = data::load(kind, dir, !self.test_split, self.image_size)?;
        Ok(Some(Images::from_dataset(&ds)))
    }
}

#[derive(clap::Args, Debug)]
pub struct FidArgs {
    /// Samples npz: uint8 [N, H, W, C] under arr_0 (what `ddpm-cuda sample --npz` writes).
    #[arg(long)]
    pub samples: PathBuf,
    /// Reference: pytorch-fid stats npz (mu, sigma) or another samples npz.
    #[arg(long = "ref")]
    pub reference: Option<PathBuf>,
    #[command(flatten)]
    pub dataset: DatasetArgs,
    #[command(flatten)]
    pub net: InceptionArgs,
    /// Inception Score splits.
    #[arg(long, default_value_t = 10)]
    pub splits: usize,
}

#[derive(clap::Args, Debug)]
pub struct FidStatsArgs {
    /// Images npz to summarise (instead of --ref-dataset).
    #[arg(long)]
    pub samples: Option<PathBuf>,
    #[command(flatten)]
    pub dataset: DatasetArgs,
    #[command(flatten)]
    pub net: InceptionArgs,
    /// The stats npz to write (pytorch-fid's keys: mu, sigma).
    #[arg(long)]
    pub out: PathBuf,
}

fn stats_of(net: &Inception, images: &Images, batch: usize, label: &str) -> Result<(Stats, Vec<f32>)> {
    let (pool3, logits) = extract_features(net, images, batch, label)?;
    Ok((Stats::from_features(&pool3, images.n, POOL3_DIM)?, logits))
}

fn open_net(args: &InceptionArgs) -> Result<Inception> {
    let device = Device::parse(&args.device)?;
    if !args.inception.is_file() {
        return Err(Error::msg(format!(
            "Inception weights {} not found. Download pytorch-fid's weights:\n  curl -L -o {FID_WEIGHTS_FILE} {FID_WEIGHTS_URL}\nand pass --inception {FID_WEIGHTS_FILE}",
            args.inception.display()
        )));
    }
    Inception::from_file(&args.inception, &device)
}

/// `ddpm-cuda fid`: FID of the samples against the reference, and the samples' Inception Score.
pub fn run_fid(args: &FidArgs) -> Result<()> {
    let reference_given = args.reference.is_some() as u8 + args.dataset.ref_dataset.is_some() as u8;
    if reference_given != 1 {
        return Err(Error::msg("fid: give exactly one of --ref FILE.npz and --ref-dataset KIND --data-dir DIR"));
    }
    let samples = Images::read_npz(&args.samples)?;
    let net = open_net(&args.net)?;
    let t0 = std::time::Instant::now();
    let (sample_stats, logits) = stats_of(&net, &samples, args.net.batch_size, "samples")?;
    let ref_stats = match (&args.reference, args.dataset.load()?) {
        (Some(path), _) if npz_has_stats(path)? => Stats::read_npz(path)?,
        (Some(path), _) => stats_of(&net, &Images::read_npz(path)?, args.net.batch_size, "reference")?.0,
        (None, Some(images)) => stats_of(&net, &images, args.net.batch_size, "reference")?.0,
        (None, None) => unreachable!("checked above"),
    };
    if ref_stats.dim() != POOL3_DIM {
        return Err(Error::msg(format!("fid: the reference stats are {}-d, expected {POOL3_DIM}", ref_stats.dim())));
    }
    let t1 = std::time::Instant::now();
    let fid = frechet_distance(&sample_stats, &ref_stats, 1e-6)?;
    let (is_mean, is_std) = inception_score(&logits, samples.n, NUM_LOGITS, args.splits)?;
    let math = t1.elapsed().as_secs_f64();
    println!("FID: {fid:.4}");
    println!("Inception Score: {is_mean:.4} ± {is_std:.4} ({} splits)", args.splits);
    eprintln!(
        "{} samples on {} in {:.1} s (Fréchet distance and IS: {math:.2} s)",
        samples.n,
        net.device(),
        t0.elapsed().as_secs_f64()
    );
    Ok(())
}

/// `ddpm-cuda fid-stats`: write pytorch-fid reference stats for a dataset or an images npz.
pub fn run_fid_stats(args: &FidStatsArgs) -> Result<()> {
    let images = match (&args.samples, args.dataset.load()?) {
        (Some(path), None) => Images::read_npz(path)?,
        (None, Some(images)) => images,
        _ => return Err(Error::msg("fid-stats: give exactly one of --samples FILE.npz and --ref-dataset KIND")),
    };
    let net = open_net(&args.net)?;
    let (stats, _) = stats_of(&net, &images, args.net.batch_size, "images")?;
    stats.write_npz(&args.out)?;
    eprintln!("wrote {} ({} images)", args.out.display(), images.n);
    Ok(())
}

#[derive(clap::Args, Debug)]
pub struct NllArgs {
    /// The model, as `sample` and `eps` take it: a ddpm-cuda checkpoint or run folder, a diffusers model folder,
    /// or a bare diffusers .safetensors with --config.
    #[arg(long, value_name = "PATH")]
    pub checkpoint: PathBuf,
    /// A diffusers config.json for a bare .safetensors --checkpoint.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// mnist, fashion-mnist, cifar10 or folder (the test split where there is one).
    #[arg(long, value_parser = DatasetKind::parse)]
    pub dataset: DatasetKind,
    /// The folder holding the dataset's files.
    #[arg(long, value_name = "DIR")]
    pub data_dir: PathBuf,
    /// Evaluate the first N test images (default: all).
    #[arg(long)]
    pub num: Option<usize>,
    /// Images per batch (each batch runs all T terms).
    #[arg(long, default_value_t = 100)]
    pub batch_size: usize,
    /// For a ddpm-cuda checkpoint: the EMA weights (a diffusers model holds one set).
    #[arg(long)]
    pub ema: bool,
    /// Seed of the noise of the L_t terms.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// auto (CUDA device 0 if present, else the CPU), cpu, cuda or cuda:N.
    #[arg(long, default_value = "auto")]
    pub device: String,
    /// Activation dtype of the U-Net: auto (bf16 on CUDA, f32 on the CPU), f32 or bf16 (mixed precision, CUDA only).
    #[arg(long, value_enum, default_value = "auto")]
    pub precision: ddpm_cuda::config::Precision,
    /// Image side for --dataset folder.
    #[arg(long, default_value_t = 64)]
    pub image_size: usize,
    /// Also write a plot (.png/.jpg) of the bits/dim of each term L_t against t.
    #[arg(long, value_name = "FILE")]
    pub plot: Option<PathBuf>,
}

/// `ddpm-cuda nll`: the variational bound in bits/dim on the test set.
pub fn run_nll(args: &NllArgs) -> Result<()> {
    use ddpm_cuda::nn::{unet::UNet, Ctx, ParamStore};
    if let Some(p) = &args.plot {
        ddpm_cuda::report::check_image_path("--plot", p)?;
    }
    if args.batch_size == 0 || args.num == Some(0) {
        return Err(Error::msg("nll: --num and --batch-size must be at least 1"));
    }
    let device = Device::parse(&args.device)?;
    // The same loader as `sample` and `eps`: our checkpoint or run folder, a diffusers folder or .safetensors.
    let loaded = ddpm_cuda::diffusers::load_any(&args.checkpoint, args.config.as_deref(), args.ema)?;
    eprintln!("{}: {}", args.checkpoint.display(), loaded.kind);
    let mut params = ParamStore::new();
    let unet = UNet::new(&loaded.model, &mut params, &mut ddpm_cuda::rng::Philox::new(0))?;
    params.set_tensors(loaded.weights.iter().map(|t| t.to_device(&device)).collect::<Result<Vec<_>>>()?)?;
    let diffusion = ddpm_cuda::diffusion::Diffusion::new(&loaded.diffusion)?;
    let ds = data::load(args.dataset, &args.data_dir, false, args.image_size)?;
    let (c, s) = (loaded.model.in_channels, loaded.model.image_size);
    if [ds.channels, ds.height, ds.width] != [c, s, s] {
        return Err(Error::msg(format!(
            "nll: the checkpoint models {c}×{s}×{s} images, the dataset has {}×{}×{}",
            ds.channels, ds.height, ds.width
        )));
    }
    let n = args.num.map_or(ds.n, |k| k.min(ds.n));
    if n == 0 || args.batch_size == 0 {
        return Err(Error::msg("nll: --num and --batch-size must be positive"));
    }
    let cx = Ctx::no_grad(&params).with_dtype(args.precision.resolve(&device)?);
    let mut model =
        |x: &ddpm_cuda::Tensor, t: &[f32]| Ok(unet.forward(&cx, &ddpm_cuda::Var::constant(x.clone()), t)?.into_value());
    let bar = indicatif::ProgressBar::new(n as u64);
    let mut rng = ddpm_cuda::rng::Philox::new(args.seed);
    let (mut sum, mut prior, mut l0) = (0.0f64, 0.0f64, 0.0f64);
    let mut terms: Vec<f64> = Vec::new();
    for start in (0..n).step_by(args.batch_size) {
        let count = args.batch_size.min(n - start);
        let mut x = vec![0.0f32; count * ds.image_len()];
        for (i, row) in x.chunks_exact_mut(ds.image_len()).enumerate() {
            ds.image_f32(start + i, false, row);
        }
        let x0 = ddpm_cuda::Tensor::from_vec(x, &[count, c, s, s])?.to_device(&device)?;
        let b = ddpm_cuda::eval::nll::bits_per_dim(&mut model, &diffusion, &x0, &mut rng)?;
        sum += b.total.iter().sum::<f64>();
        prior += b.prior.iter().sum::<f64>();
        l0 += b.terms[0] * count as f64;
        terms.resize(b.terms.len(), 0.0);
        terms.iter_mut().zip(&b.terms).for_each(|(a, t)| *a += t * count as f64);
        bar.inc(count as u64);
    }
    bar.finish_and_clear();
    let k = n as f64;
    println!("NLL ≤ {:.4} bits/dim on {n} test images (L_T {:.2e}, L_0 {:.4})", sum / k, prior / k, l0 / k);
    if let Some(path) = &args.plot {
        let pts: Vec<(f64, f64)> = terms.iter().enumerate().map(|(t, v)| (t as f64, v / k)).collect();
        ddpm_cuda::report::save_plot(path, "variational bound terms", "t", "L_t (bits/dim, log scale)", &pts, true)?;
        eprintln!("wrote {}", path.display());
    }
    Ok(())
}

#[derive(clap::Args, Debug)]
pub struct MemorizationArgs {
    /// Samples npz (uint8 [N, H, W, C] under arr_0).
    #[arg(long)]
    pub samples: PathBuf,
    /// The training set: mnist, fashion-mnist, cifar10 or folder.
    #[arg(long, value_parser = DatasetKind::parse)]
    pub dataset: DatasetKind,
    /// The folder holding the dataset's files.
    #[arg(long, value_name = "DIR")]
    pub data_dir: PathBuf,
    /// Compare against only the first N training images.
    #[arg(long)]
    pub train_limit: Option<usize>,
    /// PNG of the closest (sample | nearest training image) pairs.
    #[arg(long, default_value = "memorization.png")]
    pub out: PathBuf,
    /// How many pairs to draw.
    #[arg(long, default_value_t = 16)]
    pub pairs: usize,
    /// CSV of every sample: index, nearest training index, L2 distance, per-pixel RMS.
    #[arg(long)]
    pub csv: Option<PathBuf>,
    /// Image side for --dataset folder.
    #[arg(long, default_value_t = 64)]
    pub image_size: usize,
}

/// `ddpm-cuda memorization`: nearest training image of every sample.
pub fn run_memorization(args: &MemorizationArgs) -> Result<()> {
    use ddpm_cuda::eval::empirical::{nearest_neighbours, TrainingSet};
    let ds = data::load(args.dataset, &args.data_dir, true, args.image_size)?;
    let train = TrainingSet::from_dataset(&ds, args.train_limit);
    let samples = Images::read_npz(&args.samples)?;
    let [c, h, w] = train.shape;
    if (samples.height, samples.width) != (h, w) {
        return Err(Error::msg(format!(
            "memorization: samples are {}×{}, the dataset's images {h}×{w}",
            samples.height, samples.width
        )));
    }
    let rows = images_to_rows(&samples, c);
    let nn = nearest_neighbours(&train, &rows)?;
    let d = train.dim();
    let mut order: Vec<usize> = (0..nn.len()).collect();
    order.sort_by(|&a, &b| nn[a].1.total_cmp(&nn[b].1));
    let dist: Vec<f64> = order.iter().map(|&i| nn[i].1).collect();
    let mean = dist.iter().sum::<f64>() / dist.len() as f64;
    println!(
        "nearest-training-image L2 distance over {} samples (pixels in [-1, 1], {d} dims): min {:.4}, median {:.4}, mean {:.4}, max {:.4}",
        dist.len(),
        dist[0],
        dist[dist.len() / 2],
        mean,
        dist[dist.len() - 1]
    );
    let k = args.pairs.min(order.len()).max(1);
    let mut tiles = Vec::with_capacity(2 * k * d);
    for &i in &order[..k] {
        tiles.extend_from_slice(&rows[i * d..(i + 1) * d]);
        tiles.extend_from_slice(&train.rows[nn[i].0 * d..(nn[i].0 + 1) * d]);
    }
    ddpm_cuda::report::save_grid(&args.out, &ddpm_cuda::Tensor::from_vec(tiles, &[2 * k, c, h, w])?, 8, 2)?;
    eprintln!("wrote {} (sample | nearest training image, closest first)", args.out.display());
    if let Some(path) = &args.csv {
        let mut s = String::from("sample,nearest_train,l2,rms\n");
        for (i, (j, dd)) in nn.iter().enumerate() {
            s.push_str(&format!("{i},{j},{dd:.6},{:.6}\n", dd / (d as f64).sqrt()));
        }
        std::fs::write(path, s).map_err(|e| Error::io(path, e))?;
        eprintln!("wrote {}", path.display());
    }
    Ok(())
}
