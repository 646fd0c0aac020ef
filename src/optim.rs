//! Optimizers: not written yet.
