//! `sample --npz` at scale: batches are stored as they finish in `OUT.partial/`, a rerun continues from them, and the
//! npz appears under its name only when complete. An interrupted-then-resumed run writes the same bytes as an
//! uninterrupted one; a rerun with other settings is an error naming the folder.
#[path = "common/fixtures.rs"]
mod fixtures;
use fixtures::*;

use std::cell::Cell;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use ddpm_cuda::config::Config;
use ddpm_cuda::diffusion::{Diffusion, Sampler};
use ddpm_cuda::sample::{self, Batches, SampleOptions};
use ddpm_cuda::sample_store::{Manifest, SampleStore};
use ddpm_cuda::{Device, Tensor};

fn npz_images(path: &Path) -> (Vec<u64>, Vec<u8>) {
    let mut zip = npyz::zip::ZipArchive::new(std::fs::File::open(path).unwrap()).unwrap();
    let arr = npyz::NpyFile::new(zip.by_name("arr_0.npy").unwrap()).unwrap();
    (arr.shape().to_vec(), arr.into_vec::<u8>().unwrap())
}

fn manifest(num: usize, batch: usize, seed: u64) -> Manifest {
    Manifest::new(num, batch, seed, "ddim steps=3 eta=1".into(), "test eps".into(), [1, 6, 5], "cpu".into())
}

/// Sample `num` images into `out` through the store, stopping (as an interrupt would) once `stop_after` batches
/// were made by this call. Returns whether the npz was finished.
fn run(out: &Path, num: usize, batch: usize, seed: u64, stop_after: Option<usize>) -> ddpm_cuda::Result<bool> {
    let diffusion = Diffusion::new(&Config::preset("tiny").unwrap().diffusion).unwrap();
    let opts = SampleOptions {
        n: num,
        batch_size: batch,
        sampler: Sampler::Ddim { steps: 3, eta: 1.0 },
        seed,
        device: Device::Cpu,
        graphs: Default::default(),
    };
    // Any ε-model will do: this one depends on x and t, so every step and every batch's noise shows in the bytes.
    let mut eps = |x: &Tensor, t: &[f32]| x.scale(0.3 + t[0] / 2000.0);
    let store = SampleStore::open(out, manifest(num, batch, seed))?;
    let made = Cell::new(0);
    let skip = |b: usize| store.is_done(b);
    let stop = || stop_after.is_some_and(|k| made.get() >= k);
    let put = |b: usize, x: Tensor| {
        made.set(made.get() + 1);
        store.put(b, &x)
    };
    let mut sink = Batches { skip: &skip, stop: &stop, put: Box::new(put) };
    let finished = sample::generate_batches(&mut eps, [1, 6, 5], &diffusion, &opts, &mut |_, _| {}, &mut sink)?;
    drop(sink);
    if finished {
        store.finish()?;
    }
    Ok(finished)
}

#[test]
fn an_interrupted_run_resumes_to_the_same_bytes() {
    let dir = temp_dir("sample-resume-lib");
    let (num, batch) = (11, 3); // 4 batches, the last one short
    let straight = dir.join("straight.npz");
    assert!(run(&straight, num, batch, 7, None).unwrap());
    let (shape, want) = npz_images(&straight);
    assert_eq!(shape, [11, 6, 5, 1]);
    assert!(!dir.join("straight.npz.partial").exists(), "the partial folder is removed once the npz is written");

    // Stopped after 1 batch, then after 2 more, then finished: the npz exists only at the end.
    let out = dir.join("resumed.npz");
    let partial = dir.join("resumed.npz.partial");
    assert!(!run(&out, num, batch, 7, Some(1)).unwrap());
    assert!(!out.exists() && partial.join("batch-000000.npy").exists() && !partial.join("batch-000001.npy").exists());
    assert!(!run(&out, num, batch, 7, Some(2)).unwrap());
    assert!(!out.exists() && partial.join("batch-000002.npy").exists() && !partial.join("batch-000003.npy").exists());
    assert!(run(&out, num, batch, 7, None).unwrap());
    assert!(!partial.exists());
    assert_eq!(npz_images(&out), (shape, want.clone()), "the resumed npz differs from the uninterrupted one");

    // The seed shows in the bytes (so the comparison above can fail), and the batches differ from each other.
    let other = dir.join("other.npz");
    assert!(run(&other, num, batch, 8, None).unwrap());
    assert_ne!(npz_images(&other).1, want);
    let per = 6 * 5 * batch;
    assert_ne!(want[..per], want[per..2 * per]);
}

