//! Data-parallel training over NCCL: one model replica per GPU, each driven by its own thread with its own
//! backend (context, stream, memory), every step's global batch split evenly over the replicas, the gradients
//! all-reduced (`replica`), the same update everywhere. The replica of global rank 0 is the caller's own
//! `Trainer` (its thread keeps logging, samples and checkpoints); the other local replicas run in worker threads.
//!
//! - `comm`: the NCCL communicator of one rank (cudarc's `nccl::sys`, libnccl loaded at run time);
//! - `replica`: one step on one replica (batch slice, noise rows, the Trainer's loss and gradients with the
//!   bucketed all-reduce overlapped with the backward pass, the Trainer's one-pass optimizer);
//! - `launch`: which GPUs (`--device cuda:0,1,2,3`, `cuda:all`) and, for several processes, the torchrun / SLURM
//!   variables and the TCP handshake that hands every process the NCCL id.

pub mod comm;
pub mod launch;
pub mod replica;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::Arc;
use std::thread::JoinHandle;

use crate::backend::cuda::CudaBackend;
use crate::checkpoint::Checkpoint;
use crate::data::loader::{Batch, Loader};
use crate::train::Trainer;
use crate::{Device, Error, Result};

use comm::{Comm, UniqueId};
pub use launch::{Layout, ProcessGroup};
use replica::Replica;

enum Msg {
    Step(Arc<Batch>),
}

type StepResult = Result<bool>;

struct Worker {
    rank: usize,
    tx: Sender<Msg>,
    rx: Receiver<StepResult>,
    handle: Option<JoinHandle<()>>,
}

/// The replicas of this process and the communicator they share with every other process's.
pub struct DataParallel {
    replica: Replica,
    workers: Vec<Worker>,
    /// Every rank agreed to stop after this step (see `step`).
    stop: bool,
    /// The other processes, when the world spans several (dropped last: it tells them this one finished).
    group: Option<ProcessGroup>,
}

fn cuda_backend(d: &Device) -> Result<Arc<CudaBackend>> {
    match d {
        Device::Cuda(b) => Ok(b.clone()),
        Device::Cpu => Err(Error::msg("data-parallel training runs on CUDA devices (--device cuda:0,1,...)")),
    }
}

impl DataParallel {
    /// Meet the other processes if the layout spans several (the NCCL id comes from rank 0), else make the id
    /// here; then `start`.
    pub fn launch(trainer: &Trainer, layout: &Layout) -> Result<DataParallel> {
        let (group, id) = match &layout.process {
            Some(env) => {
                let (g, id) = ProcessGroup::rendezvous(env, layout.timeout)?;
                (Some(g), id)
            }
            None => (None, comm::unique_id()?),
        };
        let mut dp = DataParallel::start(trainer, layout, &id)?;
        dp.group = group;
        Ok(dp)
    }

    /// Start the replicas of `layout` around `trainer` (global rank `layout.first_rank`, on `layout.devices[0]`):
    /// one worker thread per further local device, each with a copy of the trainer's whole state (weights, EMA,
    /// Adam moments, step, RNG streams) on its own GPU; all of them join the communicator `id`.
    pub fn start(trainer: &Trainer, layout: &Layout, id: &UniqueId) -> Result<DataParallel> {
        let batch = trainer.config.train.batch_size;
        if !batch.is_multiple_of(layout.world) {
            return Err(Error::msg(format!(
                "train.batch_size {batch} (the global batch) does not split evenly over {} GPUs: choose a multiple of {}",
                layout.world, layout.world
            )));
        }
        let mut state = trainer.checkpoint()?;
        let host = |v: &[crate::Tensor]| v.iter().map(|t| t.to_device(&Device::Cpu)).collect::<Result<Vec<_>>>();
        state.model = host(&state.model)?;
        state.ema = host(&state.ema)?;
        state.adam_m = host(&state.adam_m)?;
        state.adam_v = host(&state.adam_v)?;
        let mut workers = Vec::new();
        let mut ready = Vec::new();
        let (bucket_bytes, overlap) = (layout.bucket_bytes, layout.overlap);
        for (i, device) in layout.devices.iter().enumerate().skip(1) {
            let rank = layout.first_rank + i;
            let backend = cuda_backend(device)?;
            let (state, id, world) = (state.clone(), *id, layout.world);
            let buckets = (bucket_bytes, overlap);
            let (tx, rx_msg) = channel::<Msg>();
            let (tx_res, rx) = channel::<StepResult>();
            let (tx_ready, rx_ready) = channel::<Result<()>>();
            let handle = std::thread::Builder::new()
                .name(format!("ddpm-replica-{rank}"))
                .spawn(move || worker(rank, world, backend, state, id, buckets, rx_msg, tx_res, tx_ready))
                .map_err(|e| Error::msg(format!("could not start the thread of replica {rank}: {e}")))?;
            ready.push(rx_ready);
            workers.push(Worker { rank, tx, rx, handle: Some(handle) });
        }
        // Our own rank joins while the workers join theirs (NCCL's init waits for every rank).
        let comm = Comm::join(&cuda_backend(&trainer.device)?, layout.first_rank, layout.world, id)?;
        let replica = Replica::new(trainer, comm, bucket_bytes, overlap);
        for (w, r) in workers.iter().zip(ready) {
            r.recv().map_err(|_| Error::msg(format!("replica {} stopped while starting", w.rank)))??;
        }
        Ok(DataParallel { replica: replica?, workers, stop: false, group: None })
    }

