//! Which containers a cycle reports, from the snoopers the daemon sent: in whitelist mode the
//! containers of the container objects and of the process objects; in blacklist mode every
//! container on the host but those.

use gala_probe_sdk::{Config, SnooperMode};

/// The containers to report.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Scope {
    /// Blacklist mode: report every container but `ids`.
    pub all_but: bool,
    /// Container ids (lowercase; full 64-hex or an abbreviation) listed by the snoopers.
    pub ids: Vec<String>,
    /// Processes the snoopers named, with the id of the container each is in: where to look
    /// for a listed container first.
    pub hints: Vec<(String, u32)>,
}

impl Scope {
    /// The scope of a configuration snapshot.
    pub fn from_config(config: &Config) -> Self {
        let mut ids: Vec<String> = config
            .containers()
            .map(|c| c.id.to_ascii_lowercase())
            .chain(
                config
                    .processes()
                    .map(|p| p.container_id.to_ascii_lowercase()),
            )
            .filter(|id| !id.is_empty())
            .collect();
        ids.sort_unstable();
        ids.dedup();
        let hints = config
            .processes()
            .filter(|p| !p.container_id.is_empty())
            .map(|p| (p.container_id.to_ascii_lowercase(), p.pid))
            .collect();
        Scope {
            all_but: config.snooper_mode() == SnooperMode::Blacklist,
            ids,
            hints,
        }
    }

    /// Whether `id` (full, lowercase) is one of the listed containers.
    pub fn lists(&self, id: &str) -> bool {
        self.ids
            .iter()
            .any(|l| id.starts_with(l.as_str()) || l.starts_with(id))
    }

    /// Whether the container `id` (full, lowercase) is reported.
    pub fn wants(&self, id: &str) -> bool {
        self.lists(id) != self.all_but
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    const B: &str = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";
    const C: &str = "cccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccc";

    fn config(mode: &str, snoopers: &str) -> Config {
        Config::offline_from(
            "container",
            Some(&format!(
                r#"{{"snooperMode":"{mode}","snoopers":[{snoopers}]}}"#
            )),
        )
        .expect("config")
    }

    #[test]
    fn whitelist_takes_containers_and_the_containers_of_processes() {
        let c = config(
            "SNOOPER_MODE_WHITELIST",
            &format!(
                r#"{{"container":{{"id":"{}"}}}},{{"process":{{"pid":7,"containerId":"{}"}}}},{{"process":{{"pid":8}}}}"#,
                A.to_uppercase(),
                B
            ),
        );
        let s = Scope::from_config(&c);
        assert!(!s.all_but);
        assert!(s.wants(A) && s.wants(B) && !s.wants(C));
        assert_eq!(s.hints, [(B.to_owned(), 7)]);
    }

    #[test]
    fn blacklist_takes_everything_but_the_listed() {
        let c = config(
            "SNOOPER_MODE_BLACKLIST",
            &format!(r#"{{"container":{{"id":"{}"}}}}"#, &A[..12]),
        );
        let s = Scope::from_config(&c);
        assert!(s.all_but);
        assert!(!s.wants(A) && s.wants(B));
        // An empty blacklist: every container.
        let all = Scope::from_config(&config("SNOOPER_MODE_BLACKLIST", ""));
        assert!(all.wants(A) && all.wants(C));
        // An empty whitelist: none.
        assert!(!Scope::from_config(&config("SNOOPER_MODE_WHITELIST", "")).wants(A));
    }
}
