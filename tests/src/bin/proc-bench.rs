//! proc (taskprobe) benchmark and its workload process.
//!
//! `proc-bench [--runs N] [--calls N] [--quick]` (as root; `cargo build --release -p
//! gala-e2e -p gala-taskprobe --bins && target/release/proc-bench`): a workload process makes
//! `--calls` `getppid` calls and as many 1-byte `read`s from `/dev/zero`, timed per call, with
//! `taskprobe` (offline, report period 5 s, `--subitems`: by default every sub-item that
//! hooks syscalls, and proc_offcpu)
//! (a) not running, (b) running but snooping another process, (c) snooping the workload.
//! Prints min / median / max over `--runs` of the ns per call and the slowdown against (a),
//! as Markdown rows for `docs/benchmarks.md`. `--quick` is a short smoke run for CI.
//!
//! `proc-bench workload --socket PATH` is the workload: it connects to the Unix socket PATH
//! and runs the commands it receives (one line each, answered by one line `ok ...`), making
//! only the syscalls the command names, each timed with the vDSO clock. The proc e2e tests
//! drive it too: between commands it sits in `recv`, a syscall that taskprobe neither times
//! nor sees fail, so what a test counts is exactly what its command did.

use std::ffi::CString;
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use clap::{Parser, Subcommand};
use gala_e2e::bench::row;
use gala_e2e::ebpf::OfflineProbe;
use gala_e2e::workload::Workload;

#[derive(Parser)]
struct Args {
    #[command(subcommand)]
    mode: Option<Mode>,
    /// Repetitions of each measurement.
    #[arg(long, default_value_t = 5)]
    runs: usize,
    /// Calls of each syscall per repetition.
    #[arg(long, default_value_t = 1_000_000)]
    calls: u64,
    /// A short run that only shows the benchmark works (CI).
    #[arg(long)]
    quick: bool,
    /// The sub-items taskprobe runs with.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "proc_syscall,proc_fs,proc_io,proc_net,proc_ioctl,proc_offcpu"
    )]
    subitems: Vec<String>,
}

#[derive(Subcommand)]
enum Mode {
    /// Runs as the workload process, driven over the Unix socket.
    Workload {
        /// Socket to connect to.
        #[arg(long)]
        socket: String,
    },
}

fn main() {
    let args = Args::parse();
    match args.mode {
        Some(Mode::Workload { socket }) => workload(&socket),
        None => bench(args),
    }
}

// ---------------------------------------------------------------------------------------
// The workload.

/// Monotonic clock in ns (vDSO: no syscall).
fn now_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes the struct we pass.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// Runs `f` and returns its result and duration in ns.
fn timed<T>(f: impl FnOnce() -> T) -> (T, u64) {
    let t0 = now_ns();
    let r = f();
    (r, now_ns() - t0)
}

/// min and max of the durations of `n` runs of `f`.
#[derive(Debug, Default, Clone, Copy)]
struct Span {
    min: u64,
    max: u64,
    sum: u64,
    n: u64,
}

impl Span {
    fn add(&mut self, ns: u64) {
        self.min = if self.n == 0 { ns } else { self.min.min(ns) };
        self.max = self.max.max(ns);
        self.sum += ns;
        self.n += 1;
    }

    fn text(&self) -> String {
        format!("{} {}", self.min, self.max)
    }
}

/// Reads one command line with `recv` (never `read`: that would be timed as `ns_read`).
fn recv_line(fd: i32, pending: &mut Vec<u8>) -> Option<String> {
    loop {
        if let Some(i) = pending.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = pending.drain(..=i).collect();
            return Some(String::from_utf8_lossy(&line[..i]).into_owned());
        }
        let mut buf = [0u8; 512];
        // SAFETY: buf is valid for its length.
        let n = unsafe { libc::recv(fd, buf.as_mut_ptr().cast(), buf.len(), 0) };
        if n <= 0 {
            return None;
        }
        pending.extend_from_slice(&buf[..n as usize]);
    }
}

