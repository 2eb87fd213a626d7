//! Events: the `|event|...|` line of an abnormal condition (docs/reference/meta-and-records.md §5.2).

use std::borrow::Cow;

use crate::error::EmitError;
use crate::line::{breaks_line, escape_text};

/// Severity of an event, with the original's numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    /// 9.
    Info,
    /// 13.
    Warn,
    /// 17.
    Error,
    /// 21.
    Fatal,
}

impl Severity {
    /// The `SeverityText`.
    pub fn text(self) -> &'static str {
        match self {
            Severity::Info => "INFO",
            Severity::Warn => "WARN",
            Severity::Error => "ERROR",
            Severity::Fatal => "FATAL",
        }
    }

    /// The `SeverityNumber`.
    pub fn number(self) -> u32 {
        match self {
            Severity::Info => 9,
            Severity::Warn => 13,
            Severity::Error => 17,
            Severity::Fatal => 21,
        }
    }

    /// Parses `INFO`, `WARN`, `ERROR`, `FATAL` (any case).
    pub fn parse(s: &str) -> Option<Self> {
        match s.to_ascii_uppercase().as_str() {
            "INFO" => Some(Severity::Info),
            "WARN" | "WARNING" => Some(Severity::Warn),
            "ERROR" => Some(Severity::Error),
            "FATAL" => Some(Severity::Fatal),
            _ => None,
        }
    }
}

/// One event, built with [`Event::new`] and the optional setters.
#[derive(Debug, Clone)]
pub struct Event<'a> {
    entity_name: &'a str,
    entity_id: &'a str,
    metric: &'a str,
    severity: Severity,
    message: &'a str,
    pid: u32,
    comm: Cow<'a, str>,
    ip: &'a str,
    container_id: Cow<'a, str>,
    pod_id: &'a str,
    device: &'a str,
    time: Option<&'a str>,
}

impl<'a> Event<'a> {
    /// An event about `metric` of entity `entity_name`/`entity_id`.
    pub fn new(
        entity_name: &'a str,
        entity_id: &'a str,
        metric: &'a str,
        severity: Severity,
        message: &'a str,
    ) -> Self {
        Event {
            entity_name,
            entity_id,
            metric,
            severity,
            message,
            pid: 0,
            comm: Cow::Borrowed(""),
            ip: "",
            container_id: Cow::Borrowed(""),
            pod_id: "",
            device: "",
            time: None,
        }
    }

    /// The process concerned; its comm and container id are looked up in `/proc` unless set.
    pub fn pid(mut self, pid: u32) -> Self {
        self.pid = pid;
        self
    }

    /// The process's command name.
    pub fn comm(mut self, comm: &'a str) -> Self {
        self.comm = Cow::Borrowed(comm);
        self
    }

    /// The IP address concerned.
    pub fn ip(mut self, ip: &'a str) -> Self {
        self.ip = ip;
        self
    }

    /// The container concerned.
    pub fn container_id(mut self, id: &'a str) -> Self {
        self.container_id = Cow::Borrowed(id);
        self
    }

    /// The pod concerned.
    pub fn pod_id(mut self, id: &'a str) -> Self {
        self.pod_id = id;
        self
    }

    /// The device concerned (disk, NIC).
    pub fn device(mut self, device: &'a str) -> Self {
        self.device = device;
        self
    }

    /// Uses `asctime` as the time in the body instead of now (for reproducible output).
    pub fn at(mut self, asctime: &'a str) -> Self {
        self.time = Some(asctime);
        self
    }

    /// The event line, without `\n`. The message is escaped (`|` → `/`, CR/LF → space); the
    /// other fields are refused if they hold a separator.
    pub fn render(&self) -> Result<String, EmitError> {
        for (name, value) in [
            ("entity_name", self.entity_name),
            ("entity_id", self.entity_id),
            ("metric", self.metric),
        ] {
            if value.is_empty() {
                return Err(EmitError::MissingEventField(name));
            }
        }
        let comm = match (&self.comm, self.pid) {
            (c, pid) if c.is_empty() && pid != 0 => Cow::Owned(proc_comm(pid)),
            (c, _) => c.clone(),
        };
        let container = match (&self.container_id, self.pid) {
            (c, pid) if c.is_empty() && pid != 0 => Cow::Owned(proc_container_id(pid)),
            (c, _) => c.clone(),
        };
        let pid = if self.pid == 0 {
            String::new()
        } else {
            self.pid.to_string()
        };
        let fields: [&str; 9] = [
            self.entity_name,
            self.entity_id,
            self.metric,
            &pid,
            &comm,
            self.ip,
            &container,
            self.pod_id,
            self.device,
        ];
        for (i, f) in fields.iter().enumerate() {
            if breaks_line(f.as_bytes()) {
                return Err(EmitError::Separator {
                    table: "event".to_owned(),
                    what: "field",
                    index: i + 1,
                    value: (*f).to_owned(),
                });
            }
        }
        let time = match self.time {
            Some(t) => t.to_owned(),
            None => asctime_now(),
        };
        let sev = self.severity.text();
        let body = format!(
            "{time} {sev} Entity({}) {}",
            self.entity_id,
            escape_text(self.message)
        );
        let mut line = String::with_capacity(64 + body.len());
        line.push_str("|event|");
        for f in fields {
            line.push_str(f);
            line.push('|');
        }
        line.push_str(sev);
        line.push('|');
        line.push_str(&self.severity.number().to_string());
        line.push('|');
        line.push_str(&body);
        line.push('|');
        Ok(line)
    }
}

