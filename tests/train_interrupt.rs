//! Ctrl-C: the loop finishes its step, saves a checkpoint and returns; resuming ends bit for bit where an
//! uninterrupted run ends. (Its own test binary: the interrupt flag is process-wide.)
mod common;
#[path = "common/fixtures.rs"]
mod fixtures;
use fixtures::*;

use std::sync::atomic::Ordering;

use ddpm_cuda::train;

#[test]
fn ctrl_c_saves_and_resume_continues_exactly() {
    let data = temp_dir("int-data");
    write_mnist(&data, 40);
    let straight = temp_dir("int-straight");
    train::run(run_options(&data, &straight, micro_config(5), false)).unwrap();

    let out = temp_dir("int-run");
    let flag = train::interrupt_flag();
    flag.store(true, Ordering::SeqCst); // as if Ctrl-C arrived during the first step
    let t = train::run(run_options(&data, &out, micro_config(5), false)).unwrap();
    assert_eq!(t.step, 1, "an interrupted run stops after the step in flight");
    flag.store(false, Ordering::SeqCst);
    let ck = ddpm_cuda::checkpoint::Checkpoint::load(&out.join("checkpoint.safetensors")).unwrap();
    assert_eq!(ck.step, 1);
    train::run(run_options(&data, &out, micro_config(5), true)).unwrap();
    assert!(
        checkpoint_bits(&straight.join("checkpoint.safetensors"))
            == checkpoint_bits(&out.join("checkpoint.safetensors"))
    );
}
