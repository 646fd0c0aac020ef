//! attention: not written yet.
