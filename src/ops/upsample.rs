//! upsample: not written yet.
