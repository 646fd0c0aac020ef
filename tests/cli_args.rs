//! Bad arguments are found before any work: each case fails with a message naming the argument, and the work it
//! would have done is counted (no run dir, no metrics line, no checkpoint, no output file; an argument error
//! reported ahead of a broken checkpoint shows the check ran before the model was even read).
#[path = "common/fixtures.rs"]
mod fixtures;
use fixtures::{temp_dir, write_mnist};

use std::path::Path;
use std::process::{Command, Output};

fn ddpm(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ddpm-cuda")).args(args).output().expect("run ddpm-cuda")
}

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

fn fails_naming(o: &Output, needle: &str) {
    assert!(!o.status.success(), "expected a failure naming {needle}: {}", text(o));
    assert!(text(o).contains(needle), "the message does not name {needle}: {}", text(o));
    assert!(!text(o).contains("panicked"), "{}", text(o));
}

const MICRO: [&str; 4] = ["--set", "model.ch=8", "--set", "model.norm_groups=4"];

/// `train` on a small MNIST with the micro model (batch 4 unless `extra` sets --batch-size); `extra` last.
fn train(data: &Path, out: &Path, extra: &[&str]) -> Output {
    let mut args = vec!["train", "--dataset", "mnist", "--data-dir", data.to_str().unwrap(), "--preset", "tiny"];
    args.extend(["--out", out.to_str().unwrap(), "--device", "cpu", "--quiet", "--log-every", "1"]);
    args.extend(MICRO);
    if !extra.contains(&"--batch-size") {
        args.extend(["--batch-size", "4"]);
    }
    args.extend(extra);
    ddpm(&args)
}

#[test]
fn train_rejects_bad_numbers_before_any_step() {
    let data = temp_dir("args-data");
    write_mnist(&data, 40);
    let root = temp_dir("args-train");
    for (flag, value) in
        [("--lr", "nan"), ("--lr", "inf"), ("--lr", "0"), ("--lr", "-1e-3"), ("--steps", "0"), ("--batch-size", "0")]
    {
        let out = root.join(format!("run{}{value}", flag.trim_start_matches('-')));
        let arg = format!("{flag}={value}");
        let steps: &[&str] = if flag == "--steps" { &[] } else { &["--steps", "2"] };
        let o = train(&data, &out, &[steps, &[arg.as_str()][..]].concat());
        fails_naming(&o, flag);
        // No work: the run dir was never created, so no step, metrics line or checkpoint exists.
        assert!(!out.exists(), "{flag} {value}: {} was created", out.display());
    }
    // A learning rate from --set is checked too.
    let out = root.join("set-lr");
    let o = train(&data, &out, &["--set", "train.lr=-1", "--steps", "2"]);
    fails_naming(&o, "train.lr");
    assert!(!out.exists());
}

#[test]
fn a_run_that_fails_before_its_first_checkpoint_leaves_no_run_dir() {
    let data = temp_dir("args-diverge-data");
    write_mnist(&data, 40);
    let root = temp_dir("args-diverge");
    // lr 1e30 makes the loss non-finite within a few steps; no checkpoint exists yet.
    let out = root.join("run");
    let o = train(&data, &out, &["--lr", "1e30", "--steps", "50", "--checkpoint-every", "1000"]);
    fails_naming(&o, "the loss became");
    assert!(!text(&o).contains("checkpoint"), "mentions a checkpoint that does not exist: {}", text(&o));
    assert!(!out.exists(), "a failed run left {} behind", out.display());
    // With a checkpoint every step, the failure says the last one is kept, and it is there.
    let out = root.join("run2");
    let o = train(&data, &out, &["--lr", "1e30", "--steps", "50", "--checkpoint-every", "1"]);
    fails_naming(&o, "the last checkpoint");
    assert!(out.join("checkpoint.safetensors").is_file());
    // A missing dataset leaves nothing behind either.
    let out = root.join("run3");
    let empty = temp_dir("args-empty");
    let o = train(&empty, &out, &["--steps", "2"]);
    fails_naming(&o, "train-images-idx3-ubyte");
    assert!(!out.exists());
}

