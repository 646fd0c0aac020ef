//! Datasets: not written yet.
