//! linear: not written yet.
