//! The peers suite: the daemon and its probes against real third-party programs that
//! `./dev.sh test` installs — promtool and a Prometheus server, a Kafka broker (tansu) and
//! client (kafka-python), PostgreSQL, and node_exporter as the reference of baseinfo.
//!
//! One module per file of `tests/e2e/`; `docs/testing.md` says how the suites are organised.
//! Runs alone ([`gala_e2e::gate::exclusive`]): `baseinfo::proc_snooper_reports_the_snooped_process_only`
//! (a process spinning one core, whose share it checks).

#[path = "../e2e/baseinfo.rs"]
mod baseinfo;
#[path = "../e2e/kafka.rs"]
mod kafka;
#[path = "../e2e/pg_stat.rs"]
mod pg_stat;
#[path = "../e2e/prometheus.rs"]
mod prometheus;