#[test]
fn sample_checks_every_output_path_and_number_before_loading_the_model() {
    let dir = temp_dir("args-sample");
    // A broken checkpoint: an argument error reported instead of the checkpoint's shows the argument was
    // checked first, before the model was read and before any sampling step.
    let ck = dir.join("broken.safetensors");
    std::fs::write(&ck, b"not a checkpoint").unwrap();
    let c = ck.to_str().unwrap();
    let missing = dir.join("no-such-dir");
    let in_missing = |name: &str| missing.join(name).to_str().unwrap().to_string();
    let npz = dir.join("s.npz");
    let cases: Vec<(Vec<String>, &str)> = vec![
        (vec!["--grid".into(), in_missing("g.png")], "--grid"),
        (
            vec!["--npz".into(), npz.to_str().unwrap().into(), "--progressive".into(), in_missing("p.png")],
            "--progressive",
        ),
        (vec!["--npz".into(), in_missing("s.npz")], "--npz"),
        (vec!["--grid".into(), dir.join("g.gif").to_str().unwrap().into()], "PNG"),
        (vec!["--grid".into(), dir.to_str().unwrap().into()], "--grid"),
        (vec!["--npz".into(), npz.to_str().unwrap().into(), "--eta".into(), "1.5".into()], "--eta"),
        (vec!["--npz".into(), npz.to_str().unwrap().into(), "--eta".into(), "NaN".into()], "--eta"),
        (vec!["--npz".into(), npz.to_str().unwrap().into(), "--num".into(), "0".into()], "--num"),
        (vec!["--npz".into(), npz.to_str().unwrap().into(), "--steps".into(), "0".into()], "--steps"),
    ];
    for (extra, needle) in cases {
        let mut args = vec!["sample", "--checkpoint", c, "--device", "cpu", "--sampler", "ddim"];
        args.extend(extra.iter().map(String::as_str));
        let o = ddpm(&args);
        fails_naming(&o, needle);
        assert!(!text(&o).contains("broken.safetensors"), "the model was read before the argument check: {}", text(&o));
        assert!(!npz.exists(), "{needle}: samples were written");
    }
    // With good arguments the broken checkpoint is what is reported.
    let o = ddpm(&["sample", "--checkpoint", c, "--device", "cpu", "--npz", npz.to_str().unwrap()]);
    fails_naming(&o, "broken.safetensors");
}

#[test]
fn sample_writes_jpeg_grids_and_the_npz() {
    let data = temp_dir("args-jpeg-data");
    write_mnist(&data, 40);
    let out = temp_dir("args-jpeg").join("run");
    let o = train(&data, &out, &["--steps", "2"]);
    assert!(o.status.success(), "{}", text(&o));
    let (grid, npz) = (out.join("g.jpg"), out.join("s.npz"));
    let o = ddpm(&[
        "sample",
        "--checkpoint",
        out.to_str().unwrap(),
        "--num",
        "4",
        "--sampler",
        "ddim",
        "--steps",
        "3",
        "--device",
        "cpu",
        "--grid",
        grid.to_str().unwrap(),
        "--npz",
        npz.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let bytes = std::fs::read(&grid).unwrap();
    assert_eq!(&bytes[..3], &[0xFF, 0xD8, 0xFF], "g.jpg is not a JPEG");
    assert!(npz.is_file());
}

fn write_i64_npy(path: &Path, v: &[i64]) {
    npyz::to_file_1d(path, v.iter().copied()).unwrap();
}

#[test]
fn eps_rejects_timesteps_outside_the_models_schedule() {
    let model = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/parity/pad0_oldnames");
    let dir = temp_dir("args-eps");
    let x = model.join("x.npy");
    let n = ddpm_cuda::npy::read_f32(&x).unwrap().1[0];
    let t = dir.join("t.npy");
    let mut ts = vec![0i64; n];
    ts[n - 1] = 1000;
    write_i64_npy(&t, &ts);
    let out = dir.join("eps.npy");
    let args = ["eps", "--checkpoint", model.to_str().unwrap(), "--x", x.to_str().unwrap(), "--t", t.to_str().unwrap()];
    let o = ddpm(&[&args[..], &["--out", out.to_str().unwrap(), "--device", "cpu"]].concat());
    fails_naming(&o, "--t");
    assert!(text(&o).contains("timestep 1000") && text(&o).contains("T = 1000"), "{}", text(&o));
    assert!(!out.exists());
}

#[test]
fn forward_rejects_bad_counts_and_timesteps_before_reading_data() {
    let dir = temp_dir("args-forward");
    let empty = temp_dir("args-forward-nodata");
    let out = dir.join("f.png");
    let base = ["forward", "--dataset", "mnist", "--data-dir", empty.to_str().unwrap()];
    let (o, bmp) = (out.to_str().unwrap(), dir.join("f.bmp"));
    for (extra, needle) in [
        (vec!["--num", "0", "--out", o], "--num"),
        (vec!["--num", "100000", "--out", o], "--num"),
        (vec!["--t", "0,1000", "--out", o], "--t"),
        (vec!["--out", bmp.to_str().unwrap()], "PNG"),
    ] {
        let o = ddpm(&[&base[..], &extra[..]].concat());
        fails_naming(&o, needle);
        // The data dir is empty: an argument error ahead of "train-images-idx3-ubyte" means no data was read.
        assert!(!text(&o).contains("train-images-idx3-ubyte"), "{}", text(&o));
        assert!(!out.exists());
    }
}
