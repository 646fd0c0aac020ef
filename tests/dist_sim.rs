//! Data-parallel training on simulated GPUs (tools/cuda-sim: `DDPM_CUDA_SIM_DEVICES=N` devices with their own
//! memory, and the libnccl.so stand-in), through the real binary:
//!
//! - 2 and 4 GPUs in one process (`--device cuda:0,1`, `cuda:all`) with global batch B log the same losses and
//!   gradient norms, step for step, as one GPU with batch B, without dropout and with it (every element's mask
//!   follows its index in the global batch); a 2-GPU run resumed at 2 GPUs ends bit for bit where the
//!   uninterrupted one does; the all-reduce overlapped with the backward pass (small buckets, several of them
//!   started during the backward pass) gives the checkpoint of the non-overlapped one, bit for bit;
//! - two processes started by hand with torchrun's variables (one simulated GPU each) train together exactly as
//!   the in-process 2-GPU run does; Ctrl-C on rank 0 stops both after the same step; killing one makes the other
//!   stop within the timeout, naming the lost rank.
//!
//! Tolerance against one GPU. Step 1 runs on identical weights, so only the loss's own reduction differs: each
//! replica's mean over its B/N images is an f64 sum rounded once to f32 (relative error ≤ 2⁻²⁴), and the N means
//! are added in f32 in rank order and divided by N (≤ N·2⁻²⁴ more): at most (N+1)·2⁻²⁴ ≈ 3e-7 for N = 4, so 1e-6.
//! The gradients differ the same way (per-replica partial sums added in rank order instead of one sum over B:
//! a few ulp, ~1e-6 relative); Adam passes such differences on to the weights about proportionally (m̂/√v̂), so
//! later losses and gradient norms move by a few 1e-7 relative per step at lr 1e-3: 1e-5 over three steps leaves
//! a margin of more than 10×. A missing 1/N, a replica that skips the all-reduce or sees the wrong rows or noise,
//! changes the loss or the norm at step 1 or 2 by far more (a percent or more). Dropout masks that differ from
//! one GPU's change the run about as much as dropout itself does: the test checks that dropout 0.3 moves a loss or
//! norm of the three steps by more than 100× the tolerance (here the step-3 norm, by ~2e-3).
#[path = "common/fixtures.rs"]
mod fixtures;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use fixtures::{checkpoint_bits, temp_dir};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_ddpm-cuda")
}

fn require_kernels() {
    let out = Command::new(bin()).arg("kernels").output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        !text.contains("built without CUDA kernels"),
        "this binary was built without CUDA kernels, so the simulated multi-GPU tests cannot run: set NVCC to nvcc \
         13.0 (scripts/test.sh installs the pinned one) and rebuild"
    );
}

fn show(out: &Output) -> String {
    format!(
        "status {:?}\n--- stdout\n{}\n--- stderr\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// `scripts/cuda-sim.sh bin args…` with `devices` simulated GPUs; fails on a nonzero exit or any report.
fn sim(args: &[String], devices: usize, tag: &str) -> Output {
    require_kernels();
    let reports = std::env::temp_dir().join(format!("ddpm-dist-sim-{}-{tag}.reports", std::process::id()));
    let _ = std::fs::remove_file(&reports);
    let out = Command::new("bash")
        .arg(root().join("scripts/cuda-sim.sh"))
        .arg(bin())
        .args(args)
        .env("DDPM_CUDA_SIM_DEVICES", devices.to_string())
        .env("DDPM_CUDA_SIM_REPORTS", &reports)
        .output()
        .unwrap();
    assert!(out.status.success(), "{tag}: {}", show(&out));
    let text = std::fs::read_to_string(&reports).unwrap_or_default();
    assert!(text.trim().is_empty(), "{tag}: sanitizer reports:\n{text}");
    out
}

/// 16 RGB 8×8 PNGs: a small dataset whose U-Net steps are quick on the simulator.
fn write_images(dir: &Path) {
    for i in 0..16u32 {
        let img = image::RgbImage::from_fn(8, 8, |x, y| {
            image::Rgb([
                ((x * 32 + i * 13) % 256) as u8,
                ((y * 32 + i * 7) % 256) as u8,
                (((x + y) * 16 + i * 29) % 256) as u8,
            ])
        });
        img.save(dir.join(format!("img{i:02}.png"))).unwrap();
    }
}

fn train_args(data: &Path, out: &Path, device: &str, steps: u64) -> Vec<String> {
    let mut a: Vec<String> = [
        "train",
        "--dataset",
        "folder",
        "--image-size",
        "8",
        "--preset",
        "tiny",
        "--set",
        "model.ch=8",
        "--set",
        "model.norm_groups=4",
        "--set",
        "model.attn_resolutions=[4]",
        "--set",
        "train.warmup_steps=0",
        "--lr",
        "1e-3",
        "--batch-size",
        "4",
        "--seed",
        "5",
        "--log-every",
        "1",
        "--quiet",
        // The tolerances below are derived for f32 sums (CUDA's default is bf16 mixed precision).
        "--precision",
        "f32",
    ]
    .map(String::from)
    .to_vec();
    a.extend(["--data-dir".into(), data.display().to_string(), "--out".into(), out.display().to_string()]);
    a.extend(["--device".into(), device.into(), "--steps".into(), steps.to_string()]);
    a
}

/// (loss, grad_norm) per logged step.
fn metrics(run: &Path) -> Vec<(f64, f64)> {
    std::fs::read_to_string(run.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            (v["loss"].as_f64().unwrap(), v["grad_norm"].as_f64().unwrap())
        })
        .collect()
}

fn assert_close(what: &str, got: &[(f64, f64)], want: &[(f64, f64)]) {
    assert_eq!(got.len(), want.len(), "{what}: {got:?} vs {want:?}");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        let tol = if i == 0 { 1e-6 } else { 1e-5 };
        for (name, a, b) in [("loss", g.0, w.0), ("grad_norm", g.1, w.1)] {
            assert!((a - b).abs() <= tol * b.abs(), "{what}, step {}: {name} {a} vs one GPU's {b} (tol {tol})", i + 1);
        }
    }
}

