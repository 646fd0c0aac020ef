//! Philox4x32-10 counter-based RNG: not written yet.
