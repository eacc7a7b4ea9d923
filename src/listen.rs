//! The workers' listening sockets: one SO_REUSEPORT socket per worker per `--listen` address,
//! all created on the main thread so a bind failure stops the start before any worker runs; or,
//! under socket activation, a duplicate of each passed socket for every worker.
//!
//! SO_REUSEPORT lets any process of the same user join our port and take a share of the
//! connections (monoio's default `TcpListener::bind` sets it silently). So each address is first
//! bound *without* SO_REUSEPORT: that bind fails if anyone else holds the port, and with port 0
//! it tells us which port the kernel chose. The probe is closed and the workers' sockets are then
//! bound to that exact port.

use std::io;
use std::net::SocketAddr;

use socket2::{Domain, Protocol, Socket, Type};

const BACKLOG: i32 = 1024;

/// A `--listen` address that could not be bound.
#[derive(Debug)]
pub struct BindError {
    pub addr: SocketAddr,
    pub source: io::Error,
}

impl std::fmt::Display for BindError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.source.kind() == io::ErrorKind::AddrInUse {
            write!(
                f,
                "--listen {}: address already in use by another process",
                self.addr
            )
        } else {
            write!(f, "--listen {}: cannot bind", self.addr)
        }
    }
}

impl std::error::Error for BindError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        // "Already in use by another process" says all that EADDRINUSE would.
        (self.source.kind() != io::ErrorKind::AddrInUse).then_some(&self.source as _)
    }
}

/// The bound addresses (in `--listen` order) and, per worker, its listeners in the same order.
pub(crate) struct Bound {
    pub addrs: Vec<SocketAddr>,
    pub per_worker: Vec<Vec<std::net::TcpListener>>,
}

/// Binds every address once per worker.
pub(crate) fn bind_listeners(addrs: &[SocketAddr], workers: usize) -> Result<Bound, BindError> {
    let mut bound = Bound {
        addrs: Vec::with_capacity(addrs.len()),
        per_worker: (0..workers)
            .map(|_| Vec::with_capacity(addrs.len()))
            .collect(),
    };
    for &addr in addrs {
        let err = |source| BindError { addr, source };
        let probe = bind_socket(addr, false).map_err(err)?;
        let actual = probe
            .local_addr()
            .map_err(err)?
            .as_socket()
            .ok_or_else(|| err(io::Error::other("bound address is not IP")))?;
        drop(probe);
        for listeners in &mut bound.per_worker {
            let socket = bind_socket(actual, true).map_err(err)?;
            socket.listen(BACKLOG).map_err(err)?;
            listeners.push(socket.into());
        }
        bound.addrs.push(actual);
    }
    Ok(bound)
}

/// A passed (socket-activated) listener that could not be duplicated for a worker.
#[derive(Debug)]
pub struct ShareError {
    pub addr: SocketAddr,
    pub source: io::Error,
}

impl std::fmt::Display for ShareError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "socket activation: cannot share the passed socket {} with the workers",
            self.addr
        )
    }
}

impl std::error::Error for ShareError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.source)
    }
}

/// Gives every worker its own descriptor (a `dup`) of each passed listener. They all accept
/// on the one socket, so the kernel queue is shared rather than split by SO_REUSEPORT: there is
/// only one socket to split, and the service manager owns its address.
pub(crate) fn share_listeners(
    passed: Vec<(SocketAddr, std::net::TcpListener)>,
    workers: usize,
) -> Result<Bound, ShareError> {
    let mut bound = Bound {
        addrs: Vec::with_capacity(passed.len()),
        per_worker: (0..workers)
            .map(|_| Vec::with_capacity(passed.len()))
            .collect(),
    };
    for (addr, listener) in passed {
        for listeners in &mut bound.per_worker {
            let dup = listener
                .try_clone()
                .map_err(|source| ShareError { addr, source })?;
            listeners.push(dup);
        }
        bound.addrs.push(addr);
    }
    Ok(bound)
}

fn bind_socket(addr: SocketAddr, reuse_port: bool) -> io::Result<Socket> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    if addr.is_ipv6() {
        // [::]:port means IPv6 only; listen on 0.0.0.0 too to take IPv4.
        socket.set_only_v6(true)?;
    }
    // Lets a restart bind while old connections sit in TIME_WAIT; it does not let a second
    // listener share the port (that is SO_REUSEPORT's job, below).
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(reuse_port)?;
    // Accepted sockets inherit TCP_NODELAY from the listener on Linux: one setsockopt here
    // instead of one per connection. Handshake flights and small records must not wait for
    // Nagle's algorithm.
    socket.set_nodelay(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    Ok(socket)
}
