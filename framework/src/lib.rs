//! The gala-gopher daemon as a library: configuration, ingress, imdb, egress, probe
//! supervision and control, the HTTP(S) listeners and the daemon's end of the local control
//! socket of `gopher-ctl` (whose protocol and client are the `gopher-ctl` package).
pub mod api;
pub mod clock;
pub mod config;
pub mod containers;
pub mod ctl;
pub mod daemon;
pub mod egress;
pub mod identity;
pub mod imdb;
pub mod ingress;
pub mod labels;
pub mod labeltext;
pub mod legacy_ipc;
pub mod logfile;
pub mod logging;
pub mod manager;
pub mod probes;
pub mod ratelimit;
pub mod rest;
pub mod selfmetrics;
pub mod server;
pub mod snooper;
pub mod supervisor;
#[cfg(test)]
pub(crate) mod testutil;
pub mod textcheck;
pub mod tls;
