//! Plaintext upstreams on 127.0.0.1:0, one std thread per connection.
//!
//! Every upstream counts the connections it accepted: a rejected client must never make the
//! terminator open an upstream connection, and tests assert that through `accepted()`.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::unix::net::UnixListener;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// Upper bound for any single read or write on an upstream socket.
const IO_TIMEOUT: Duration = Duration::from_secs(60);

type Handler = Arc<dyn Fn(TcpStream) + Send + Sync>;

struct State {
    accepted: AtomicUsize,
    stop: AtomicBool,
    /// Bytes each finished "record" connection received, in completion order.
    received: Mutex<Vec<Vec<u8>>>,
    changed: Condvar,
}

pub struct Upstream {
    pub addr: SocketAddr,
    state: Arc<State>,
}

impl Upstream {
    /// Echoes every byte back; on EOF from the terminator it half-closes its write side too.
    pub fn echo() -> Upstream {
        Upstream::echo_on(SocketAddr::from(([127, 0, 0, 1], 0)))
    }

    /// `echo`, listening on `addr`.
    pub fn echo_on(addr: SocketAddr) -> Upstream {
        Upstream::on(addr, Upstream::new_state(), Arc::new(echo_loop))
    }

    /// Stores everything received until EOF; never writes.
    pub fn record() -> Upstream {
        let state = Upstream::new_state();
        let recorder = Arc::clone(&state);
        Upstream::with_state(
            state,
            Arc::new(move |mut sock: TcpStream| {
                let mut data = Vec::new();
                let _ = sock.read_to_end(&mut data);
                recorder.received.lock().unwrap().push(data);
                recorder.changed.notify_all();
            }),
        )
    }

    /// Answers one HTTP request with `200 OK` and `body`, then closes.
    pub fn http(body: &'static str) -> Upstream {
        Upstream::custom(move |mut sock| {
            let mut request = Vec::new();
            let mut buf = [0u8; 4096];
            while !request.windows(4).any(|w| w == b"\r\n\r\n") && request.len() < 64 * 1024 {
                match sock.read(&mut buf) {
                    Ok(0) | Err(_) => return,
                    Ok(n) => request.extend_from_slice(&buf[..n]),
                }
            }
            let response = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = sock.write_all(response.as_bytes());
            let _ = sock.shutdown(Shutdown::Write);
            // Drain until the client side closes, so closing never turns into a reset.
            while let Ok(n) = sock.read(&mut buf) {
                if n == 0 {
                    break;
                }
            }
        })
    }

    /// Runs `handler` on its own thread for every accepted connection.
    pub fn custom(handler: impl Fn(TcpStream) + Send + Sync + 'static) -> Upstream {
        Upstream::with_state(Upstream::new_state(), Arc::new(handler))
    }

    fn new_state() -> Arc<State> {
        Arc::new(State {
            accepted: AtomicUsize::new(0),
            stop: AtomicBool::new(false),
            received: Mutex::new(Vec::new()),
            changed: Condvar::new(),
        })
    }

    fn with_state(state: Arc<State>, handler: Handler) -> Upstream {
        Upstream::on(SocketAddr::from(([127, 0, 0, 1], 0)), state, handler)
    }

    fn on(addr: SocketAddr, state: Arc<State>, handler: Handler) -> Upstream {
        let listener = TcpListener::bind(addr).expect("bind upstream");
        let addr = listener.local_addr().expect("upstream addr");
        let accept_state = Arc::clone(&state);
        thread::spawn(move || {
            for sock in listener.incoming() {
                if accept_state.stop.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(sock) = sock else { continue };
                accept_state.accepted.fetch_add(1, Ordering::SeqCst);
                let _ = sock.set_read_timeout(Some(IO_TIMEOUT));
                let _ = sock.set_write_timeout(Some(IO_TIMEOUT));
                let handler = Arc::clone(&handler);
                thread::spawn(move || handler(sock));
            }
        });
        Upstream { addr, state }
    }

    /// How many connections the terminator opened to this upstream so far.
    pub fn accepted(&self) -> usize {
        self.state.accepted.load(Ordering::SeqCst)
    }

    /// For `record`: waits (bounded) until `n` connections finished; returns their bytes.
    pub fn wait_received(&self, n: usize, timeout: Duration) -> Vec<Vec<u8>> {
        let deadline = Instant::now() + timeout;
        let mut received = self.state.received.lock().unwrap();
        while received.len() < n {
            let now = Instant::now();
            assert!(
                now < deadline,
                "upstream saw {} finished connections, expected {n}",
                received.len()
            );
            received = self
                .state
                .changed
                .wait_timeout(received, deadline - now)
                .unwrap()
                .0;
        }
        received.clone()
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.state.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so its thread ends (and the port closes) with the test.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
    }
}

/// The echo upstream's handler: every byte back until EOF, then a half-close of its own.
pub fn echo_loop(mut sock: TcpStream) {
    if echo(&mut sock) {
        let _ = sock.shutdown(Shutdown::Write);
    }
}

/// Every byte back until EOF; false if the peer went away first.
fn echo(sock: &mut (impl Read + Write)) -> bool {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match sock.read(&mut buf) {
            Ok(0) | Err(_) => return true,
            Ok(n) => {
                if sock.write_all(&buf[..n]).is_err() {
                    return false;
                }
            }
        }
    }
}

/// An echo upstream on a Unix socket (`--upstream unix:PATH`), as `echo_loop` does, each
/// connection on a thread of its own.
pub fn echo_unix(listener: UnixListener) {
    thread::spawn(move || {
        for sock in listener.incoming() {
            let Ok(mut sock) = sock else { continue };
            thread::spawn(move || {
                if echo(&mut sock) {
                    let _ = sock.shutdown(Shutdown::Write);
                }
            });
        }
    });
}

/// An address on 127.0.0.1 where nothing listens: bound then released. Another process could
/// grab the port in between, but nothing on a test machine binds random ephemeral ports.
pub fn refused_addr() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("addr")
}
