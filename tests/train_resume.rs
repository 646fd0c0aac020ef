//! Resume is exact: N steps + resume + N steps ends with the same weights, EMA and Adam state, bit for bit, as 2N
//! steps uninterrupted. Bad checkpoints give clear errors and leave the run dir untouched.
mod common;
#[path = "common/fixtures.rs"]
mod fixtures;
use fixtures::*;

use ddpm_cuda::train;

#[test]
fn resume_is_bit_exact() {
    let data = temp_dir("resume-data");
    write_mnist(&data, 40);
    let straight = temp_dir("resume-straight");
    train::run(run_options(&data, &straight, micro_config(6), false)).unwrap();

    let split = temp_dir("resume-split");
    train::run(run_options(&data, &split, micro_config(3), false)).unwrap();
    let t = train::run(run_options(&data, &split, micro_config(6), true)).unwrap();
    assert_eq!(t.step, 6);

    let a = checkpoint_bits(&straight.join("checkpoint.safetensors"));
    let b = checkpoint_bits(&split.join("checkpoint.safetensors"));
    assert_eq!(a.len(), b.len());
    assert!(a == b, "resumed run differs from the uninterrupted one");
    // The loss was logged for every step, once.
    let lines = std::fs::read_to_string(split.join("metrics.jsonl")).unwrap();
    assert_eq!(lines.lines().count(), 6);
    assert!(split.join("loss.png").exists());
}

#[test]
fn bad_checkpoints_are_clear_errors_and_touch_nothing() {
    let data = temp_dir("badck-data");
    write_mnist(&data, 40);

    // Missing checkpoint: the run dir is not even created.
    let missing = std::env::temp_dir().join(format!("ddpm-cuda-test-{}-nothing-here", std::process::id()));
    let err = train::run(run_options(&data, &missing, micro_config(2), true)).err().unwrap().to_string();
    assert!(err.contains("checkpoint.safetensors"), "{err}");
    assert!(!missing.exists());

    // A real run dir, then a corrupt checkpoint in it.
    let out = temp_dir("badck-run");
    train::run(run_options(&data, &out, micro_config(2), false)).unwrap();
    let ck = out.join("checkpoint.safetensors");
    // Every file under the run dir (including the diffusers/ export folder), with its bytes.
    let snapshot = |dir: &std::path::Path| {
        let (mut v, mut todo): (Vec<(String, Vec<u8>)>, Vec<std::path::PathBuf>) = (vec![], vec![dir.to_path_buf()]);
        while let Some(d) = todo.pop() {
            for p in std::fs::read_dir(d).unwrap().map(|e| e.unwrap().path()) {
                if p.is_dir() {
                    todo.push(p);
                } else {
                    v.push((p.strip_prefix(dir).unwrap().to_string_lossy().into_owned(), std::fs::read(&p).unwrap()));
                }
            }
        }
        v.sort();
        v
    };
    let good = std::fs::read(&ck).unwrap();
    std::fs::write(&ck, &good[..good.len() / 2]).unwrap();
    let before = snapshot(&out);
    let err = train::run(run_options(&data, &out, micro_config(4), true)).err().unwrap().to_string();
    assert!(err.contains("checkpoint.safetensors"), "{err}");
    assert_eq!(before, snapshot(&out), "a failed resume changed the run dir");

    // A checkpoint whose tensors do not fit its config (wrong shapes).
    std::fs::write(&ck, &good).unwrap();
    let mut wrong = ddpm_cuda::checkpoint::Checkpoint::load(&ck).unwrap();
    wrong.config.model.ch = 16;
    let names =
        ddpm_cuda::train::Trainer::new(micro_config(2), 0, ddpm_cuda::Device::Cpu).unwrap().params.names().to_vec();
    wrong.save(&ck, &names).unwrap();
    let before = snapshot(&out);
    let err = train::run(run_options(&data, &out, micro_config(4), true)).err().unwrap().to_string();
    assert!(err.contains("checkpoint.safetensors") && err.contains("expected"), "{err}");
    assert_eq!(before, snapshot(&out));

    // Starting a fresh run over an existing checkpoint is refused.
    std::fs::write(&ck, &good).unwrap();
    assert!(train::run(run_options(&data, &out, micro_config(4), false)).is_err());
}
