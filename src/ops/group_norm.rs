//! group_norm: not written yet.
