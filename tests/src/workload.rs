//! The client side of the `proc-bench workload` protocol: a workload process started with
//! `workload --socket PATH` connects to a Unix socket the client listens on, then runs one
//! command per line (`fail N`, `io DIR N SIZE`, `sleep MS`, `dns MODE NAME`, `ioctl N`,
//! `net N`, `bench N`, `exit`) and answers each with one line `ok <numbers>`. The server
//! side is in `tests/src/bin/proc-bench.rs`.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::str::FromStr;

use crate::KillOnDrop;

/// A workload process and the socket that drives it; killed when dropped.
pub struct Workload {
    child: KillOnDrop,
    conn: BufReader<UnixStream>,
    _dir: tempfile::TempDir,
}

impl Workload {
    /// Starts `exe workload --socket <tmp>/workload.sock` (`exe`: the `proc-bench` binary)
    /// and waits until it connects.
    pub fn start(exe: &Path) -> Workload {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("workload.sock");
        let listener = UnixListener::bind(&path).expect("bind");
        let child = Command::new(exe)
            .args(["workload", "--socket"])
            .arg(&path)
            .stdin(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "spawn the workload {}: {e} (cargo build -p gala-e2e --bins)",
                    exe.display()
                )
            });
        let (conn, _) = listener.accept().expect("the workload connects");
        Workload {
            child: KillOnDrop(child),
            conn: BufReader::new(conn),
            _dir: dir,
        }
    }

    /// The workload's pid.
    pub fn pid(&self) -> u32 {
        self.child.0.id()
    }

    /// Runs one command; returns the integers of its `ok` reply (panics on anything else).
    pub fn cmd(&mut self, line: &str) -> Vec<u64> {
        self.run(line)
    }

    /// Runs one command; returns the decimal numbers of its `ok` reply (`bench N`).
    pub fn cmd_f64(&mut self, line: &str) -> Vec<f64> {
        self.run(line)
    }

    fn run<T: FromStr>(&mut self, line: &str) -> Vec<T>
    where
        T::Err: std::fmt::Debug,
    {
        writeln!(self.conn.get_mut(), "{line}").expect("send command");
        let mut reply = String::new();
        self.conn.read_line(&mut reply).expect("reply");
        let mut words = reply.split_whitespace();
        assert_eq!(words.next(), Some("ok"), "{line}: {reply}");
        words.map(|w| w.parse().expect("number")).collect()
    }

    /// Asks the workload to exit and reaps it.
    pub fn stop(&mut self) {
        let _ = writeln!(self.conn.get_mut(), "exit");
        let _ = self.child.0.wait();
    }
}