#[test]
fn a_rerun_with_other_settings_is_an_error_naming_the_folder() {
    let dir = temp_dir("sample-resume-mismatch");
    let out = dir.join("s.npz");
    assert!(!run(&out, 10, 4, 1, Some(1)).unwrap());
    for (num, batch, seed, what) in [(10, 4, 2, "seed"), (12, 4, 1, "num"), (10, 5, 1, "batch_size")] {
        let e = run(&out, num, batch, seed, None).unwrap_err().to_string();
        assert!(e.contains("s.npz.partial") && e.contains(what), "{e}");
    }
    assert!(!out.exists());
    // The same settings still finish it.
    assert!(run(&out, 10, 4, 1, None).unwrap());
    assert_eq!(npz_images(&out).0, [10, 6, 5, 1]);
}

fn ddpm(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ddpm-cuda")).args(args).output().expect("run ddpm-cuda")
}

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

fn batch_files(partial: &Path) -> usize {
    std::fs::read_dir(partial)
        .map_or(0, |d| d.filter(|e| e.as_ref().unwrap().file_name().to_string_lossy().starts_with("batch-")).count())
}

/// The binary: SIGINT stops after the batch in flight (exit 130, no npz), the same command finishes it, and the
/// bytes are those of an uninterrupted run.
#[test]
fn sigint_then_rerun_gives_the_uninterrupted_npz() {
    let data = temp_dir("sample-sigint-data");
    write_mnist(&data, 8);
    let run = temp_dir("sample-sigint").join("run");
    let (d, r) = (data.to_str().unwrap(), run.to_str().unwrap());
    // A 100-step schedule: each batch of the DDPM sampler is 100 U-Net evaluations, long enough to interrupt.
    let sets = ["--set", "model.ch=8", "--set", "model.norm_groups=4", "--set", "diffusion.steps=100"];
    let mut args = vec!["train", "--dataset", "mnist", "--data-dir", d, "--preset", "tiny", "--steps", "1"];
    args.extend(["--batch-size", "4", "--out", r, "--device", "cpu", "--quiet", "--sample-every", "0"]);
    args.extend(sets);
    let o = ddpm(&args);
    assert!(o.status.success(), "{}", text(&o));
    let ck = run.join("checkpoint.safetensors");
    let sample_args = |npz: &Path| -> Vec<String> {
        let mut a = vec!["sample", "--checkpoint", ck.to_str().unwrap(), "--num", "7", "--batch-size", "2"];
        a.extend(["--sampler", "ddpm", "--seed", "5", "--device", "cpu", "--npz", npz.to_str().unwrap()]);
        a.into_iter().map(String::from).collect()
    };
    let straight = run.join("straight.npz");
    let o = ddpm(&sample_args(&straight).iter().map(String::as_str).collect::<Vec<_>>());
    assert!(o.status.success(), "{}", text(&o));
    let (shape, want) = npz_images(&straight);
    assert_eq!(shape, [7, 28, 28, 1]);

    let out = run.join("resumed.npz");
    let partial = run.join("resumed.npz.partial");
    let child = Command::new(env!("CARGO_BIN_EXE_ddpm-cuda"))
        .args(sample_args(&out))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    for _ in 0..60_000 {
        if batch_files(&partial) >= 1 {
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(Command::new("kill").args(["-INT", &child.id().to_string()]).status().unwrap().success());
    let o = child.wait_with_output().unwrap();
    assert_eq!(o.status.code(), Some(130), "{}", text(&o));
    let done = batch_files(&partial);
    assert!((1..4).contains(&done) && !out.exists(), "{done} batches after the interrupt; {}", text(&o));
    assert!(text(&o).contains("rerun the same command"), "{}", text(&o));

    // Another seed is refused (naming the folder); the same command finishes.
    let mut other = sample_args(&out);
    let i = other.iter().position(|a| a == "--seed").unwrap();
    other[i + 1] = "6".into();
    let o = ddpm(&other.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(!o.status.success() && text(&o).contains("resumed.npz.partial"), "{}", text(&o));
    let o = ddpm(&sample_args(&out).iter().map(String::as_str).collect::<Vec<_>>());
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains(&format!("resuming: {done} of 4 batches")), "{}", text(&o));
    assert!(!partial.exists());
    assert_eq!(npz_images(&out), (shape, want), "the resumed npz differs from the uninterrupted one");
}
