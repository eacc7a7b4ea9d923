//! The only place with `unsafe`: thin wrappers over Linux system calls that std and monoio do
//! not offer. Each `unsafe` block states the invariant that makes it sound; everything above
//! this module is safe code.

pub(crate) mod activation;
pub(crate) mod inotify;
pub(crate) mod ktls;
pub(crate) mod listener;
pub(crate) mod rlimit;
pub mod signals;
pub(crate) mod splice;
