//! embedding: not written yet.
