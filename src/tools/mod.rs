//! The subcommands that are not the terminator: they drive it, test it or prepare for it, and
//! the serve path (`proxy`, `runtime`, `tls`, `control`, `telemetry`) imports none of them, so a
//! reader of the data path never opens this folder.

pub mod check;
pub mod demo;
pub mod healthcheck;
pub mod load;
/// The plaintext test service behind `ringtls upstream` (echo, sink or source): the peer a test
/// or benchmark puts behind ringtls.
pub mod peer;
pub mod pki;
