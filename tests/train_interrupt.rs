//! Ctrl-C: the loop finishes its step, saves a checkpoint and returns; resuming ends bit for bit where an
//! uninterrupted run ends. (Its own test binary: the interrupt flag is process-wide.)
//!
//! Each resume passes a different `seed` than the run it continues: the checkpoint's weights, Adam state, RNG
//! states and data seed must rule, so a resume that ignored the checkpoint (retraining from scratch, or
//! re-deriving any stream from the command line's seed) ends elsewhere. The runs cross an epoch boundary
//! (40 images, batch 4: 10 steps per epoch), so the data order after the resume is tested too.
mod common;
#[path = "common/fixtures.rs"]
mod fixtures;
use fixtures::*;

use std::sync::atomic::Ordering;

use ddpm_cuda::train;

/// `run_options` with another seed: the one a resume must ignore.
fn with_seed(mut o: train::RunOptions, seed: u64) -> train::RunOptions {
    o.seed = seed;
    o
}

#[test]
fn ctrl_c_saves_and_resume_continues_exactly() {
    let data = temp_dir("int-data");
    write_mnist(&data, 40);
    let steps = 13;
    let straight = temp_dir("int-straight");
    train::run(run_options(&data, &straight, micro_config(steps), false)).unwrap();
    let want = checkpoint_bits(&straight.join("checkpoint.safetensors"));

    // Interrupted during its first step; resumed twice: to step 8 (still epoch 0), then across the epoch
    // boundary to the end, each resume with a seed of its own.
    let out = temp_dir("int-run");
    let flag = train::interrupt_flag();
    flag.store(true, Ordering::SeqCst); // as if Ctrl-C arrived during the first step
    let t = train::run(run_options(&data, &out, micro_config(steps), false)).unwrap();
    assert_eq!(t.step, 1, "an interrupted run stops after the step in flight");
    flag.store(false, Ordering::SeqCst);
    let ck = ddpm_cuda::checkpoint::Checkpoint::load(&out.join("checkpoint.safetensors")).unwrap();
    assert_eq!(ck.step, 1);
    let t = train::run(with_seed(run_options(&data, &out, micro_config(8), true), 999)).unwrap();
    assert_eq!(t.step, 8);
    let t = train::run(with_seed(run_options(&data, &out, micro_config(steps), true), 12345)).unwrap();
    assert_eq!(t.step, steps);
    assert!(want == checkpoint_bits(&out.join("checkpoint.safetensors")), "the resumed run differs");

    // The seed matters (so the comparison above can fail): the same steps from another seed end elsewhere.
    let other = temp_dir("int-other-seed");
    train::run(with_seed(run_options(&data, &other, micro_config(steps), false), 999)).unwrap();
    assert!(want != checkpoint_bits(&other.join("checkpoint.safetensors")), "the seed changed nothing");
}
