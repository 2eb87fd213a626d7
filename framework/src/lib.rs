//! The gala-gopher daemon as a library: configuration, ingress, imdb and egress.
pub mod api;
pub mod clock;
pub mod config;
pub mod egress;
pub mod identity;
pub mod imdb;
pub mod ingress;
pub mod logging;
pub mod manager;
pub mod probes;
pub mod ratelimit;
pub mod selfmetrics;
pub mod snooper;
pub mod supervisor;
#[cfg(test)]
pub(crate) mod testutil;
pub mod textcheck;
