//! The simulated kernel (work in progress).