/// The local time as C `asctime` writes it, without the newline: `Tue Dec  1 19:40:38 2026`.
pub fn asctime_now() -> String {
    let mut buf = [0u8; 64];
    // SAFETY: `localtime_r` writes into the zeroed `tm` we own; `strftime` writes at most
    // `buf.len()` bytes into `buf` and returns how many; the format is a NUL-terminated literal.
    let n = unsafe {
        let now = libc::time(std::ptr::null_mut());
        let mut tm: libc::tm = std::mem::zeroed();
        if libc::localtime_r(&now, &mut tm).is_null() {
            return String::new();
        }
        libc::strftime(
            buf.as_mut_ptr().cast(),
            buf.len(),
            c"%a %b %e %H:%M:%S %Y".as_ptr(),
            &tm,
        )
    };
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

/// `/proc/<pid>/comm`, or empty if the process is gone.
fn proc_comm(pid: u32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .map(|s| s.trim_end().to_owned())
        .unwrap_or_default()
}

/// The 12-character container id of `pid` (from a 64-hex-digit id in `/proc/<pid>/cgroup`),
/// or empty on the host.
fn proc_container_id(pid: u32) -> String {
    let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap_or_default();
    container_id_in(&text).unwrap_or_default().to_owned()
}

/// The first 12 characters of the first run of 64 hex digits in a cgroup file.
fn container_id_in(cgroup: &str) -> Option<&str> {
    let b = cgroup.as_bytes();
    let mut run = 0;
    for (i, c) in b.iter().enumerate() {
        if c.is_ascii_hexdigit() {
            run += 1;
            let next_is_hex = b.get(i + 1).is_some_and(u8::is_ascii_hexdigit);
            if run == 64 && !next_is_hex {
                let start = i + 1 - 64;
                return Some(&cgroup[start..start + 12]);
            }
        } else {
            run = 0;
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: &str = "Tue Dec  1 19:40:38 2026";

    #[test]
    fn renders_all_fields() {
        let line = Event::new("tcp_link", "1_2", "retran", Severity::Error, "too many")
            .pid(1)
            .comm("init")
            .ip("10.0.0.1")
            .container_id("abc")
            .pod_id("pod")
            .device("eth0")
            .at(T)
            .render()
            .unwrap();
        assert_eq!(
            line,
            format!("|event|tcp_link|1_2|retran|1|init|10.0.0.1|abc|pod|eth0|ERROR|17|{T} ERROR Entity(1_2) too many|")
        );
        let parsed = gala_meta::parse_event(line.as_bytes()).unwrap();
        assert_eq!(parsed.severity_number, b"17");
    }

    #[test]
    fn escapes_the_message_and_refuses_other_fields() {
        let line = Event::new("e", "id", "m", Severity::Info, "a|b\nc\rd")
            .at(T)
            .render()
            .unwrap();
        assert!(line.ends_with("Entity(id) a/b c d|"), "{line}");
        assert!(gala_meta::parse_event(line.as_bytes()).is_ok());
        for (e, field) in [
            (Event::new("e|x", "id", "m", Severity::Info, ""), 1),
            (Event::new("e", "i\nd", "m", Severity::Info, ""), 2),
            (Event::new("e", "id", "m\r", Severity::Info, ""), 3),
            (Event::new("e", "id", "m", Severity::Info, "").ip("1|2"), 6),
            (
                Event::new("e", "id", "m", Severity::Info, "").device("a\n"),
                9,
            ),
        ] {
            match e.render() {
                Err(EmitError::Separator { index, .. }) => assert_eq!(index, field),
                other => panic!("{other:?}"),
            }
        }
        assert!(matches!(
            Event::new("", "id", "m", Severity::Info, "").render(),
            Err(EmitError::MissingEventField("entity_name"))
        ));
        assert!(matches!(
            Event::new("e", "id", "", Severity::Info, "").render(),
            Err(EmitError::MissingEventField("metric"))
        ));
    }

    #[test]
    fn looks_up_comm_of_a_pid() {
        let me = std::process::id();
        let line = Event::new("e", "id", "m", Severity::Warn, "x")
            .pid(me)
            .at(T)
            .render()
            .unwrap();
        let parsed = gala_meta::parse_event(line.as_bytes()).unwrap();
        assert_eq!(parsed.pid, me.to_string().as_bytes());
        assert!(!parsed.comm.is_empty());
    }

    #[test]
    fn container_ids_from_cgroup_text() {
        let id = "0123456789abcdef".repeat(4);
        assert_eq!(
            container_id_in(&format!("0::/system.slice/docker-{id}.scope\n")),
            Some("0123456789ab")
        );
        assert_eq!(container_id_in("0::/user.slice/session-1.scope\n"), None);
        assert_eq!(container_id_in(&format!("0::/{id}0\n")), None);
    }

    #[test]
    fn asctime_has_the_c_shape() {
        let t = asctime_now();
        assert_eq!(t.len(), 24, "{t:?}");
        assert_eq!(&t[3..4], " ");
    }

    #[test]
    fn severities() {
        assert_eq!(Severity::parse("warn"), Some(Severity::Warn));
        assert_eq!(Severity::Fatal.number(), 21);
        assert_eq!(Severity::parse("x"), None);
    }
}
