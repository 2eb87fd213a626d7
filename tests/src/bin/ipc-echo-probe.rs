//! A test probe that reports the configuration it receives on its control channel as
//! records, so end-to-end tests can see through `/metrics` what reached the probe:
//!
//! `|ipc_echo|<probe>|<encoding>|<mode>|<subitems>|<pids>|<flags>|<seq>|<report_period>|`
//!
//! `<pids>` are the process snoopers, `<subitems>` comma-separated; `<flags>` the change flags
//! of the message. It says hello first, and exits when the daemon closes the channel.

use std::io::{BufReader, Write};

use gala_ipc_proto::v1::{
    daemon_message, probe_message, snooper_object, DaemonMessage, Hello, ProbeMessage,
};
use gala_ipc_proto::{blocking, from_env};

fn main() {
    let probe = std::env::var("GALA_GOPHER_PROBE_NAME").unwrap_or_default();
    let (stream, encoding) = match from_env() {
        Ok(Some(channel)) => channel,
        Ok(None) => {
            eprintln!("no control channel");
            std::process::exit(2);
        }
        Err(e) => {
            eprintln!("control channel: {e}");
            std::process::exit(2);
        }
    };
    let mut out = std::io::stdout().lock();
    let mut writer = match stream.try_clone() {
        Ok(w) => w,
        Err(e) => {
            eprintln!("control channel: {e}");
            std::process::exit(2);
        }
    };
    let hello = ProbeMessage {
        body: Some(probe_message::Body::Hello(Hello {
            sdk_version: "e2e-echo".into(),
            probe_name: probe.clone(),
            pid: std::process::id(),
        })),
    };
    if let Err(e) = blocking::write_message(&mut writer, &hello, encoding) {
        eprintln!("hello: {e}");
    }
    let mut reader = BufReader::new(stream);
    loop {
        let msg: DaemonMessage = match blocking::read_message(&mut reader, encoding) {
            Ok(Some(m)) => m,
            Ok(None) => return,
            Err(e) => {
                eprintln!("bad control message: {e}");
                continue;
            }
        };
        let Some(daemon_message::Body::Config(c)) = msg.body else {
            continue;
        };
        let pids: Vec<String> = c
            .snoopers
            .iter()
            .filter_map(|s| match &s.object {
                Some(snooper_object::Object::Process(p)) => Some(p.pid.to_string()),
                _ => None,
            })
            .collect();
        let mode = if c.snooper_mode == 1 {
            "blacklist"
        } else {
            "whitelist"
        };
        let report_period = c.params.as_ref().map_or(0, |p| p.report_period);
        let _ = writeln!(
            out,
            "|ipc_echo|{probe}|{encoding}|{mode}|{}|{}|{}|{}|{report_period}|",
            c.subitems.join(","),
            if pids.is_empty() {
                "none".to_string()
            } else {
                pids.join(",")
            },
            c.change_flags,
            c.seq,
        );
        let _ = out.flush();
    }
}