/// Answers with `send` (never `write`).
fn send_line(fd: i32, text: &str) {
    let line = format!("{text}\n");
    // SAFETY: the buffer is valid for its length.
    unsafe { libc::send(fd, line.as_ptr().cast(), line.len(), 0) };
}

fn workload(socket: &str) {
    let stream = UnixStream::connect(socket).expect("connect to the test's socket");
    let fd = stream.as_raw_fd();
    let mut pending = Vec::new();
    while let Some(line) = recv_line(fd, &mut pending) {
        let words: Vec<&str> = line.split_whitespace().collect();
        let reply = match words.as_slice() {
            ["fail", n] => fail(n.parse().unwrap_or(0)),
            ["io", dir, n, size] => io(dir, n.parse().unwrap_or(1), size.parse().unwrap_or(1)),
            ["sleep", ms] => {
                let (_, ns) =
                    timed(|| std::thread::sleep(Duration::from_millis(ms.parse().unwrap_or(0))));
                format!("ok {ns}")
            }
            ["dns", mode, name] => dns(mode, name),
            ["ioctl", n] => ioctl(n.parse().unwrap_or(1)),
            ["net", n] => net(n.parse().unwrap_or(1)),
            ["bench", n] => bench_calls(n.parse().unwrap_or(1)),
            ["exit"] => return,
            _ => format!("error unknown command {line:?}"),
        };
        send_line(fd, &reply);
    }
}

/// `n` failing `close(-1)` calls (EBADF each).
fn fail(n: u64) -> String {
    let mut failed = 0;
    for _ in 0..n {
        // SAFETY: closing an invalid fd only returns EBADF.
        if unsafe { libc::close(-1) } < 0 {
            failed += 1;
        }
    }
    format!("ok {failed}")
}

/// In `dir`: open a new file, then `n` times write `size` bytes, fsync, and read them back
/// with pread; the reply is `open_ns read_min read_max write_min write_max fsync_min
/// fsync_max`.
fn io(dir: &str, n: u64, size: usize) -> String {
    let path = CString::new(format!("{dir}/proc-workload-{}", std::process::id())).expect("path");
    let (fd, open_ns) = timed(|| {
        // SAFETY: path is NUL-terminated.
        unsafe {
            libc::open(
                path.as_ptr(),
                libc::O_RDWR | libc::O_CREAT | libc::O_TRUNC,
                0o600,
            )
        }
    });
    if fd < 0 {
        return format!("error open {dir}: {}", std::io::Error::last_os_error());
    }
    let data = vec![0x5au8; size];
    let mut back = vec![0u8; size];
    let (mut r, mut w, mut s) = (Span::default(), Span::default(), Span::default());
    for i in 0..n {
        let off = (i as usize * size) as libc::off_t;
        // SAFETY: buffers are valid for `size` bytes; fd is open.
        let (_, ns) = timed(|| unsafe { libc::pwrite(fd, data.as_ptr().cast(), size, off) });
        w.add(ns);
        // SAFETY: the buffers and the message are valid for the call; the fds are open.
        let (_, ns) = timed(|| unsafe { libc::fsync(fd) });
        s.add(ns);
        // SAFETY: the buffers and the message are valid for the call; the fds are open.
        let (_, ns) = timed(|| unsafe { libc::pread(fd, back.as_mut_ptr().cast(), size, off) });
        r.add(ns);
    }
    // SAFETY: fd is ours; path is NUL-terminated.
    unsafe {
        libc::close(fd);
        libc::unlink(path.as_ptr());
    }
    format!("ok {open_ns} {} {} {}", r.text(), w.text(), s.text())
}

