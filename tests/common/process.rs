//! Running the real `ringtls` binary: `Serve`/`Server` for a long-running `serve` whose readiness
//! signal is the `{"listening":[...]}` line on stdout, and `run` for subcommands that finish.
//!
//! Every wait is bounded; a server that never gets ready fails the test with its stderr, and a
//! `Server` kills its child on drop so a failing test leaves no process behind.

use std::ffi::{OsStr, OsString};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// How long `serve` may take to print its listening line.
pub const READY_TIMEOUT: Duration = Duration::from_secs(20);
/// How long a finishing subcommand (`check`, `pki`, a refused `serve`) may take.
pub const RUN_TIMEOUT: Duration = Duration::from_secs(30);
/// How long to wait for an expected stderr line of a running server.
pub const LOG_TIMEOUT: Duration = Duration::from_secs(10);

/// The env var that makes monoio use its epoll (legacy) driver.
const LEGACY_DRIVER_ENV: &str = "MONOIO_FORCE_LEGACY_DRIVER";

/// The binary under test: this build's, or `RINGTLS_BIN` when set (to show that a new test
/// fails against an older build, as a regression test should).
pub fn bin() -> &'static str {
    static BIN: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    BIN.get_or_init(|| {
        std::env::var("RINGTLS_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_ringtls").to_owned())
    })
}

/// Which monoio driver the spawned binary is asked to use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Driver {
    /// No driver env set: whatever the binary picks by default.
    Default,
    IoUring,
    Epoll,
}

impl Driver {
    fn apply(self, cmd: &mut Command) {
        match self {
            Driver::Default | Driver::IoUring => {
                cmd.env_remove(LEGACY_DRIVER_ENV);
            }
            Driver::Epoll => {
                cmd.env(LEGACY_DRIVER_ENV, "1");
            }
        }
    }

    /// The `driver=...` token the start lines must show, if this driver is asserted.
    pub fn log_token(self) -> Option<&'static str> {
        match self {
            Driver::Default => None,
            Driver::IoUring => Some("driver=io_uring"),
            Driver::Epoll => Some("driver=epoll"),
        }
    }
}

/// Text a child wrote to one of its pipes, appended a read's worth of whole lines at a time,
/// with a condvar so tests wait for a line instead of sleeping.
///
/// A waiter's predicate runs under the lock each time text arrives, so appends are per read,
/// not per line, and `wait_for_line` scans only the lines it has not seen: a server that
/// pours out thousands of queued lines at once (a stalled log collector resuming) would
/// otherwise make every line rescan all the text before it, quadratic in a debug build.
#[derive(Default)]
pub struct Captured {
    state: Mutex<(String, bool)>,
    changed: Condvar,
}

/// How much one read of a child's pipe takes at most (a pipe holds 64 KiB by default).
const READ_CHUNK: usize = 64 * 1024;

