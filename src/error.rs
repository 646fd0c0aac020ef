//! One error type for the library. Every user-reachable mistake (a bad shape, a bad file, a missing GPU)
//! comes back as an `Error`, never a panic.

use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A tensor shape or argument that an op cannot accept.
    #[error("shape error in {op}: {msg}")]
    Shape { op: &'static str, msg: String },

    /// A file that could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// A file whose contents are wrong (bad magic, truncated, mismatched counts, ...).
    #[error("{}: {msg}", path.display())]
    BadFile { path: PathBuf, msg: String },

    /// No usable CUDA device, driver or kernels.
    #[error("no CUDA device: {0}")]
    NoCuda(String),

    /// A CUDA call that failed on a present device.
    #[error("CUDA error: {0}")]
    Cuda(String),

    /// Operands of one op (or buffers of one kernel launch) on different devices.
    #[error("{op}: tensors on different devices ({devices})")]
    DeviceMismatch { op: &'static str, devices: String },

    /// An op that exists on one backend but not (yet) on another.
    #[error("{op} is not implemented on {device}")]
    Unsupported { op: &'static str, device: String },

    /// Anything else, with a message that says what went wrong.
    #[error("{0}")]
    Msg(String),
}

pub type Result<T> = std::result::Result<T, Error>;

/// The one conversion from the CUDA driver's errors (allocation, copy, synchronisation, module load).
impl From<cudarc::driver::DriverError> for Error {
    fn from(e: cudarc::driver::DriverError) -> Self {
        Error::Cuda(format!("{e:?}"))
    }
}

impl Error {
    pub fn shape(op: &'static str, msg: impl Into<String>) -> Self {
        Error::Shape { op, msg: msg.into() }
    }
    pub fn io(path: impl AsRef<Path>, source: std::io::Error) -> Self {
        Error::Io { path: path.as_ref().to_path_buf(), source }
    }
    pub fn bad_file(path: impl AsRef<Path>, msg: impl Into<String>) -> Self {
        Error::BadFile { path: path.as_ref().to_path_buf(), msg: msg.into() }
    }
    pub fn msg(msg: impl Into<String>) -> Self {
        Error::Msg(msg.into())
    }
}

/// Early-return a shape error when a condition fails: `ensure_shape!(cond, "op", "fmt", args..)`.
#[macro_export]
macro_rules! ensure_shape {
    ($cond:expr, $op:expr, $($fmt:tt)+) => {
        if !$cond {
            return Err($crate::Error::shape($op, format!($($fmt)+)));
        }
    };
}
