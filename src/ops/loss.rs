//! loss: not written yet.