impl Captured {
    fn spawn_reader(mut pipe: impl Read + Send + 'static) -> Arc<Captured> {
        let captured = Arc::new(Captured::default());
        let sink = Arc::clone(&captured);
        thread::spawn(move || {
            let mut buf = vec![0; READ_CHUNK];
            // Bytes after the last newline read so far: appended once their line is whole.
            let mut partial = Vec::new();
            loop {
                let n = match pipe.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => n,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                    Err(_) => break,
                };
                partial.extend_from_slice(&buf[..n]);
                let Some(last) = partial.iter().rposition(|&b| b == b'\n') else {
                    continue;
                };
                let rest = partial.split_off(last + 1);
                let mut state = sink.state.lock().unwrap();
                state.0.push_str(&String::from_utf8_lossy(&partial));
                partial = rest;
                sink.changed.notify_all();
            }
            let mut state = sink.state.lock().unwrap();
            state.0.push_str(&String::from_utf8_lossy(&partial));
            state.1 = true;
            sink.changed.notify_all();
        });
        captured
    }

    pub fn text(&self) -> String {
        self.state.lock().unwrap().0.clone()
    }

    /// Waits until `pred(text)` holds or the pipe closed or `timeout` passed; returns whether
    /// it holds.
    pub fn wait_for(&self, timeout: Duration, pred: impl Fn(&str) -> bool) -> bool {
        let deadline = Instant::now() + timeout;
        let mut state = self.state.lock().unwrap();
        loop {
            if pred(&state.0) {
                return true;
            }
            let now = Instant::now();
            if state.1 || now >= deadline {
                return false;
            }
            state = self.changed.wait_timeout(state, deadline - now).unwrap().0;
        }
    }

    /// Waits until a line satisfies `pred` or the pipe closed or `timeout` passed; returns that
    /// line. Each wake-up looks only at the lines that arrived since the last.
    pub fn wait_for_line(&self, timeout: Duration, pred: impl Fn(&str) -> bool) -> Option<String> {
        let deadline = Instant::now() + timeout;
        let mut seen = 0;
        let mut state = self.state.lock().unwrap();
        loop {
            // Text arrives in whole lines; only after the pipe closed may the last lack its
            // newline.
            if let Some(line) = state.0[seen..].lines().find(|l| pred(l)) {
                return Some(line.to_owned());
            }
            seen = state.0.len();
            let now = Instant::now();
            if state.1 || now >= deadline {
                return None;
            }
            state = self.changed.wait_timeout(state, deadline - now).unwrap().0;
        }
    }

    /// Waits until the writer closed the pipe (usually: the process exited).
    pub fn wait_closed(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut state = self.state.lock().unwrap();
        while !state.1 {
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            state = self.changed.wait_timeout(state, deadline - now).unwrap().0;
        }
        true
    }
}

/// Waits at most `timeout` for `child` to exit, killing it after that.
pub fn wait_exit(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            return Some(status);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        // std offers no timed wait on a child; its pipes already closed, so this only bridges
        // the moment between closing its fds and becoming reapable.
        thread::sleep(Duration::from_millis(5)); // readiness-ok: bounded reap poll, see above
    }
}

/// A finished (or killed after `RUN_TIMEOUT`) run of the binary.
#[derive(Debug)]
pub struct Output {
    /// Exit code; `None` if it was killed by a signal or by the timeout.
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Output {
    /// Panics with the whole output unless the exit code is `code`.
    pub fn assert_code(&self, code: i32) -> &Output {
        assert_eq!(
            self.code,
            Some(code),
            "expected exit code {code}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.stdout,
            self.stderr
        );
        self
    }

    /// The non-blank stderr lines.
    pub fn stderr_lines(&self) -> Vec<&str> {
        self.stderr
            .lines()
            .filter(|l| !l.trim().is_empty())
            .collect()
    }
}

/// Runs `ringtls ARGS...` to completion with the default driver and no stdin.
pub fn run<S: AsRef<OsStr>>(args: impl IntoIterator<Item = S>) -> Output {
    run_with_timeout(args, RUN_TIMEOUT)
}

/// Runs `ringtls ARGS...` to completion, killing it after `timeout`.
pub fn run_with_timeout<S: AsRef<OsStr>>(
    args: impl IntoIterator<Item = S>,
    timeout: Duration,
) -> Output {
    let mut cmd = Command::new(bin());
    cmd.args(args);
    Driver::Default.apply(&mut cmd);
    run_command(cmd, timeout)
}

/// Runs any command to completion with captured stdout/stderr, killing it after `timeout`.
pub fn run_command(mut cmd: Command, timeout: Duration) -> Output {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}"));
    let stdout = Captured::spawn_reader(child.stdout.take().expect("stdout piped"));
    let stderr = Captured::spawn_reader(child.stderr.take().expect("stderr piped"));
    let deadline = Instant::now() + timeout;
    let closed =
        stdout.wait_closed(timeout) && stderr.wait_closed(deadline - Instant::now().min(deadline));
    let status = if closed {
        wait_exit(&mut child, Duration::from_secs(5))
    } else {
        let _ = child.kill();
        let _ = child.wait();
        None
    };
    let out = Output {
        code: status.and_then(|s| s.code()),
        stdout: stdout.text(),
        stderr: stderr.text(),
    };
    assert!(
        closed,
        "{cmd:?} did not finish within {timeout:?}\n--- stdout ---\n{}\n--- stderr ---\n{}",
        out.stdout, out.stderr
    );
    out
}

