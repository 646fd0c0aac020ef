//! The evaluation subcommands' arguments and drivers (`ddpm-cuda fid`, `fid-stats`), kept here so main.rs only
//! dispatches.

use std::path::{Path, PathBuf};

use crate::data::{self, DatasetKind};
use crate::eval::fid::{frechet_distance, inception_score, npz_has_stats, Stats};
use crate::eval::inception::{Inception, FID_WEIGHTS_FILE, FID_WEIGHTS_URL, NUM_LOGITS, POOL3_DIM};
use crate::eval::Images;
use crate::{Device, Error, Result};

/// Where the Inception weights come from and how the network runs.
#[derive(clap::Args, Debug)]
pub struct InceptionArgs {
    /// pytorch-fid's Inception weights (pt_inception-2015-12-05-6726825d.pth), downloaded from
    /// https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/pt_inception-2015-12-05-6726825d.pth
    #[arg(long, value_name = "FILE", default_value = FID_WEIGHTS_FILE)]
    pub inception: PathBuf,
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
    #[arg(long)]
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

/// pool3 features [N, 2048] and unbiased logits [N, 1008] of all images, in batches, with a progress bar.
pub fn extract_features(net: &Inception, images: &Images, batch_size: usize, label: &str) -> Result<(Vec<f32>, Vec<f32>)> {
    if images.n == 0 || batch_size == 0 {
        return Err(Error::msg(format!("{label}: no images (or --batch-size 0)")));
    }
    let bar = indicatif::ProgressBar::new(images.n as u64).with_style(
        indicatif::ProgressStyle::with_template("{msg} {bar:40} {pos}/{len} images [{elapsed} < {eta}]")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    bar.set_message(format!("Inception: {label}"));
    let (mut pool3, mut logits) =
        (Vec::with_capacity(images.n * POOL3_DIM), Vec::with_capacity(images.n * NUM_LOGITS));
    let len = images.image_len();
    for start in (0..images.n).step_by(batch_size) {
        let count = batch_size.min(images.n - start);
        let out = net.run_u8_nhwc(&images.pixels[start * len..(start + count) * len], count, images.height, images.width)?;
        pool3.extend(out.pool3);
        logits.extend(out.logits);
        bar.inc(count as u64);
    }
    bar.finish_and_clear();
    Ok((pool3, logits))
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
    let fid = frechet_distance(&sample_stats, &ref_stats, 1e-6)?;
    let (is_mean, is_std) = inception_score(&logits, samples.n, NUM_LOGITS, args.splits)?;
    println!("FID: {fid:.4}");
    println!("Inception Score: {is_mean:.4} ± {is_std:.4} ({} splits)", args.splits);
    eprintln!("{} samples on {} in {:.1} s", samples.n, net.device(), t0.elapsed().as_secs_f64());
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

/// For tests and benches: the statistics of an npz of images through a given network.
pub fn stats_of_npz(net: &Inception, path: &Path, batch: usize) -> Result<Stats> {
    Ok(stats_of(net, &Images::read_npz(path)?, batch, "images")?.0)
}
