//! System interfaces std does not cover: the only module with `unsafe`; each block states its
//! invariant.

pub mod activation;
pub mod rlimit;