/// Builder for `ringtls serve`; `--listen 127.0.0.1:0` is added unless `listen` or
/// `no_listen` is called.
pub struct Serve {
    args: Vec<OsString>,
    listen: Vec<String>,
    default_listen: bool,
    driver: Driver,
    wrap: Option<Box<dyn FnOnce(Command) -> Command>>,
    /// What happens to the server's stderr pipe.
    stderr: StderrMode,
}

/// What a test does with the server's stderr.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum StderrMode {
    /// Read continuously (the usual).
    #[default]
    Read,
    /// A pipe nobody reads until `Server::read_stderr`: a stalled log collector.
    Unread,
    /// A pipe whose read end is closed at once: writes fail with EPIPE.
    Closed,
}

impl Serve {
    pub fn new(upstream: SocketAddr, crt: &Path, key: &Path) -> Serve {
        Serve::to(&upstream.to_string(), crt, key)
    }

    /// `--upstream` as given: `HOST:PORT` with a name, or `unix:/path`.
    pub fn to(upstream: &str, crt: &Path, key: &Path) -> Serve {
        Serve {
            args: vec![
                "--upstream".into(),
                upstream.into(),
                "--crt".into(),
                crt.into(),
                "--key".into(),
                key.into(),
            ],
            listen: Vec::new(),
            default_listen: true,
            driver: Driver::Default,
            wrap: None,
            stderr: StderrMode::Read,
        }
    }

    /// `ringtls serve --config FILE`: the file names the listeners, endpoints and upstreams.
    pub fn config(file: &Path) -> Serve {
        Serve {
            args: vec!["--config".into(), file.into()],
            listen: Vec::new(),
            default_listen: false,
            driver: Driver::Default,
            wrap: None,
            stderr: StderrMode::Read,
        }
    }

    /// Passes no `--listen` at all (for socket activation, or to test its absence).
    pub fn no_listen(mut self) -> Serve {
        self.default_listen = false;
        self
    }

    /// Runs the server through another command: `wrap` gets the finished `ringtls serve`
    /// command (program, arguments, environment) and returns the one to spawn, e.g. a shell
    /// that sets variables first, with a `pre_exec` hook. Stdio is set up afterwards.
    pub fn wrap(mut self, wrap: impl FnOnce(Command) -> Command + 'static) -> Serve {
        self.wrap = Some(Box::new(wrap));
        self
    }

    /// Adds `--mutual-tls-cas PATH`.
    pub fn ca(mut self, path: &Path) -> Serve {
        self.args.push("--mutual-tls-cas".into());
        self.args.push(path.into());
        self
    }

    /// Adds `--crl PATH`.
    pub fn crl(mut self, path: &Path) -> Serve {
        self.args.push("--crl".into());
        self.args.push(path.into());
        self
    }

    /// Adds `--listen ADDR` (replacing the default `127.0.0.1:0`).
    pub fn listen(mut self, addr: &str) -> Serve {
        self.listen.push(addr.to_owned());
        self
    }

    /// Adds raw arguments.
    pub fn args<S: AsRef<OsStr>>(mut self, args: impl IntoIterator<Item = S>) -> Serve {
        self.args
            .extend(args.into_iter().map(|a| a.as_ref().to_owned()));
        self
    }

    /// What to do with the server's stderr (default: read it).
    pub fn stderr(mut self, mode: StderrMode) -> Serve {
        self.stderr = mode;
        self
    }

    pub fn driver(mut self, driver: Driver) -> Serve {
        self.driver = driver;
        self
    }

    fn command(&mut self) -> Command {
        let mut cmd = Command::new(bin());
        cmd.arg("serve");
        if self.listen.is_empty() && self.default_listen {
            cmd.args(["--listen", "127.0.0.1:0"]);
        }
        for addr in &self.listen {
            cmd.args(["--listen", addr]);
        }
        cmd.args(&self.args);
        self.driver.apply(&mut cmd);
        if let Some(wrap) = self.wrap.take() {
            cmd = wrap(cmd);
        }
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        cmd
    }

