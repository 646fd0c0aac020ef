//! elementwise: not written yet.
