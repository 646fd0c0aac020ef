//! CUDA graphs: record what a piece of code enqueues on a backend's stream once, then replay it with one launch.
//!
//! A replay runs the recorded kernels with the arguments they had at capture, on the same buffers: whatever changes
//! from one replay to the next (a timestep, a coefficient, a Philox offset) must be read by the kernels from device
//! memory, and every buffer the graph reads or writes must outlive it at a fixed address. Buffers allocated and
//! freed inside the capture are the graph's own (stream-ordered allocations become graph memory nodes, reused at
//! every replay). Copies between the device and pageable host memory are refused while capturing
//! (`CudaBackend::upload`/`download`): their host buffers would be read or written again at every replay, long after
//! they are gone. Copies into pinned memory that outlives the graph (`PinnedHost::copy_from`, the training step's
//! loss and norm) are what a graph is for, and are recorded as copy nodes. Anything that cannot be captured makes
//! `capture` fail, and callers fall back to plain launches (`GraphMode::Auto`) or report it (`GraphMode::On`).

use std::sync::atomic::Ordering;
use std::sync::Arc;

use cudarc::driver::sys::{CUgraphInstantiate_flags, CUstreamCaptureMode};

use super::cuda::CudaBackend;
use crate::{Error, Result};

/// `--cuda-graphs`: whether the steps that repeat (a sampling step, a training step) are captured and replayed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum GraphMode {
    /// Use graphs on a CUDA device; if capturing fails, say why once and launch plainly.
    #[default]
    Auto,
    /// Use graphs; a capture that fails is an error.
    On,
    /// Plain launches.
    Off,
}

/// An instantiated graph, replayed on the stream it was captured from.
pub struct Graph {
    graph: cudarc::driver::CudaGraph,
}

impl Graph {
    /// Replay the recorded work once, in stream order.
    pub fn launch(&self) -> Result<()> {
        self.graph.launch().map_err(|e| Error::Cuda(format!("cuGraphLaunch: {e:?}")))
    }
}

/// Record what `record` enqueues on `be`'s stream, without running it, and instantiate it. The stream is back to
/// normal afterwards whether or not `record` succeeded.
pub fn capture(be: &Arc<CudaBackend>, record: impl FnOnce() -> Result<()>) -> Result<Graph> {
    let stream = be.stream();
    stream
        .begin_capture(CUstreamCaptureMode::CU_STREAM_CAPTURE_MODE_THREAD_LOCAL)
        .map_err(|e| Error::Cuda(format!("cuStreamBeginCapture: {e:?}")))?;
    be.capturing.store(true, Ordering::SeqCst);
    let recorded = record();
    be.capturing.store(false, Ordering::SeqCst);
    let graph = stream.end_capture(CUgraphInstantiate_flags(0));
    recorded?;
    match graph {
        Ok(Some(graph)) => Ok(Graph { graph }),
        Ok(None) => Err(Error::Cuda("stream capture recorded nothing".into())),
        Err(e) => Err(Error::Cuda(format!("cuStreamEndCapture / cuGraphInstantiate: {e:?}"))),
    }
}