    pub fn world(&self) -> usize {
        self.replica.world()
    }

    /// Whether every rank has agreed to stop after the last step (see `step`).
    pub fn stop_agreed(&self) -> bool {
        self.stop
    }

    /// Queue one step of every local replica on its slice of `batch` through each replica's `Trainer`
    /// (`trainer.report()` gives the step's mean loss and global norm; nothing here waits for the device). A stop
    /// asked for in this process (`interrupted`: Ctrl-C, SIGTERM) ends the run after this step when this process
    /// runs every rank; across processes it is agreed through the step's all-reduce and read back one step later,
    /// so every rank stops after the same step. `stop_agreed` says when.
    pub fn step(&mut self, trainer: &mut Trainer, batch: &Batch, interrupted: &AtomicBool) -> Result<()> {
        let shared = Arc::new(batch.clone());
        for w in &self.workers {
            w.tx.send(Msg::Step(shared.clone())).map_err(|_| Error::msg(format!("replica {} has stopped", w.rank)))?;
        }
        let asked = interrupted.load(Ordering::SeqCst);
        let mine = self.replica.step(trainer, &shared, asked, self.group.is_some());
        let mut worker_err = None;
        for w in &self.workers {
            match w.rx.recv() {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => {
                    worker_err.get_or_insert(format!("replica {}: {e}", w.rank));
                }
                Err(_) => {
                    worker_err.get_or_insert(format!("replica {} stopped unexpectedly", w.rank));
                }
            }
        }
        if (mine.is_err() || worker_err.is_some()) && self.group.is_some() {
            // A collective failed, likely because another process went away: give the watchdog a moment to
            // name the lost rank (it ends the process) before this more generic error does.
            std::thread::sleep(std::time::Duration::from_secs(2));
        }
        let agreed_before = mine?;
        if let Some(e) = worker_err {
            return Err(Error::msg(e));
        }
        self.stop = if self.group.is_some() { agreed_before } else { asked };
        if self.stop {
            interrupted.store(true, Ordering::SeqCst);
        }
        Ok(())
    }
}

impl Drop for DataParallel {
    fn drop(&mut self) {
        for w in &mut self.workers {
            // Closing the channel ends the worker's loop.
            let (dead, _) = channel();
            drop(std::mem::replace(&mut w.tx, dead));
            if let Some(h) = w.handle.take() {
                let _ = h.join();
            }
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn worker(
    rank: usize,
    world: usize,
    backend: Arc<CudaBackend>,
    state: Checkpoint,
    id: UniqueId,
    (bucket_bytes, overlap): (usize, bool),
    rx: Receiver<Msg>,
    tx: Sender<StepResult>,
    ready: Sender<Result<()>>,
) {
    let started = (|| {
        let trainer = Trainer::from_checkpoint(state, Device::Cuda(backend.clone()))?;
        let comm = Comm::join(&backend, rank, world, &id)?;
        let replica = Replica::new(&trainer, comm, bucket_bytes, overlap)?;
        Ok::<_, Error>((trainer, replica))
    })();
    let (mut trainer, mut replica) = match started {
        Ok(s) => {
            let _ = ready.send(Ok(()));
            s
        }
        Err(e) => {
            let _ = ready.send(Err(e));
            return;
        }
    };
    while let Ok(Msg::Step(batch)) = rx.recv() {
        let r = replica.step(&mut trainer, &batch, false, false);
        if tx.send(r).is_err() {
            return;
        }
    }
}

/// The loop of a process that does not hold rank 0: the same steps on the same batches, no files written; it
/// stops where rank 0 does (the end, or an agreed interrupt).
pub fn follow(
    dp: &mut DataParallel,
    trainer: &mut Trainer,
    loader: &mut Loader,
    interrupted: &AtomicBool,
) -> Result<()> {
    while trainer.step < trainer.config.train.steps {
        let batch = loader.next_batch()?;
        dp.step(trainer, &batch, interrupted)?;
        if dp.stop_agreed() {
            break;
        }
    }
    Ok(())
}
