//! A probe that links the SDK gets no command-line parser with it: `clap` belongs to the
//! `gala-probe` helper (`probe-sdk/cli`), not to the library. Read from `cargo metadata`
//! (offline, nothing built), following normal dependencies only, as `cargo tree -e normal`.

use std::collections::{BTreeSet, HashMap};
use std::process::Command;

use serde_json::Value;

/// The resolved dependency graph of the workspace.
struct Graph {
    /// Package id → its normal (linked) dependencies' ids.
    normal: HashMap<String, Vec<String>>,
    /// Package id → name.
    names: HashMap<String, String>,
    /// Ids of the workspace's packages.
    members: Vec<String>,
}

impl Graph {
    fn load() -> Self {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
        let manifest = concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml");
        let out = Command::new(cargo)
            .args(["metadata", "--format-version", "1", "--offline", "--locked"])
            .args(["--manifest-path", manifest])
            .output()
            .expect("run cargo metadata");
        assert!(
            out.status.success(),
            "cargo metadata: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let meta: Value = serde_json::from_slice(&out.stdout).expect("metadata is JSON");
        let text = |v: &Value| v.as_str().expect("a string").to_owned();
        let names = meta["packages"]
            .as_array()
            .expect("packages")
            .iter()
            .map(|p| (text(&p["id"]), text(&p["name"])))
            .collect();
        let normal = meta["resolve"]["nodes"]
            .as_array()
            .expect("resolve.nodes")
            .iter()
            .map(|node| {
                let deps = node["deps"]
                    .as_array()
                    .expect("deps")
                    .iter()
                    .filter(|d| {
                        let kinds = d["dep_kinds"].as_array().expect("dep_kinds");
                        kinds.iter().any(|k| k["kind"].is_null())
                    })
                    .map(|d| text(&d["pkg"]))
                    .collect();
                (text(&node["id"]), deps)
            })
            .collect();
        let members = meta["workspace_members"]
            .as_array()
            .expect("workspace_members")
            .iter()
            .map(text)
            .collect();
        Graph {
            normal,
            names,
            members,
        }
    }

    fn id(&self, name: &str) -> &str {
        self.members
            .iter()
            .find(|id| self.names[*id] == name)
            .unwrap_or_else(|| panic!("{name} is not a workspace member"))
    }

    /// Names of the packages `id` depends on directly.
    fn direct(&self, id: &str) -> BTreeSet<&str> {
        self.normal[id]
            .iter()
            .map(|d| self.names[d].as_str())
            .collect()
    }

    /// Names of every package `id` links, itself excluded.
    fn closure(&self, id: &str) -> BTreeSet<&str> {
        let mut seen = BTreeSet::new();
        let mut todo: Vec<&str> = self.normal[id].iter().map(String::as_str).collect();
        while let Some(next) = todo.pop() {
            if seen.insert(next) {
                todo.extend(self.normal[next].iter().map(String::as_str));
            }
        }
        seen.iter().map(|id| self.names[*id].as_str()).collect()
    }
}

#[test]
fn probes_linking_the_sdk_get_no_clap() {
    let graph = Graph::load();
    let sdk = graph.id("gala-probe-sdk");
    assert!(
        !graph.closure(sdk).contains("clap"),
        "gala-probe-sdk links clap"
    );
    // Every workspace package that links the SDK and does not ask for clap itself.
    let users: Vec<&str> = graph
        .members
        .iter()
        .filter(|id| graph.direct(id).contains("gala-probe-sdk"))
        .filter(|id| !graph.direct(id).contains("clap"))
        .map(String::as_str)
        .collect();
    let user_names: BTreeSet<&str> = users.iter().map(|id| graph.names[*id].as_str()).collect();
    for expected in ["gala-tcpprobe", "gala-probe-c"] {
        assert!(
            user_names.contains(expected),
            "{expected} not found: {user_names:?}"
        );
    }
    for id in users {
        assert!(
            !graph.closure(id).contains("clap"),
            "{} links clap through its dependencies",
            graph.names[id]
        );
    }
    // The helper does have it: the walk finds clap where it is.
    assert!(graph.closure(graph.id("gala-probe-cli")).contains("clap"));
}
