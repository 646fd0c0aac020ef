//! concat: not written yet.
