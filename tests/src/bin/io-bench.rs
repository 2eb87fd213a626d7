//! ioprobe overhead benchmark (`cargo build --release -p gala-ioprobe -p gala-e2e --bins &&
//! target/release/io-bench`, as root):
//!
//! O_DIRECT 4 KiB I/O, one request at a time (alternating writes and reads over a 256 MiB
//! loop device on a file in a tmpfs the benchmark mounts: no disk, no writeback, so the
//! figures show the block layer's and the probe's CPU cost), for `--seconds` per phase, with
//! 1. no probe;
//! 2. `ioprobe` running offline with every sub-item, `sample_period` 100 ms (the smallest the
//!    REST API accepts);
//! 3. the same with `sample_period` 0 (offline only): every request traced, the worst case.
//!
//! Phases alternate `--runs` times; min / median / max of IOPS, MB/s and the probe's CPU
//! time are printed as a Markdown table, then the BPF run time per program run (ns) from the
//! kernel's statistics (the `ebpf_prog` table), for `docs/benchmarks.md`. `--quick`: one
//! short run that only shows the benchmark works (CI).

use std::fs::{File, OpenOptions};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use clap::Parser;
use gala_e2e::bench::{cpu_seconds, row};
use gala_e2e::ebpf::OfflineProbe;
use gala_e2e::repo_root;

#[derive(Parser)]
struct Args {
    /// Repetitions of each phase.
    #[arg(long, default_value_t = 5)]
    runs: usize,
    /// Seconds of I/O per phase.
    #[arg(long, default_value_t = 5.0)]
    seconds: f64,
    /// A short run that only shows the benchmark works (CI).
    #[arg(long)]
    quick: bool,
}

const BLOCK: usize = 4096;
const DEVICE_SIZE: u64 = 256 << 20;

/// A loop device on a file; detached when dropped.
struct LoopDev(String);

impl Drop for LoopDev {
    fn drop(&mut self) {
        let _ = Command::new("losetup").args(["-d", &self.0]).status();
    }
}