/// One resolver call: `gai` getaddrinfo, `gai-numeric` getaddrinfo with AI_NUMERICHOST,
/// `ghbn` gethostbyname, `ghbn2` gethostbyname2(AF_INET); reply `ok <failed 0/1> <ns>`.
fn dns(mode: &str, name: &str) -> String {
    let cname = CString::new(name).expect("name");
    let (failed, ns) = timed(|| match mode {
        "gai" | "gai-numeric" => {
            // SAFETY: hints is zeroed then filled; the result list is freed.
            unsafe {
                let mut hints: libc::addrinfo = std::mem::zeroed();
                hints.ai_socktype = libc::SOCK_STREAM;
                if mode == "gai-numeric" {
                    hints.ai_flags = libc::AI_NUMERICHOST;
                }
                let mut res = std::ptr::null_mut();
                let rc = libc::getaddrinfo(cname.as_ptr(), std::ptr::null(), &hints, &mut res);
                if rc == 0 {
                    libc::freeaddrinfo(res);
                }
                rc != 0
            }
        }
        // SAFETY: `cname` is a NUL-terminated string that outlives the call.
        "ghbn" => unsafe { gethostbyname(cname.as_ptr()).is_null() },
        // SAFETY: `cname` is a NUL-terminated string that outlives the call.
        "ghbn2" => unsafe { gethostbyname2(cname.as_ptr(), libc::AF_INET).is_null() },
        _ => true,
    });
    format!("ok {} {ns}", u8::from(failed))
}

extern "C" {
    fn gethostbyname(name: *const libc::c_char) -> *mut libc::c_void;
    fn gethostbyname2(name: *const libc::c_char, af: libc::c_int) -> *mut libc::c_void;
}

/// `n` ioctl(FIONREAD) on a pipe; reply `ok <fd> <min> <max>`.
fn ioctl(n: u64) -> String {
    let mut fds = [0i32; 2];
    // SAFETY: fds has room for two descriptors.
    if unsafe { libc::pipe(fds.as_mut_ptr()) } < 0 {
        return "error pipe".into();
    }
    let mut span = Span::default();
    for _ in 0..n {
        let mut avail: libc::c_int = 0;
        // SAFETY: FIONREAD writes one int.
        let (_, ns) = timed(|| unsafe { libc::ioctl(fds[0], libc::FIONREAD, &mut avail) });
        span.add(ns);
    }
    // SAFETY: the fds are ours.
    unsafe {
        libc::close(fds[0]);
        libc::close(fds[1]);
    }
    format!("ok {} {}", fds[0], span.text())
}

/// `n` sendmsg + recvmsg of 64 bytes on a socketpair; reply `ok send_min send_max
/// recv_min recv_max`.
fn net(n: u64) -> String {
    let mut sv = [0i32; 2];
    // SAFETY: sv has room for two descriptors.
    if unsafe { libc::socketpair(libc::AF_UNIX, libc::SOCK_DGRAM, 0, sv.as_mut_ptr()) } < 0 {
        return "error socketpair".into();
    }
    let mut buf = [7u8; 64];
    let (mut s, mut r) = (Span::default(), Span::default());
    for _ in 0..n {
        let mut iov = libc::iovec {
            iov_base: buf.as_mut_ptr().cast(),
            iov_len: buf.len(),
        };
        // SAFETY: msg points at one valid iovec.
        let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        // SAFETY: the buffers and the message are valid for the call; the fds are open.
        let (_, ns) = timed(|| unsafe { libc::sendmsg(sv[0], &msg, 0) });
        s.add(ns);
        // SAFETY: the buffers and the message are valid for the call; the fds are open.
        let (_, ns) = timed(|| unsafe { libc::recvmsg(sv[1], &mut msg, 0) });
        r.add(ns);
    }
    // SAFETY: the fds are ours.
    unsafe {
        libc::close(sv[0]);
        libc::close(sv[1]);
    }
    format!("ok {} {}", s.text(), r.text())
}

