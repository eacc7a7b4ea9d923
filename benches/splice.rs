//! Plaintext forwarding on loopback, the part of the data path that kernel TLS leaves to us:
//! one thread moves `SIZE` bytes from one TCP connection to another, either with read/write
//! through a reused 128 KiB buffer or with splice(2) through a pipe (socket → pipe → socket, the
//! bytes never entering user space). Reports the forwarding thread's CPU per GiB and the wall
//! time of each, best of `RUNS`, so the choice between them rests on a number from this machine.
//!
//! `cargo bench --bench splice` (add `-- --json` for one JSON object).

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::thread;
use std::time::{Duration, Instant};

const SIZE: usize = 1 << 30;
const RUNS: usize = 3;
const CHUNK: usize = 128 * 1024;
const PIPE: libc::c_int = 1 << 20;

/// This thread's user+system CPU time.
fn thread_cpu() -> Duration {
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: getrusage writes the struct we own.
    unsafe { libc::getrusage(libc::RUSAGE_THREAD, &mut usage) };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

/// A connected pair on loopback.
fn pair() -> (TcpStream, TcpStream) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let a = TcpStream::connect(listener.local_addr().expect("addr")).expect("connect");
    let (b, _) = listener.accept().expect("accept");
    (a, b)
}

fn read_write(from: &mut TcpStream, to: &mut TcpStream) {
    let mut buf = vec![0u8; CHUNK];
    let mut left = SIZE;
    while left > 0 {
        let n = from.read(&mut buf).expect("read");
        assert!(n > 0, "source ended early");
        to.write_all(&buf[..n]).expect("write");
        left -= n;
    }
}

fn splice(from: &TcpStream, to: &TcpStream) {
    let mut fds = [0; 2];
    // SAFETY: pipe2 fills the two-element array; the fds are closed below.
    assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
    // SAFETY: plain fcntl on the pipe we just made.
    unsafe { libc::fcntl(fds[1], libc::F_SETPIPE_SZ, PIPE) };
    let mut left = SIZE;
    while left > 0 {
        // SAFETY: splice(2) between descriptors this function owns or borrows for the call;
        // null offsets, as sockets and pipes require.
        let n = unsafe {
            libc::splice(
                from.as_raw_fd(),
                std::ptr::null_mut(),
                fds[1],
                std::ptr::null_mut(),
                PIPE as usize,
                libc::SPLICE_F_MOVE,
            )
        };
        assert!(n > 0, "splice in: {}", std::io::Error::last_os_error());
        let mut inside = n as usize;
        while inside > 0 {
            // SAFETY: as above.
            let m = unsafe {
                libc::splice(
                    fds[0],
                    std::ptr::null_mut(),
                    to.as_raw_fd(),
                    std::ptr::null_mut(),
                    inside,
                    libc::SPLICE_F_MOVE,
                )
            };
            assert!(m > 0, "splice out: {}", std::io::Error::last_os_error());
            inside -= m as usize;
        }
        left -= n as usize;
    }
    // SAFETY: closing the pipe's two descriptors, once.
    unsafe {
        libc::close(fds[0]);
        libc::close(fds[1]);
    }
}

/// One run: a source thread writes SIZE bytes, a sink thread reads them, and this thread
/// forwards with `method`. Returns (forwarder CPU, wall time).
fn run(method: &str) -> (Duration, Duration) {
    let (mut src_w, mut src_r) = pair();
    let (mut dst_w, mut dst_r) = pair();
    let source = thread::spawn(move || {
        let chunk = vec![0x5au8; CHUNK];
        let mut left = SIZE;
        while left > 0 {
            let n = left.min(CHUNK);
            src_w.write_all(&chunk[..n]).expect("source write");
            left -= n;
        }
    });
    let sink = thread::spawn(move || {
        let mut buf = vec![0u8; CHUNK];
        let mut got = 0;
        while got < SIZE {
            let n = dst_r.read(&mut buf).expect("sink read");
            assert!(n > 0);
            got += n;
        }
    });
    let cpu0 = thread_cpu();
    let t0 = Instant::now();
    match method {
        "read/write" => read_write(&mut src_r, &mut dst_w),
        _ => splice(&src_r, &dst_w),
    }
    let (cpu, wall) = (thread_cpu() - cpu0, t0.elapsed());
    source.join().expect("source");
    sink.join().expect("sink");
    (cpu, wall)
}

fn main() {
    let json = std::env::args().any(|a| a == "--json");
    let gib = SIZE as f64 / (1u64 << 30) as f64;
    let mut rows = Vec::new();
    for method in ["read/write", "splice"] {
        let best = (0..RUNS)
            .map(|_| run(method))
            .min_by_key(|(cpu, _)| *cpu)
            .expect("runs");
        rows.push((
            method,
            best.0.as_secs_f64() / gib,
            best.1.as_secs_f64() / gib,
        ));
    }
    let ratio = rows[1].1 / rows[0].1;
    if json {
        println!(
            "{{\"read_write_cpu_s_per_gib\":{:.3},\"splice_cpu_s_per_gib\":{:.3},\"read_write_wall_s_per_gib\":{:.3},\"splice_wall_s_per_gib\":{:.3},\"splice_vs_read_write_cpu\":{ratio:.2}}}",
            rows[0].1, rows[1].1, rows[0].2, rows[1].2
        );
    } else {
        for (method, cpu, wall) in &rows {
            println!("{method:>10}: forwarder CPU {cpu:.3} s/GiB, wall {wall:.3} s/GiB");
        }
        println!("splice / read-write CPU: {ratio:.2}x (best of {RUNS} runs of {gib} GiB)");
    }
}