    /// Starts the server and waits for its listening line; panics with stderr if it exits or
    /// never gets ready. If a driver was chosen, also asserts the start lines name it.
    pub fn start(self) -> Server {
        let driver = self.driver;
        let server = match self.try_start() {
            Ok(server) => server,
            Err(exited) => panic!(
                "ringtls serve exited before listening (code {:?})\n--- stderr ---\n{}",
                exited.code, exited.stderr
            ),
        };
        if let Some(token) = driver.log_token() {
            server.wait_for_stderr(&format!("start line naming {token}"), |s| s.contains(token));
        }
        server
    }

    /// Starts the server; `Err` if it exited before printing its listening line (for the
    /// refuse-to-start tests). Panics if it neither exits nor gets ready within READY_TIMEOUT.
    pub fn try_start(mut self) -> Result<Server, Exited> {
        let mut cmd = self.command();
        let mut child = cmd.spawn().unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}"));
        let pipe = child.stderr.take().expect("stderr piped");
        let (stderr, held_stderr) = match self.stderr {
            StderrMode::Read => (Captured::spawn_reader(pipe), None),
            StderrMode::Unread => (Arc::new(Captured::default()), Some(pipe)),
            StderrMode::Closed => {
                drop(pipe);
                (Arc::new(Captured::default()), None)
            }
        };
        let stdout_pipe = child.stdout.take().expect("stdout piped");
        let extra_stdout = Arc::new(Captured::default());
        let (tx, rx) = mpsc::channel();
        {
            let extra_stdout = Arc::clone(&extra_stdout);
            thread::spawn(move || {
                let mut reader = BufReader::new(stdout_pipe);
                let mut first = String::new();
                match reader.read_line(&mut first) {
                    Ok(n) if n > 0 => {
                        let _ = tx.send(Some(first));
                    }
                    _ => {
                        let _ = tx.send(None);
                        return;
                    }
                }
                // Keep draining so the child never blocks on a full stdout pipe, and keep
                // what comes so a test can assert the listening line was the only one.
                let mut rest = String::new();
                while let Ok(n) = reader.read_line(&mut rest) {
                    if n == 0 {
                        break;
                    }
                    let mut state = extra_stdout.state.lock().unwrap();
                    state.0.push_str(&rest);
                    rest.clear();
                }
            });
        }
        match rx.recv_timeout(READY_TIMEOUT) {
            Ok(Some(line)) => {
                let (addrs, metrics) = parse_listening(&line).unwrap_or_else(|e| {
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!(
                        "bad listening line {line:?}: {e}\n--- stderr ---\n{}",
                        stderr.text()
                    )
                });
                Ok(Server {
                    child,
                    addrs,
                    metrics,
                    listening_line: line,
                    stderr,
                    held_stderr,
                    extra_stdout,
                })
            }
            Ok(None) | Err(mpsc::RecvTimeoutError::Disconnected) => {
                // stdout closed: the process is exiting; its stderr closes with it.
                stderr.wait_closed(RUN_TIMEOUT);
                let status = wait_exit(&mut child, RUN_TIMEOUT);
                Err(Exited {
                    code: status.and_then(|s| s.code()),
                    stderr: stderr.text(),
                })
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "ringtls serve printed no listening line within {READY_TIMEOUT:?}\n--- stderr ---\n{}",
                    stderr.text()
                );
            }
        }
    }
}

