//! The only place with `unsafe`: thin wrappers over Linux system calls that std and monoio do
//! not offer. Each `unsafe` block states the invariant that makes it sound; everything above
//! this module is safe code.

pub mod activation;
pub mod inotify;
pub mod ktls;
pub mod listener;
pub mod rlimit;
pub mod signals;
pub mod splice;