/// `n` getppid and `n` 1-byte reads from /dev/zero; reply `ok <getppid ns/call> <read
/// ns/call>`.
fn bench_calls(n: u64) -> String {
    let (_, getppid_ns) = timed(|| {
        for _ in 0..n {
            // SAFETY: no preconditions.
            std::hint::black_box(unsafe { libc::syscall(libc::SYS_getppid) });
        }
    });
    let zero = std::fs::File::open("/dev/zero").expect("/dev/zero");
    let fd = zero.as_raw_fd();
    let mut b = [0u8; 1];
    let (_, read_ns) = timed(|| {
        for _ in 0..n {
            // SAFETY: b is one valid byte.
            std::hint::black_box(unsafe { libc::read(fd, b.as_mut_ptr().cast(), 1) });
        }
    });
    format!(
        "ok {:.1} {:.1}",
        getppid_ns as f64 / n as f64,
        read_ns as f64 / n as f64
    )
}

// ---------------------------------------------------------------------------------------
// The benchmark.

/// taskprobe run offline, snooping `pid`, until dropped; returns once it has loaded and its
/// first BPF statistics window (1 s from the start, then 1 s a minute: `gala_ebpf::cost`)
/// has closed, so that the figures are those of the other 59 s of each minute. The
/// statistics add two clock reads per program run while they are on.
fn start_taskprobe(pid: u32, subitems: &[String]) -> OfflineProbe {
    let subitems: Vec<String> = subitems.iter().map(|s| format!("{s:?}")).collect();
    let config = format!(
        r#"{{"subitems":[{}],"params":{{"reportPeriod":5}},"snoopers":[{{"process":{{"pid":{pid}}}}}]}}"#,
        subitems.join(",")
    );
    let probe = OfflineProbe::start("taskprobe", &config);
    std::thread::sleep(Duration::from_millis(1500));
    probe
}

fn bench(mut args: Args) {
    if args.quick {
        args.runs = 1;
        args.calls = 100_000;
    }
    assert!(
        Path::new("/sys/kernel/btf/vmlinux").exists(),
        "the benchmark needs BTF and root"
    );
    let mut w = Workload::start(&std::env::current_exe().expect("current_exe"));
    let cmd = format!("bench {}", args.calls);
    w.cmd_f64(&format!("bench {}", args.calls / 10)); // warm-up
    let measure = |w: &mut Workload| -> (Vec<f64>, Vec<f64>) {
        let (mut g, mut r) = (Vec::new(), Vec::new());
        for _ in 0..args.runs {
            let v = w.cmd_f64(&cmd);
            g.push(v[0]);
            r.push(v[1]);
        }
        (g, r)
    };
    let off = measure(&mut w);
    let other = {
        let _probe = start_taskprobe(std::process::id(), &args.subitems);
        measure(&mut w)
    };
    let on = {
        let _probe = start_taskprobe(w.pid(), &args.subitems);
        measure(&mut w)
    };
    let median = |v: &[f64]| {
        let mut s = v.to_vec();
        s.sort_by(f64::total_cmp);
        s[s.len() / 2]
    };
    println!(
        "proc-bench: {} calls of each syscall, {} run(s), ns per call, sub-items {}",
        args.calls,
        args.runs,
        args.subitems.join(" ")
    );
    println!("| figure | min | median | max |");
    println!("| --- | --- | --- | --- |");
    for (name, idx) in [("getppid", 0), ("read 1 B /dev/zero", 1)] {
        let pick = |m: &(Vec<f64>, Vec<f64>)| if idx == 0 { m.0.clone() } else { m.1.clone() };
        let base = median(&pick(&off));
        println!(
            "{}",
            row(&format!("{name}, proc off, ns/call"), &pick(&off), 1)
        );
        println!(
            "{}",
            row(
                &format!("{name}, proc on, process not snooped, ns/call"),
                &pick(&other),
                1
            )
        );
        println!(
            "{}",
            row(&format!("{name}, proc on, snooped, ns/call"), &pick(&on), 1)
        );
        let slow: Vec<f64> = pick(&on).iter().map(|v| v - base).collect();
        println!(
            "{}",
            row(&format!("{name}, slowdown when snooped, ns/call"), &slow, 1)
        );
        let slow: Vec<f64> = pick(&other).iter().map(|v| v - base).collect();
        println!(
            "{}",
            row(
                &format!("{name}, slowdown when not snooped, ns/call"),
                &slow,
                1
            )
        );
    }
    w.stop();
}
