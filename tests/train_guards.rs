//! What a training run must do when things go wrong: a loss that becomes NaN stops the run and keeps the last
//! good checkpoint; a dataset whose images do not fit the model is an error before any step; a checkpoint save
//! that dies half-way leaves the previous checkpoint loadable and unchanged.
mod common;
#[path = "common/fixtures.rs"]
mod fixtures;
use fixtures::*;

use std::process::Command;

use ddpm_cuda::checkpoint::Checkpoint;
use ddpm_cuda::train;

#[test]
fn a_non_finite_loss_stops_the_run_and_keeps_the_last_good_checkpoint() {
    let data = temp_dir("nan-data");
    write_mnist(&data, 40);
    // An absurd learning rate: the first step moves every weight by ~1e30, so the next loss overflows.
    let diverging = || {
        let mut cfg = micro_config(20);
        cfg.train.lr = 1e30;
        cfg.train.warmup_steps = 0;
        cfg
    };
    let out = temp_dir("nan-run");
    let mut opts = run_options(&data, &out, diverging(), false);
    opts.checkpoint_every = 1;
    let err = train::run(opts).err().expect("a diverging run must fail").to_string();
    assert!(err.contains("the loss became") && err.contains("last checkpoint"), "{err}");
    assert!(err.contains("NaN") || err.contains("inf"), "{err}");
    eprintln!("{err}");
    let bad_step: u64 =
        err.split("at step ").nth(1).unwrap().split(|c: char| !c.is_ascii_digit()).next().unwrap().parse().unwrap();
    assert!(bad_step >= 2, "{err}");

    // The checkpoint on disk is the last good step's, finite, and the same as a run that stopped there.
    let ck = Checkpoint::load(&out.join("checkpoint.safetensors")).unwrap();
    assert_eq!(ck.step, bad_step - 1);
    for t in ck.model.iter().chain(&ck.ema).chain(&ck.adam_m).chain(&ck.adam_v) {
        assert!(t.to_vec().unwrap().iter().all(|v| v.is_finite()), "a non-finite value was saved");
    }
    let good = temp_dir("nan-good");
    let mut cfg = diverging();
    cfg.train.steps = bad_step - 1;
    train::run(run_options(&data, &good, cfg, false)).unwrap();
    assert!(
        checkpoint_bits(&good.join("checkpoint.safetensors")) == checkpoint_bits(&out.join("checkpoint.safetensors")),
        "the kept checkpoint is not the last good step's"
    );
    // Resuming it meets the same NaN again, and still leaves the checkpoint as it was.
    let before = std::fs::read(out.join("checkpoint.safetensors")).unwrap();
    let err = train::run(run_options(&data, &out, diverging(), true)).err().expect("resume diverges too").to_string();
    assert!(err.contains(&format!("at step {bad_step}")), "{err}");
    assert!(before == std::fs::read(out.join("checkpoint.safetensors")).unwrap());
}