/// `{"listening":["127.0.0.1:43817", ...]}` -> the addresses, in order.
fn parse_listening(line: &str) -> Result<(Vec<SocketAddr>, Option<SocketAddr>), String> {
    let value: serde_json::Value = serde_json::from_str(line.trim()).map_err(|e| e.to_string())?;
    let object = value.as_object().ok_or("not a JSON object")?;
    // "metrics" appears only with --metrics; nothing else may.
    if object.keys().any(|k| k != "listening" && k != "metrics") {
        return Err(format!(
            "expected only the \"listening\" (and \"metrics\") keys, got {object:?}"
        ));
    }
    let metrics = object
        .get("metrics")
        .map(|v| {
            v.as_str()
                .ok_or_else(|| format!("metrics not a string: {v}"))?
                .parse::<SocketAddr>()
                .map_err(|e| format!("{v}: {e}"))
        })
        .transpose()?;
    let list = object
        .get("listening")
        .and_then(|v| v.as_array())
        .ok_or("no \"listening\" array")?;
    let addrs = list
        .iter()
        .map(|v| {
            v.as_str()
                .ok_or_else(|| format!("not a string: {v}"))?
                .parse::<SocketAddr>()
                .map_err(|e| format!("{v}: {e}"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    if addrs.is_empty() {
        return Err("empty \"listening\" array".into());
    }
    Ok((addrs, metrics))
}

/// A `serve` that exited before it got ready.
#[derive(Debug)]
pub struct Exited {
    pub code: Option<i32>,
    pub stderr: String,
}

/// A running `ringtls serve`; killed on drop.
pub struct Server {
    child: Child,
    /// Every bound address, in `--listen` order, from the listening line.
    pub addrs: Vec<SocketAddr>,
    /// Where `/metrics` is served (with `--metrics`), from the listening line.
    pub metrics: Option<SocketAddr>,
    /// The listening line as printed (with its newline).
    pub listening_line: String,
    stderr: Arc<Captured>,
    /// The stderr pipe of a `StderrMode::Unread` server, until `read_stderr`.
    held_stderr: Option<std::process::ChildStderr>,
    extra_stdout: Arc<Captured>,
}

impl Server {
    /// Starts reading a `StderrMode::Unread` server's stderr: the stalled collector resumes.
    pub fn read_stderr(&mut self) {
        if let Some(pipe) = self.held_stderr.take() {
            self.stderr = Captured::spawn_reader(pipe);
        }
    }

    /// The first bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addrs[0]
    }

    /// Everything written to stderr so far.
    pub fn stderr(&self) -> String {
        self.stderr.text()
    }

    /// Whatever stdout carried after the listening line so far.
    pub fn stdout_after_listening(&self) -> String {
        self.extra_stdout.text()
    }

    /// Waits (bounded by LOG_TIMEOUT) until stderr satisfies `pred`; panics with stderr naming
    /// `what` otherwise. Returns stderr at that moment.
    pub fn wait_for_stderr(&self, what: &str, pred: impl Fn(&str) -> bool) -> String {
        if !self.stderr.wait_for(LOG_TIMEOUT, pred) {
            panic!(
                "stderr never showed {what} within {LOG_TIMEOUT:?}\n--- stderr ---\n{}",
                self.stderr.text()
            );
        }
        self.stderr.text()
    }

    /// Waits (bounded by LOG_TIMEOUT) for a stderr line containing every one of `needles`;
    /// returns that line, or panics with stderr.
    pub fn wait_for_line(&self, needles: &[&str]) -> String {
        self.stderr
            .wait_for_line(LOG_TIMEOUT, |line| needles.iter().all(|n| line.contains(n)))
            .unwrap_or_else(|| {
                panic!(
                    "stderr never showed a line containing all of {needles:?} within \
                     {LOG_TIMEOUT:?}\n--- stderr ---\n{}",
                    self.stderr.text()
                )
            })
    }
}

impl Server {
    /// Sends `signal` (e.g. `libc::SIGHUP`) to the server process.
    pub fn signal(&self, signal: i32) {
        let pid = i32::try_from(self.child.id()).expect("pid fits in pid_t");
        // SAFETY: kill(2) takes plain integers; the child is ours and not yet reaped.
        let rc = unsafe { libc::kill(pid, signal) };
        assert_eq!(
            rc,
            0,
            "kill({pid}, {signal}): {}",
            std::io::Error::last_os_error()
        );
    }

    /// Waits up to `timeout` for the process to exit; `None` if it is still running.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        wait_exit(&mut self.child, timeout)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A spawned external program (curl, openssl) with captured output and a writable stdin.
pub struct Spawned {
    pub child: Child,
    pub stdin: Option<ChildStdin>,
    pub stdout: Arc<Captured>,
    pub stderr: Arc<Captured>,
}

impl Spawned {
    pub fn spawn(mut cmd: Command) -> Spawned {
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}"));
        let stdin = child.stdin.take();
        let stdout = Captured::spawn_reader(child.stdout.take().expect("stdout piped"));
        let stderr = Captured::spawn_reader(child.stderr.take().expect("stderr piped"));
        Spawned {
            child,
            stdin,
            stdout,
            stderr,
        }
    }

    /// Closes stdin and waits (bounded) for the exit.
    pub fn finish(&mut self, timeout: Duration) -> Option<ExitStatus> {
        self.stdin.take();
        self.stdout.wait_closed(timeout);
        self.stderr.wait_closed(Duration::from_secs(5));
        wait_exit(&mut self.child, Duration::from_secs(5))
    }

    /// Writes `line` and a newline to stdin and waits (bounded) until stdout shows it: a round
    /// trip through the program and whatever echoes behind it.
    pub fn echoes(&mut self, line: &str, timeout: Duration) -> bool {
        let stdin = self.stdin.as_mut().expect("stdin still open");
        stdin
            .write_all(format!("{line}\n").as_bytes())
            .expect("write to the program's stdin");
        self.stdout.wait_for(timeout, |out| out.contains(line))
    }

    pub fn output(&self) -> String {
        format!(
            "--- stdout ---\n{}\n--- stderr ---\n{}",
            self.stdout.text(),
            self.stderr.text()
        )
    }
}

impl Drop for Spawned {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Whether `program` can be run. A test that returns early without it passes without testing:
/// mark it `#[cfg_attr(not(has = "NAME"), ignore = "SKIPPED: ...")]` and call `common::need`.
#[deprecated(
    note = "a test that returns without its tool passes: see tests/common/mod.rs, \
                     `cfg_attr(not(has = ...), ignore = ...)` and `common::need`"
)]
pub fn have_program(program: &str) -> bool {
    super::tools::find_program(program).is_some()
}

/// `inner` run as `sh -c '<prefix> exec ringtls ...'`, with the same arguments and environment:
/// for set-up only a shell does right before ringtls runs under the same pid (`ulimit`, a
/// variable holding `$$`).
pub fn in_shell(inner: Command, prefix: &str) -> Command {
    let script = format!(r#"{prefix} exec "$0" "$@""#);
    launched_by(inner, "sh", &["-c", &script])
}

/// `inner` run as `program args... <inner's program> <inner's args>...`, with inner's
/// environment: for a launcher that sets something up and then execs what follows.
pub fn launched_by(inner: Command, program: &str, args: &[&str]) -> Command {
    let mut outer = Command::new(program);
    outer
        .args(args)
        .arg(inner.get_program())
        .args(inner.get_args());
    for (key, value) in inner.get_envs() {
        match value {
            Some(value) => outer.env(key, value),
            None => outer.env_remove(key),
        };
    }
    outer
}

/// HAProxy (`haproxy -db`) with the configuration `config` writes for the port it is given: a
/// free port on 127.0.0.1, bound, read and released (HAProxy cannot report a port 0 bind).
/// Returns once the port accepts (HAProxy prints nothing when it binds).
pub fn spawn_haproxy(
    dir: &super::Dir,
    name: &str,
    config: impl FnOnce(u16) -> String,
) -> (Spawned, std::net::SocketAddr) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let file = dir.write(name, config(port));
    let mut cmd = Command::new("haproxy");
    cmd.arg("-f").arg(&file).arg("-db");
    let haproxy = Spawned::spawn(cmd);
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let ready = (0..200).any(|_| {
        if std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(100)).is_ok() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(25)); // readiness-ok: bounded poll of HAProxy's port
        false
    });
    assert!(ready, "haproxy did not listen\n{}", haproxy.output());
    (haproxy, addr)
}
