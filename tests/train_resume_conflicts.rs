//! `train --resume` honours the run: the checkpoint's config rules, a conflicting --preset/--config/--set/--lr/
//! --batch-size is an error naming it that leaves the run dir byte-identical, --steps may move the target
//! (printed), and metrics.jsonl is cut back to the checkpoint's step so that no step appears twice.
#[path = "common/fixtures.rs"]
mod fixtures;
use fixtures::{checkpoint_bits, temp_dir, write_mnist};

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn ddpm(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ddpm-cuda")).args(args).output().expect("run ddpm-cuda")
}

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

/// `train` of the micro model on `data` into `out`; `extra` last.
fn train(data: &Path, out: &Path, extra: &[&str]) -> Output {
    let mut args = vec!["train", "--dataset", "mnist", "--data-dir", data.to_str().unwrap()];
    args.extend(["--out", out.to_str().unwrap(), "--device", "cpu", "--quiet", "--log-every", "1"]);
    args.extend(extra);
    ddpm(&args)
}

const MODEL: [&str; 8] =
    ["--preset", "tiny", "--set", "model.ch=8", "--set", "model.norm_groups=4", "--batch-size", "4"];

/// Every file under `dir` with its bytes.
fn snapshot(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let (mut v, mut todo) = (vec![], vec![dir.to_path_buf()]);
    while let Some(d) = todo.pop() {
        for p in std::fs::read_dir(d).unwrap().map(|e| e.unwrap().path()) {
            if p.is_dir() {
                todo.push(p);
            } else {
                v.push((p.strip_prefix(dir).unwrap().to_path_buf(), std::fs::read(&p).unwrap()));
            }
        }
    }
    v.sort();
    v
}

fn logged_steps(dir: &Path) -> Vec<u64> {
    std::fs::read_to_string(dir.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["step"].as_u64().unwrap())
        .collect()
}

#[test]
fn conflicting_arguments_fail_and_leave_the_run_dir_byte_identical() {
    let data = temp_dir("conflict-data");
    write_mnist(&data, 40);
    let out = temp_dir("conflict").join("run");
    let o = train(&data, &out, &[&MODEL[..], &["--steps", "3"]].concat());
    assert!(o.status.success(), "{}", text(&o));
    let before = snapshot(&out);
    let cfg = out.join("other.toml");
    std::fs::write(&cfg, ddpm_cuda::config::Config::preset("mnist").unwrap().to_toml()).unwrap();
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["--preset", "mnist"], "--preset mnist"),
        (vec!["--config", cfg.to_str().unwrap()], "--config"),
        (vec!["--set", "model.ch=16"], "--set model.ch=16"),
        (vec!["--lr", "0.5"], "--lr 0.5"),
        (vec!["--batch-size", "8"], "--batch-size 8"),
        (vec!["--steps", "2"], "already at step 3"),
    ];
    for (extra, needle) in cases {
        let o = train(&data, &out, &[&["--resume"][..], &extra].concat());
        assert!(!o.status.success(), "{extra:?} was accepted: {}", text(&o));
        assert!(text(&o).contains(needle), "{extra:?}: the message does not name {needle}: {}", text(&o));
        // The run dir (with other.toml, written before the snapshot below is compared) is untouched.
        let mut now = snapshot(&out);
        now.retain(|(p, _)| p != Path::new("other.toml"));
        assert!(before == now, "{extra:?}: a failed resume changed the run dir");
    }
    // The model flags that agree with the checkpoint are accepted, and the seed is the checkpoint's.
    let o = train(&data, &out, &[&["--resume", "--seed", "99"][..], &MODEL, &["--steps", "4"]].concat());
    assert!(o.status.success(), "{}", text(&o));
    let t = text(&o);
    assert!(t.contains("from 3 to 4 steps"), "the new target is not printed: {t}");
    assert!(t.contains("come from the checkpoint") && t.contains("--seed 99 is not used"), "{t}");
    assert_eq!(logged_steps(&out), vec![1, 2, 3, 4]);
}

#[test]
fn resume_cuts_metrics_back_to_the_checkpoint_and_keeps_the_runs_target() {
    let data = temp_dir("cut-data");
    write_mnist(&data, 40);
    let straight = temp_dir("cut-straight").join("run");
    let o = train(&data, &straight, &[&MODEL[..], &["--steps", "5", "--seed", "7"]].concat());
    assert!(o.status.success(), "{}", text(&o));

    let out = temp_dir("cut").join("run");
    let o = train(&data, &out, &[&MODEL[..], &["--steps", "3", "--seed", "7"]].concat());
    assert!(o.status.success(), "{}", text(&o));
    // As after a crash between checkpoints: lines for steps 4 and 5 that the checkpoint (step 3) does not hold.
    let metrics = out.join("metrics.jsonl");
    let mut text0 = std::fs::read_to_string(&metrics).unwrap();
    text0.push_str("{\"step\":4,\"loss\":999.0,\"lr\":0.0,\"grad_norm\":0.0,\"img_per_s\":0.0,\"elapsed_s\":0.0}\n");
    text0.push_str("{\"step\":5,\"loss\":999.0,\"lr\":0.0,\"grad_norm\":0.0,\"img_per_s\":0.0,\"elapsed_s\":0.0}\n");
    std::fs::write(&metrics, text0).unwrap();
    let o = train(&data, &out, &["--resume", "--steps", "5"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("dropped 2 line(s)"), "{}", text(&o));
    assert_eq!(logged_steps(&out), vec![1, 2, 3, 4, 5], "each step once, in order");
    assert!(!std::fs::read_to_string(&metrics).unwrap().contains("999"), "the stale lines survived");
    assert!(
        checkpoint_bits(&straight.join("checkpoint.safetensors"))
            == checkpoint_bits(&out.join("checkpoint.safetensors"))
    );
    // The logged losses equal the uninterrupted run's.
    let losses = |d: &Path| -> Vec<String> {
        std::fs::read_to_string(d.join("metrics.jsonl"))
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["loss"].to_string())
            .collect()
    };
    assert_eq!(losses(&straight), losses(&out));

    // Without --steps the run's own target (5) stands: resuming a finished run takes no step.
    let before = checkpoint_bits(&out.join("checkpoint.safetensors"));
    let o = train(&data, &out, &["--resume"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("at step 5 of 5"), "{}", text(&o));
    assert_eq!(logged_steps(&out), vec![1, 2, 3, 4, 5]);
    assert!(before == checkpoint_bits(&out.join("checkpoint.safetensors")));
}
