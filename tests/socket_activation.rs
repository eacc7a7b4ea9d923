//! systemd socket activation: `serve` started with `LISTEN_PID`/`LISTEN_FDS` accepts on the
//! socket it was handed at fd 3 instead of binding `--listen`, refuses a passed fd that is not
//! a listening TCP socket, and ignores variables meant for another process.
//!
//! The test plays the service manager: it opens the socket itself, and a `pre_exec` hook puts
//! it at fd 3 in the child, which is `sh -c '... exec ringtls serve ...'` so that `$$` (what
//! goes into LISTEN_PID) is the pid ringtls ends up running as.

mod common;

use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::UnixListener;
use std::os::unix::process::CommandExt;
use std::process::Command;

use common::client::tcp_connect;
use common::process::{Exited, in_shell};
use common::{Driver, Setup, Upstream, connect, expect_alert};
use rustls::AlertDescription;

/// Wraps `ringtls serve` in `sh -c '<env> exec ringtls serve ...'` with `fd` placed at fd 3.
/// `env` is shell text run before `exec`, e.g. `LISTEN_PID=$$ LISTEN_FDS=1`.
fn activated(fd: RawFd, env: &'static str) -> impl FnOnce(Command) -> Command {
    move |inner| {
        let mut outer = in_shell(inner, env);
        // SAFETY: the hook runs in the forked child before exec and calls only dup2 and fcntl,
        // both async-signal-safe; it allocates nothing and takes no lock.
        unsafe {
            outer.pre_exec(move || {
                if libc::dup2(fd, 3) == -1 {
                    return Err(std::io::Error::last_os_error());
                }
                // dup2 onto the same number leaves FD_CLOEXEC as it was (std sets it): clear it
                // so fd 3 survives both execs.
                if libc::fcntl(3, libc::F_SETFD, 0) == -1 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        outer
    }
}

const ACTIVATE: &str = "LISTEN_PID=$$ LISTEN_FDS=1 LISTEN_FDNAMES=https";

fn serves_a_good_client_on_the_passed_socket(driver: Driver) {
    let setup = Setup::new();
    let upstream = Upstream::echo();
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind the socket to pass");
    let passed: SocketAddr = listener.local_addr().expect("local addr");
    let server = setup
        .serve(upstream.addr)
        .no_listen()
        .args(["--threads", "2"])
        .driver(driver)
        .wrap(activated(listener.as_raw_fd(), ACTIVATE))
        .start();

    assert_eq!(server.addrs, vec![passed], "{}", server.listening_line);
    server.wait_for_line(&["listen.activated", "fds=1", &format!("listen={passed}")]);
    server.wait_for_line(&["serve.start", "socket_activation=1"]);

    let alice = setup.ca.client("Alice");
    // Several clients, so both workers' duplicates of the one socket get a chance to accept.
    for _ in 0..4 {
        connect(passed, &setup.client(&alice)).expect("good client through the passed socket");
    }
    expect_alert(
        connect(passed, &setup.anonymous()),
        AlertDescription::CertificateRequired,
    );
    assert_eq!(
        upstream.accepted(),
        4,
        "only the good clients reach the upstream"
    );
}

#[test]
fn serves_on_the_passed_socket_with_io_uring() {
    serves_a_good_client_on_the_passed_socket(Driver::IoUring);
}

#[test]
fn serves_on_the_passed_socket_with_epoll() {
    serves_a_good_client_on_the_passed_socket(Driver::Epoll);
}

/// Starts serve with `fd` passed as fd 3 and expects it to refuse with exit 78.
fn refused(fd: RawFd) -> Exited {
    let setup = Setup::new();
    let upstream = Upstream::echo();
    match setup
        .serve(upstream.addr)
        .no_listen()
        .wrap(activated(fd, "LISTEN_PID=$$ LISTEN_FDS=1"))
        .try_start()
    {
        Ok(server) => panic!(
            "serve started on an unusable passed fd: {}\n--- stderr ---\n{}",
            server.listening_line,
            server.stderr()
        ),
        Err(exited) => {
            assert_eq!(exited.code, Some(78), "{}", exited.stderr);
            assert!(
                exited
                    .stderr
                    .contains("socket activation: fd 3 is not a listening TCP socket"),
                "message does not name the fd:\n{}",
                exited.stderr
            );
            exited
        }
    }
}

#[test]
fn refuses_a_passed_udp_socket() {
    let udp = UdpSocket::bind("127.0.0.1:0").expect("udp");
    let exited = refused(udp.as_raw_fd());
    assert!(exited.stderr.contains("SOCK_DGRAM"), "{}", exited.stderr);
}

#[test]
fn refuses_a_passed_tcp_socket_that_is_not_listening() {
    // A connected client socket: TCP, but accept on it would fail.
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let client = tcp_connect(listener.local_addr().expect("addr"));
    let exited = refused(client.as_raw_fd());
    assert!(exited.stderr.contains("not listening"), "{}", exited.stderr);
}

#[test]
fn refuses_a_passed_unix_socket() {
    let dir = common::Dir::new();
    let unix = UnixListener::bind(dir.path().join("sock")).expect("unix listener");
    let exited = refused(unix.as_raw_fd());
    assert!(exited.stderr.contains("AF_UNIX"), "{}", exited.stderr);
}

#[test]
fn refuses_listen_flag_together_with_activation() {
    let setup = Setup::new();
    let upstream = Upstream::echo();
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    match setup
        .serve(upstream.addr)
        .listen("127.0.0.1:0")
        .wrap(activated(listener.as_raw_fd(), ACTIVATE))
        .try_start()
    {
        Ok(server) => panic!("serve started with both: {}", server.listening_line),
        Err(exited) => {
            assert_eq!(exited.code, Some(64), "{}", exited.stderr);
            assert!(
                exited.stderr.contains("--listen 127.0.0.1:0")
                    && exited.stderr.contains("use one or the other"),
                "{}",
                exited.stderr
            );
        }
    }
}

#[test]
fn ignores_activation_meant_for_another_process() {
    let setup = Setup::new();
    let upstream = Upstream::echo();
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let passed = listener.local_addr().expect("addr");
    // LISTEN_PID=1 is not us: serve binds --listen as if nothing had been passed.
    let server = setup
        .serve(upstream.addr)
        .wrap(activated(listener.as_raw_fd(), "LISTEN_PID=1 LISTEN_FDS=1"))
        .start();
    assert_ne!(server.addr(), passed);
    assert!(!server.stderr().contains("listen.activated"));
    let alice = setup.ca.client("Alice");
    connect(server.addr(), &setup.client(&alice)).expect("good client on the bound address");
    // Nobody accepts on the passed socket: a connection to it stays in its queue for us.
    let _waiting = tcp_connect(passed);
    let mut ready = libc::pollfd {
        fd: listener.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd, borrowed for the call only.
    let n = unsafe { libc::poll(&mut ready, 1, 5_000) };
    assert_eq!(n, 1, "the connection to the passed socket never queued");
    listener
        .set_nonblocking(true)
        .expect("nonblocking, so a missing connection fails instead of hanging");
    listener
        .accept()
        .expect("the connection is still queued: ringtls never accepted on fd 3");
}

#[test]
fn requires_listen_without_activation() {
    let setup = Setup::new();
    let upstream = Upstream::echo();
    match setup.serve(upstream.addr).no_listen().try_start() {
        Ok(server) => panic!("serve started without --listen: {}", server.listening_line),
        Err(exited) => {
            assert_eq!(exited.code, Some(64), "{}", exited.stderr);
            assert!(
                exited.stderr.contains("--listen is required"),
                "{}",
                exited.stderr
            );
        }
    }
}

#[test]
fn drain_leaves_the_passed_socket_listening_for_the_next_instance() {
    let setup = Setup::new();
    let upstream = Upstream::echo();
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind the socket to pass");
    let passed: SocketAddr = listener.local_addr().expect("local addr");
    let mut server = setup
        .serve(upstream.addr)
        .no_listen()
        .wrap(activated(listener.as_raw_fd(), ACTIVATE))
        .start();
    let alice = setup.ca.client("Alice");
    connect(passed, &setup.client(&alice)).expect("served before the drain");
    server.signal(libc::SIGTERM);
    let status = server
        .wait_exit(std::time::Duration::from_secs(10))
        .expect("drains and exits");
    assert_eq!(status.code(), Some(0), "{}", server.stderr());
    // The service manager's socket must still listen: a connection made now queues for the
    // next instance instead of being refused.
    let _queued = tcp_connect(passed);
    listener
        .set_nonblocking(false)
        .expect("blocking accept on our copy");
    let (_, from) = listener.accept().expect("the passed socket still accepts");
    assert_eq!(from.ip(), passed.ip());
}
