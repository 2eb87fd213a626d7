//! The daemon suite: the real daemon, its REST API, control channel, ingress and egress to
//! logs and HTTP(S), the supervisor, the links of the docs, the shipped configuration and extend probes, and the
//! probe SDKs — nothing outside this build but `python3`, `sh` and `cc`.
//!
//! One module per file of `tests/e2e/`; `docs/testing.md` says how the suites are organised.
//! Runs alone ([`gala_e2e::gate::exclusive`]): `rest_load` (50 REST clients load both cores).

#[path = "../e2e/control_channel.rs"]
mod control_channel;
#[path = "../e2e/default_config.rs"]
mod default_config;
#[path = "../e2e/docs_links.rs"]
mod docs_links;
#[path = "../e2e/event_log.rs"]
mod event_log;
#[path = "../e2e/extends.rs"]
mod extends;
#[path = "../e2e/ingress.rs"]
mod ingress;
#[path = "../e2e/legacy_ipc.rs"]
mod legacy_ipc;
#[path = "../e2e/lifecycle.rs"]
mod lifecycle;
#[path = "../e2e/log_egress.rs"]
mod log_egress;
#[path = "../e2e/metadata.rs"]
mod metadata;
#[path = "../e2e/probe_control.rs"]
mod probe_control;
#[path = "../e2e/rest_api.rs"]
mod rest_api;
#[path = "../e2e/rest_load.rs"]
mod rest_load;
#[path = "../e2e/sdk.rs"]
mod sdk;
#[path = "../e2e/sdk_c.rs"]
mod sdk_c;
#[path = "../e2e/tls.rs"]
mod tls;