/// `ddpm-cuda train` on the CPU (micro model) with checkpoints every 2 steps, and `envs`.
fn train_cli(data: &std::path::Path, out: &std::path::Path, steps: u64, envs: &[(&str, &str)]) -> std::process::Output {
    let (data, out, steps) = (data.to_str().unwrap(), out.to_str().unwrap(), steps.to_string());
    let args = [
        "train",
        "--dataset",
        "mnist",
        "--data-dir",
        data,
        "--preset",
        "tiny",
        "--set",
        "model.ch=8",
        "--set",
        "model.norm_groups=4",
        "--steps",
        &steps,
        "--batch-size",
        "4",
        "--device",
        "cpu",
        "--out",
        out,
        "--seed",
        "5",
        "--log-every",
        "5",
        "--checkpoint-every",
        "2",
        "--quiet",
    ];
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ddpm-cuda"));
    cmd.args(args);
    for (k, v) in envs {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

#[test]
fn the_nan_test_hook_stops_the_run_at_its_step_and_keeps_the_checkpoint_before_it() {
    let data = temp_dir("hook-data");
    write_mnist(&data, 24);
    let out = temp_dir("hook-run");
    let run = train_cli(&data, &out, 6, &[(train::TEST_NAN_AT_STEP_VAR, "4")]);
    let err = String::from_utf8_lossy(&run.stderr);
    assert!(!run.status.success(), "{err}");
    assert!(err.contains("the loss became NaN at step 4") && err.contains("last checkpoint"), "{err}");
    // The checkpoint of step 2 (saved before the NaN), the same as a run that stopped there.
    assert_eq!(Checkpoint::load(&out.join("checkpoint.safetensors")).unwrap().step, 2);
    let good = temp_dir("hook-good");
    let run = train_cli(&data, &good, 2, &[]);
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    assert!(
        checkpoint_bits(&good.join("checkpoint.safetensors")) == checkpoint_bits(&out.join("checkpoint.safetensors")),
        "the kept checkpoint is not step 2's"
    );
}

#[test]
fn images_of_the_wrong_size_for_the_model_are_an_error() {
    let data = temp_dir("size-data");
    write_mnist(&data, 8);
    for (channels, size) in [(1, 32), (3, 28)] {
        let mut cfg = micro_config(3);
        cfg.model.image_size = size;
        cfg.model.in_channels = channels;
        let out = temp_dir(&format!("size-run-{channels}-{size}"));
        let err = train::run(run_options(&data, &out, cfg, false)).err().expect("size mismatch").to_string();
        assert!(
            err.contains("1×28×28") && err.contains(&format!("{channels}×{size}×{size}")),
            "{channels}×{size}: {err}"
        );
        assert!(!out.join("checkpoint.safetensors").exists(), "a checkpoint was written");
    }
}

/// The save is killed half-way through writing (a file-size limit: SIGXFSZ) during a resumed run's final save.
#[test]
fn a_save_that_dies_half_way_leaves_the_previous_checkpoint_loadable() {
    let data = temp_dir("atomic-data");
    write_mnist(&data, 40);
    let out = temp_dir("atomic-run");
    train::run(run_options(&data, &out, micro_config(2), false)).unwrap();
    let path = out.join("checkpoint.safetensors");
    let before = std::fs::read(&path).unwrap();
    let limit_kib = before.len() / 2 / 1024;
    assert!(limit_kib > 64, "checkpoint too small for the test: {} bytes", before.len());

    // The same run continued to step 4 through the CLI, under `ulimit -f` of half the checkpoint's size.
    let script = format!(
        "ulimit -f {limit_kib}; exec \"$0\" train --dataset mnist --data-dir \"$1\" --out \"$2\" --resume --steps 4 \
         --device cpu --quiet --log-every 1000"
    );
    let o = Command::new("bash")
        .args(["-c", &script, env!("CARGO_BIN_EXE_ddpm-cuda")])
        .arg(&data)
        .arg(&out)
        .output()
        .unwrap();
    let (status, stderr) = (o.status, String::from_utf8_lossy(&o.stderr));
    assert!(!status.success(), "the save under the size limit did not fail: {stderr}");
    // The checkpoint in place is the previous one, byte for byte, and loads.
    assert!(std::fs::read(&path).unwrap() == before, "the previous checkpoint changed");
    assert_eq!(Checkpoint::load(&path).unwrap().step, 2);

    // It really died half-way through the checkpoint: the temporary file holds exactly the allowed bytes.
    let tmp = out.join("checkpoint.safetensors.tmp");
    let partial = std::fs::metadata(&tmp).map(|m| m.len()).unwrap_or(0);
    assert_eq!(partial, (limit_kib * 1024) as u64, "the save did not stop half-way ({status}): {stderr}");

    // And the run can be resumed from it to the end.
    let t = train::run(run_options(&data, &out, micro_config(4), true)).unwrap();
    assert_eq!(t.step, 4);
}