fn attach(file: &Path) -> LoopDev {
    let out = Command::new("losetup")
        .args(["-f", "--show"])
        .arg(file)
        .output()
        .expect("losetup");
    assert!(
        out.status.success(),
        "losetup: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    LoopDev(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// A tmpfs mount; unmounted (lazily) when dropped.
struct Mount(PathBuf);

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

fn mount_tmpfs(dir: &Path) -> Mount {
    let ok = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=300M", "tmpfs"])
        .arg(dir)
        .status()
        .expect("mount");
    assert!(ok.success(), "mount tmpfs on {}", dir.display());
    Mount(dir.to_path_buf())
}

/// A page-aligned 4 KiB buffer.
struct Buf(*mut u8, std::alloc::Layout);

impl Buf {
    fn new() -> Self {
        let layout = std::alloc::Layout::from_size_align(BLOCK, 4096).expect("layout");
        // SAFETY: non-zero size; freed in Drop with the same layout.
        let p = unsafe { std::alloc::alloc_zeroed(layout) };
        assert!(!p.is_null());
        Buf(p, layout)
    }

    fn slice(&mut self) -> &mut [u8] {
        // SAFETY: valid for BLOCK bytes while self lives.
        unsafe { std::slice::from_raw_parts_mut(self.0, BLOCK) }
    }
}

impl Drop for Buf {
    fn drop(&mut self) {
        // SAFETY: allocated in `new` with this layout.
        unsafe { std::alloc::dealloc(self.0, self.1) };
    }
}

/// Requests completed in `seconds` of alternating 4 KiB O_DIRECT writes and reads.
fn workload(f: &File, seconds: f64) -> (u64, f64) {
    let mut buf = Buf::new();
    let blocks = DEVICE_SIZE / BLOCK as u64;
    let start = Instant::now();
    let limit = Duration::from_secs_f64(seconds);
    let mut n = 0u64;
    // A fixed stride over the device: no two consecutive requests are adjacent (no merges).
    let mut block = 0u64;
    while start.elapsed() < limit {
        for _ in 0..64 {
            let off = block * BLOCK as u64;
            if n.is_multiple_of(2) {
                f.write_at(buf.slice(), off).expect("write");
            } else {
                f.read_at(buf.slice(), off).expect("read");
            }
            n += 1;
            block = (block + 7919) % blocks;
        }
    }
    (n, start.elapsed().as_secs_f64())
}

/// `ioprobe` running offline with every sub-item and `sample_period`.
fn start_probe(sample_period: u32) -> OfflineProbe {
    let config = format!(
        r#"{{"subitems":["io_trace","io_err","io_count","page_cache"],"params":{{"reportPeriod":5,"samplePeriod":{sample_period}}}}}"#
    );
    OfflineProbe::start("ioprobe", &config)
}

/// Stops the probe; returns the cumulative `(run_time_ns, run_count)` per program from its
/// last `ebpf_prog` records.
fn stop_probe(probe: OfflineProbe) -> Vec<(String, u64, u64)> {
    let mut last: Vec<(String, u64, u64)> = Vec::new();
    for l in probe.stop() {
        let v: Vec<&str> = l.split('|').collect();
        // |ebpf_prog|io|<prog>|<hook>|<run_time_ns>|<run_count>|<ns_per_run>|
        if v.len() >= 7 && v[1] == "ebpf_prog" {
            let (Ok(t), Ok(c)) = (v[5].parse(), v[6].parse()) else {
                continue;
            };
            match last.iter_mut().find(|(p, _, _)| p == v[3]) {
                Some(e) => *e = (v[3].to_owned(), t, c),
                None => last.push((v[3].to_owned(), t, c)),
            }
        }
    }
    last
}

fn main() {
    let mut args = Args::parse();
    if args.quick {
        args.runs = 1;
        args.seconds = 1.5;
    }
    let dir: PathBuf = repo_root().join("target/e2e-io");
    std::fs::create_dir_all(&dir).expect("mkdir target/e2e-io");
    let dir = tempfile::tempdir_in(dir).expect("tempdir");
    let mnt = mount_tmpfs(dir.path());
    let file = dir.path().join("bench.img");
    // Written out (not sparse): no phase pays for allocation in the backing file.
    {
        use std::io::Write;
        let mut out = File::create(&file).expect("backing file");
        let chunk = vec![0u8; 1 << 20];
        for _ in 0..DEVICE_SIZE >> 20 {
            out.write_all(&chunk).expect("write backing file");
        }
        out.sync_all().expect("fsync backing file");
    }
    let lo = attach(&file);
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_DIRECT)
        .open(&lo.0)
        .expect("open loop device O_DIRECT");
    // Warm the backing file's page cache so every phase sees the same device.
    workload(&f, args.seconds.min(2.0));

    let phases: [(&str, Option<u32>); 3] = [
        ("io off", None),
        ("io on, sample_period 100 ms", Some(100)),
        ("io on, every request traced", Some(0)),
    ];
    let mut iops = vec![Vec::new(); phases.len()];
    let mut mbs = vec![Vec::new(); phases.len()];
    let mut cpu = vec![Vec::new(); phases.len()];
    let mut costs: Vec<Vec<(String, u64, u64)>> = vec![Vec::new(); phases.len()];
    for run in 0..args.runs {
        // Rotate the phase order so that no phase always runs first.
        for k in 0..phases.len() {
            let i = (k + run) % phases.len();
            let sample = phases[i].1;
            let probe = sample.map(start_probe);
            let cpu0 = probe.as_ref().map_or(0.0, |p| cpu_seconds(p.pid()));
            let (n, secs) = workload(&f, args.seconds);
            let cpu1 = probe.as_ref().map_or(0.0, |p| cpu_seconds(p.pid()));
            iops[i].push(n as f64 / secs);
            mbs[i].push(n as f64 * BLOCK as f64 / secs / 1e6);
            cpu[i].push((cpu1 - cpu0) / secs * 100.0);
            if let Some(p) = probe {
                let c = stop_probe(p);
                for (prog, t, count) in c {
                    match costs[i].iter_mut().find(|(p, _, _)| *p == prog) {
                        Some(e) => {
                            e.1 += t;
                            e.2 += count;
                        }
                        None => costs[i].push((prog, t, count)),
                    }
                }
            }
        }
    }
    println!(
        "4 KiB O_DIRECT requests, one at a time, alternating write/read, loop device on a \
         tmpfs file ({} runs × {:.1} s per phase)\n",
        args.runs, args.seconds
    );
    println!("| figure | min | median | max |");
    println!("| --- | --- | --- | --- |");
    for (i, (name, _)) in phases.iter().enumerate() {
        println!("{}", row(&format!("IOPS, {name}"), &iops[i], 0));
        println!("{}", row(&format!("MB/s, {name}"), &mbs[i], 1));
        if i > 0 {
            println!(
                "{}",
                row(&format!("ioprobe CPU % of one core, {name}"), &cpu[i], 2)
            );
        }
    }
    for (i, (name, _)) in phases.iter().enumerate().skip(1) {
        println!("\nBPF run time per program run, {name} (all runs):\n");
        println!("| program | runs | ns per run |");
        println!("| --- | --- | --- |");
        for (prog, t, c) in &costs[i] {
            let per = if *c == 0 { 0.0 } else { *t as f64 / *c as f64 };
            println!("| {prog} | {c} | {per:.0} |");
        }
    }
    drop(f);
    drop(lo);
    drop(mnt);
}