/// `args` with dropout `p` (the tiny preset has none) and gradient buckets of `kib` KiB.
fn with(mut args: Vec<String>, dropout: f32, bucket_kib: Option<u64>) -> Vec<String> {
    args.extend(["--set".into(), format!("model.dropout={dropout}")]);
    if let Some(k) = bucket_kib {
        args.extend(["--dist-bucket-kib".into(), k.to_string()]);
    }
    args
}

#[test]
fn two_and_four_simulated_gpus_train_like_one_and_resume_bit_exactly() {
    let data = temp_dir("dist-data");
    write_images(&data);
    let dirs: Vec<PathBuf> = ["one", "two", "four", "one-d", "two-d", "two-d-seq", "four-d", "resumed"]
        .iter()
        .map(|t| temp_dir(&format!("dist-{t}")))
        .collect();
    for d in &dirs {
        std::fs::remove_dir_all(d).unwrap();
    }
    let [one, two, four, one_d, two_d, two_d_seq, four_d, resumed] = &dirs[..] else { unreachable!() };
    sim(&train_args(&data, one, "cuda", 3), 1, "one");
    let out = sim(&train_args(&data, two, "cuda:0,1", 3), 2, "two");
    assert!(String::from_utf8_lossy(&out.stderr).contains("training on 2 GPUs"), "{}", show(&out));
    sim(&train_args(&data, four, "cuda:all", 3), 4, "four");
    let reference = metrics(one);
    assert_eq!(reference.len(), 3);
    // The weights do move: the three losses are not all the same.
    assert!(reference.windows(2).any(|w| w[0].0 != w[1].0), "{reference:?}");
    assert_close("2 GPUs", &metrics(two), &reference);
    assert_close("4 GPUs", &metrics(four), &reference);

    // Dropout 0.3: the same masks on any GPU count. The 2-GPU run all-reduces in 4 KiB buckets (several, most of
    // them started during the backward pass), the 4-GPU run in the default 25 MiB (one).
    sim(&with(train_args(&data, one_d, "cuda", 3), 0.3, None), 1, "one-d");
    let out = sim(&with(train_args(&data, two_d, "cuda:0,1", 3), 0.3, Some(4)), 2, "two-d");
    let log = String::from_utf8_lossy(&out.stderr).into_owned();
    let line = log.lines().find(|l| l.starts_with("all-reduce per step:")).unwrap_or_else(|| panic!("{log}"));
    let number_before = |what: &str| -> usize {
        let head = &line[..line.find(what).unwrap_or_else(|| panic!("{line}"))];
        head.trim_end().rsplit([' ', '(']).next().unwrap().parse().unwrap_or_else(|_| panic!("{line}"))
    };
    println!("{line}");
    let (buckets, overlapped) = (number_before("bucket(s)"), number_before("overlapped"));
    assert!(buckets >= 3 && overlapped >= 2 && overlapped < buckets, "{line}");
    sim(&with(train_args(&data, four_d, "cuda:all", 3), 0.3, None), 4, "four-d");
    let reference_d = metrics(one_d);
    // Dropout does change the run, 100× beyond the tolerance, so other masks would fail the comparison below. (Not
    // at step 1's loss: a ResBlock's dropout feeds its zero-initialised second conv; its gradient moves first.)
    let moved =
        reference_d.iter().zip(&reference).map(|(d, r)| ((d.0 - r.0) / r.0).abs().max(((d.1 - r.1) / r.1).abs()));
    assert!(moved.fold(0.0, f64::max) > 1e-3, "{reference_d:?} vs {reference:?}");
    assert_close("2 GPUs, dropout 0.3", &metrics(two_d), &reference_d);
    assert_close("4 GPUs, dropout 0.3", &metrics(four_d), &reference_d);

    // The same buckets all-reduced after the backward pass: the same bits.
    let mut args = with(train_args(&data, two_d_seq, "cuda:0,1", 3), 0.3, Some(4));
    args.push("--dist-no-overlap".into());
    let out = sim(&args, 2, "two-d-seq");
    assert!(String::from_utf8_lossy(&out.stderr).contains(" 0 overlapped"), "{}", show(&out));
    assert_eq!(metrics(two_d_seq), metrics(two_d));
    assert!(
        checkpoint_bits(&two_d_seq.join("checkpoint.safetensors"))
            == checkpoint_bits(&two_d.join("checkpoint.safetensors")),
        "the overlapped all-reduce gave another checkpoint than the one after the backward pass"
    );

    // 2 steps, then resume to 3 at the same GPU count (dropout 0.3): the uninterrupted run's checkpoint, bit for
    // bit.
    sim(&with(train_args(&data, resumed, "cuda:0,1", 2), 0.3, Some(4)), 2, "first-half");
    let mut args = with(train_args(&data, resumed, "cuda:0,1", 3), 0.3, Some(4));
    args.push("--resume".into());
    sim(&args, 2, "resume");
    assert_eq!(metrics(resumed), metrics(two_d));
    assert!(
        checkpoint_bits(&resumed.join("checkpoint.safetensors"))
            == checkpoint_bits(&two_d.join("checkpoint.safetensors")),
        "the resumed 2-GPU checkpoint differs from the uninterrupted one"
    );

    // The global batch must split evenly.
    let args = train_args(&data, &temp_dir("dist-uneven"), "cuda:0,1,2", 3);
    let out = Command::new("bash")
        .arg(root().join("scripts/cuda-sim.sh"))
        .arg(bin())
        .args(&args)
        .env("DDPM_CUDA_SIM_DEVICES", "3")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("does not split evenly over 3 GPUs"), "{}", show(&out));
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// One rank of a torchrun-style job, started directly on the stand-ins (so killing it kills the trainer).
fn rank_process(args: &[String], rank: usize, port: u16, reports: &Path) -> Child {
    Command::new(bin())
        .args(args)
        .env("LD_LIBRARY_PATH", root().join("target/cuda-sim/lib"))
        .env("DDPM_CUDA_SIM_DEVICES", "1")
        .env("DDPM_CUDA_SIM_REPORTS", reports)
        .env("MASTER_ADDR", "127.0.0.1")
        .env("MASTER_PORT", port.to_string())
        .env("WORLD_SIZE", "2")
        .env("RANK", rank.to_string())
        .env("LOCAL_RANK", "0")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

#[test]
fn two_processes_train_together_and_a_killed_rank_stops_the_other() {
    let data = temp_dir("dist-proc-data");
    write_images(&data);
    let (inproc, procs) = (temp_dir("dist-proc-inproc"), temp_dir("dist-proc-two"));
    std::fs::remove_dir_all(&inproc).unwrap();
    std::fs::remove_dir_all(&procs).unwrap();
    // Also builds and lays out the stand-ins that the processes below load directly.
    sim(&train_args(&data, &inproc, "cuda:0,1", 3), 2, "proc-inproc");

    let reports = temp_dir("dist-proc-reports").join("reports.txt");
    let args = train_args(&data, &procs, "cuda", 3);
    let port = free_port();
    let ranks: Vec<Child> = (0..2).map(|r| rank_process(&args, r, port, &reports)).collect();
    for (r, c) in ranks.into_iter().enumerate() {
        let out = c.wait_with_output().unwrap();
        assert!(out.status.success(), "rank {r}: {}", show(&out));
    }
    let text = std::fs::read_to_string(&reports).unwrap_or_default();
    assert!(text.trim().is_empty(), "sanitizer reports:\n{text}");
    // The same ranks, devices and sums as the in-process run: the same numbers, bit for bit.
    assert_eq!(metrics(&procs), metrics(&inproc));
    assert!(
        checkpoint_bits(&procs.join("checkpoint.safetensors"))
            == checkpoint_bits(&inproc.join("checkpoint.safetensors")),
        "two processes and one process with two GPUs wrote different checkpoints"
    );

    // Ctrl-C on rank 0: agreed through the all-reduce, so both ranks stop after the same step (rank 0 saves it).
    let (rank0, rank1) = long_pair(&data, "sigint-0", &reports);
    let pid = rank0.id().to_string();
    assert!(Command::new("kill").args(["-INT", pid.as_str()]).status().unwrap().success());
    let (out0, out1) = (rank0.wait_with_output().unwrap(), rank1.wait_with_output().unwrap());
    assert_eq!(out0.status.code(), Some(130), "{}", show(&out0));
    assert!(out1.status.success(), "{}", show(&out1));
    // long_pair's run dir (fixtures::temp_dir's naming).
    let run = std::env::temp_dir().join(format!("ddpm-cuda-test-{}-dist-proc-sigint-0", std::process::id()));
    let last = metrics(&run).len();
    let said = format!("interrupted by SIGINT (Ctrl-C) at step {last}:");
    assert!(String::from_utf8_lossy(&out0.stderr).contains(&said), "{}", show(&out0));
    assert!(String::from_utf8_lossy(&out1.stderr).contains(&format!("finished at step {last}")), "{}", show(&out1));

    // A long run; kill rank 1 once rank 0 has logged a step: rank 0 must stop within the timeout, naming rank 1.
    let (rank0, mut rank1) = long_pair(&data, "kill-1", &reports);
    rank1.kill().unwrap();
    let _ = rank1.wait();
    let stderr = stops_soon(rank0, "rank 1 was killed", 60);
    assert!(
        stderr.contains("rank 1") && (stderr.contains("killed") || stderr.contains("is gone")),
        "rank 0's message must name the lost rank:\n{stderr}"
    );

    // Rank 0 killed: rank 1 stops, naming rank 0.
    let (mut rank0, rank1) = long_pair(&data, "kill-0", &reports);
    rank0.kill().unwrap();
    let _ = rank0.wait();
    let stderr = stops_soon(rank1, "rank 0 was killed", 60);
    assert!(stderr.contains("rank 0 is gone"), "rank 1's message must name the lost rank:\n{stderr}");

    // Rank 1 hangs (stopped, its connections open): rank 0 gives up after --dist-timeout (5 s), naming rank 1.
    let (rank0, mut rank1) = long_pair(&data, "hang-1", &reports);
    let pid = rank1.id().to_string();
    let signal = |sig: &str| Command::new("kill").args([sig, pid.as_str()]).status().unwrap();
    assert!(signal("-STOP").success());
    let stderr = stops_soon(rank0, "rank 1 was stopped", 5 + 60);
    signal("-CONT");
    let _ = rank1.kill();
    let _ = rank1.wait();
    assert!(stderr.contains("rank 1 sent nothing for 5 s"), "rank 0's message must name the silent rank:\n{stderr}");
}

/// Two ranks of a long run with `--dist-timeout 5`, once rank 0 has logged its first step.
fn long_pair(data: &Path, tag: &str, reports: &Path) -> (Child, Child) {
    let out = temp_dir(&format!("dist-proc-{tag}"));
    std::fs::remove_dir_all(&out).unwrap();
    let mut args = train_args(data, &out, "cuda", 100_000);
    args.extend(["--dist-timeout".into(), "5".into()]);
    let port = free_port();
    let mut rank0 = rank_process(&args, 0, port, reports);
    let rank1 = rank_process(&args, 1, port, reports);
    let start = Instant::now();
    while !std::fs::read_to_string(out.join("metrics.jsonl")).is_ok_and(|t| !t.is_empty()) {
        assert!(start.elapsed() < Duration::from_secs(300), "{tag}: rank 0 logged no step in 300 s");
        assert!(rank0.try_wait().unwrap().is_none(), "{tag}: rank 0 ended early");
        std::thread::sleep(Duration::from_millis(100));
    }
    (rank0, rank1)
}

/// Wait for `rank` to exit (it must fail, within `limit_s` seconds); its stderr.
fn stops_soon(rank: Child, what: &str, limit_s: u64) -> String {
    let t0 = Instant::now();
    let out = rank.wait_with_output().unwrap();
    let waited = t0.elapsed();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    println!("stopped {waited:?} after {what}:\n{stderr}");
    assert!(!out.status.success(), "{}", show(&out));
    assert!(waited < Duration::from_secs(limit_s), "took {waited:?} to stop after {what}");
    stderr
}
