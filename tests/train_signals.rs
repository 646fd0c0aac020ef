//! SIGTERM (what SLURM, Kubernetes and `timeout` send) and SIGINT stop `train` as Ctrl-C does: the step in flight
//! finishes, the checkpoint is saved, one "saved" line is printed and the exit status is 128 + the signal
//! (143, 130). `--resume` then ends with the same weights as an uninterrupted run, and metrics.jsonl has each step
//! once.
#[path = "common/fixtures.rs"]
mod fixtures;
use fixtures::{checkpoint_bits, temp_dir, write_mnist};

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

const STEPS: &str = "60";

fn train_args(data: &Path, out: &Path) -> Vec<String> {
    let mut a = vec!["train", "--dataset", "mnist", "--data-dir", data.to_str().unwrap(), "--preset", "tiny"];
    a.extend(["--set", "model.ch=8", "--set", "model.norm_groups=4", "--batch-size", "4", "--steps", STEPS]);
    a.extend(["--out", out.to_str().unwrap(), "--device", "cpu", "--quiet", "--log-every", "1", "--seed", "3"]);
    a.into_iter().map(String::from).collect()
}

fn ddpm(args: &[String]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ddpm-cuda")).args(args).output().expect("run ddpm-cuda")
}

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

fn logged_steps(dir: &Path) -> Vec<u64> {
    std::fs::read_to_string(dir.join("metrics.jsonl"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok()?["step"].as_u64())
        .collect()
}

/// Start a run, send `signal` once two steps are logged, and return its output.
fn interrupted_run(data: &Path, out: &Path, signal: &str) -> Output {
    let child = Command::new(env!("CARGO_BIN_EXE_ddpm-cuda"))
        .args(train_args(data, out))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Wait (without a time limit on the work itself) for the run to be mid-way.
    for _ in 0..60_000 {
        if logged_steps(out).len() >= 2 {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let k = Command::new("kill").args([signal, &child.id().to_string()]).status().unwrap();
    assert!(k.success());
    child.wait_with_output().unwrap()
}

fn check_signal(signal: &str, name: &str, code: i32) {
    let data = temp_dir(&format!("sig{name}-data"));
    write_mnist(&data, 40);
    let straight = temp_dir(&format!("sig{name}-straight")).join("run");
    let o = ddpm(&train_args(&data, &straight));
    assert!(o.status.success(), "{}", text(&o));

    let out = temp_dir(&format!("sig{name}")).join("run");
    let o = interrupted_run(&data, &out, signal);
    let t = text(&o);
    assert_eq!(o.status.code(), Some(code), "exit status after {signal}: {t}");
    let saved: Vec<&str> = t.lines().filter(|l| l.contains("saved")).collect();
    assert_eq!(saved.len(), 1, "one 'saved' line expected: {t}");
    assert!(saved[0].contains(name), "{}", saved[0]);
    let at = ddpm_cuda::checkpoint::Checkpoint::load(&out.join("checkpoint.safetensors")).unwrap().step;
    assert!(at >= 2 && at < STEPS.parse().unwrap(), "stopped at step {at}");
    assert_eq!(logged_steps(&out), (1..=at).collect::<Vec<_>>());

    // Resume without --steps: the run's own target; same final weights as the uninterrupted run.
    let mut args = train_args(&data, &out);
    args.push("--resume".into());
    let o = ddpm(&args);
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        checkpoint_bits(&straight.join("checkpoint.safetensors"))
            == checkpoint_bits(&out.join("checkpoint.safetensors")),
        "interrupted + resumed differs from uninterrupted"
    );
    let total: u64 = STEPS.parse().unwrap();
    assert_eq!(logged_steps(&out), (1..=total).collect::<Vec<_>>(), "each step once");
}

#[test]
fn sigterm_saves_exits_143_and_resume_matches_an_uninterrupted_run() {
    check_signal("-TERM", "SIGTERM", 143);
}

#[test]
fn sigint_saves_and_exits_130() {
    check_signal("-INT", "SIGINT", 130);
}
