//! The background loader: shapes, value range, pixel-exact content, determinism, resume-at-step equivalence,
//! per-epoch permutations, fair flips, and a clean stop on drop.

use std::sync::Arc;
use std::time::Duration;

use ddpm_cuda::data::{Batch, Dataset, Loader};

/// n images of 2×3×4 whose bytes encode the index (so content checks are independent of the loader);
/// label = index mod 256.
fn synthetic(n: usize) -> Arc<Dataset> {
    let len = 2 * 3 * 4;
    let images = (0..n * len).map(|k| ((k / len) * 13 + (k % len) * 11) as u8).collect();
    let labels = (0..n).map(|i| i as u8).collect();
    Arc::new(Dataset { name: "synthetic".into(), images, labels, n, channels: 2, height: 3, width: 4 })
}

fn take(loader: &mut Loader, k: usize) -> Vec<Batch> {
    (0..k).map(|_| loader.next_batch().unwrap()).collect()
}

#[test]
fn batches_have_shape_range_and_exact_content() {
    let ds = synthetic(10);
    let mut loader = Loader::new(ds.clone(), 4, 7, true, 0).unwrap();
    assert_eq!(loader.steps_per_epoch(), 2); // 10 / 4, incomplete last batch dropped
    for (s, batch) in take(&mut loader, 6).into_iter().enumerate() {
        assert_eq!(batch.shape, [4, 2, 3, 4]);
        assert_eq!((batch.step, batch.epoch), (s as u64, s as u64 / 2));
        assert_eq!(batch.images.len(), 4 * 24);
        assert!(batch.images.iter().all(|v| (-1.0..=1.0).contains(v)));
        for (j, (&i, &flip)) in batch.indices.iter().zip(&batch.flipped).enumerate() {
            assert_eq!(batch.labels[j], i as u8);
            for c in 0..2 {
                for y in 0..3 {
                    for x in 0..4 {
                        let src_x = if flip { 3 - x } else { x };
                        let byte = ds.images[i * 24 + c * 12 + y * 4 + src_x];
                        let got = batch.images[j * 24 + c * 12 + y * 4 + x];
                        assert_eq!(got, byte as f32 / 127.5 - 1.0);
                    }
                }
            }
        }
        let t = batch.images_tensor().unwrap();
        assert_eq!(t.shape(), &[4, 2, 3, 4]);
    }
}

#[test]
fn same_seed_same_batches_other_seed_other_order() {
    let ds = synthetic(50);
    let a = take(&mut Loader::new(ds.clone(), 8, 42, true, 0).unwrap(), 12);
    let b = take(&mut Loader::new(ds.clone(), 8, 42, true, 0).unwrap(), 12);
    assert_eq!(a, b);
    let c = take(&mut Loader::new(ds, 8, 43, true, 0).unwrap(), 12);
    assert_ne!(a.iter().map(|x| &x.indices).collect::<Vec<_>>(), c.iter().map(|x| &x.indices).collect::<Vec<_>>());
}

#[test]
fn resuming_at_a_step_reproduces_the_uninterrupted_batches() {
    let ds = synthetic(23);
    // 23 / 5 = 4 steps per epoch; start mid-epoch (7) so both the partial and following epochs are covered.
    let full = take(&mut Loader::new(ds.clone(), 5, 9, true, 0).unwrap(), 15);
    let mut resumed = Loader::new(ds, 5, 9, true, 7).unwrap();
    assert_eq!(resumed.next_step(), 7);
    let tail = take(&mut resumed, 8);
    assert_eq!(&full[7..], &tail[..]);
    assert_eq!(resumed.next_step(), 15);
}

#[test]
fn each_epoch_is_a_fresh_permutation() {
    let ds = synthetic(12);
    let batches = take(&mut Loader::new(ds, 3, 5, false, 0).unwrap(), 4 * 5);
    let mut epochs = Vec::new();
    for epoch in batches.chunks(4) {
        let mut seen: Vec<usize> = epoch.iter().flat_map(|b| b.indices.clone()).collect();
        epochs.push(seen.clone());
        seen.sort();
        assert_eq!(seen, (0..12).collect::<Vec<_>>(), "epoch is not a permutation");
    }
    assert!(epochs.windows(2).any(|w| w[0] != w[1]), "every epoch had the same order");
    assert!(epochs.iter().any(|e| *e != (0..12).collect::<Vec<_>>()), "never shuffled");

    // With a batch that does not divide n, the indices within an epoch are still distinct.
    let ds = synthetic(10);
    for epoch in take(&mut Loader::new(ds, 4, 1, false, 0).unwrap(), 6).chunks(2) {
        let mut seen: Vec<usize> = epoch.iter().flat_map(|b| b.indices.clone()).collect();
        seen.sort();
        seen.dedup();
        assert_eq!(seen.len(), 8);
    }
}

#[test]
fn flips_happen_about_half_the_time_and_only_when_enabled() {
    let ds = synthetic(1000);
    let batches = take(&mut Loader::new(ds.clone(), 100, 3, true, 0).unwrap(), 10);
    let flips = batches.iter().flat_map(|b| &b.flipped).filter(|&&f| f).count();
    // Binomial(1000, 1/2): sd ≈ 15.8, so ±70 is over 4 sd.
    assert!((430..=570).contains(&flips), "{flips} flips out of 1000");
    let plain = take(&mut Loader::new(ds, 100, 3, false, 0).unwrap(), 3);
    assert!(plain.iter().all(|b| b.flipped.iter().all(|&f| !f)));
}

#[test]
fn bad_batch_sizes_are_errors() {
    assert!(Loader::new(synthetic(5), 0, 1, false, 0).is_err());
    assert!(Loader::new(synthetic(5), 6, 1, false, 0).is_err());
}

#[test]
fn dropping_the_loader_stops_its_thread() {
    // The worker is blocked on a full queue; drop must unblock and join it. Run the drop on another thread
    // so a hang shows up as a timeout rather than a stuck test.
    let mut loader = Loader::new(synthetic(64), 4, 1, true, 0).unwrap();
    loader.next_batch().unwrap();
    std::thread::sleep(Duration::from_millis(50)); // let the queue fill
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        drop(loader);
        done_tx.send(()).unwrap();
    });
    done_rx.recv_timeout(Duration::from_secs(10)).expect("Loader::drop did not stop the worker thread");
}
