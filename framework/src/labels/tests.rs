use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use super::*;
use crate::api::ProcNameEntry;
use crate::containers::{ContainerLookup, ContainerMeta};
use crate::snooper::ScanRoots;
use crate::testutil::registry;

const META: &str = r#"
version = "1.0.0";
measurements: (
  { table_name: "p"; entity_name: "proc";
    fields: ( { description: "d"; type: "key"; name: "tgid"; },
              { description: "d"; type: "gauge"; name: "v"; } ); },
  { table_name: "t"; entity_name: "tcp_link";
    fields: ( { description: "d"; type: "key"; name: "TGID"; },
              { description: "d"; type: "label"; name: "comm"; },
              { description: "d"; type: "label"; name: "app"; },
              { description: "d"; type: "gauge"; name: "v"; } ); },
  { table_name: "c"; entity_name: "container";
    fields: ( { description: "d"; type: "key"; name: "container_id"; },
              { description: "d"; type: "gauge"; name: "v"; } ); },
  { table_name: "n"; entity_name: "nic";
    fields: ( { description: "d"; type: "key"; name: "dev"; },
              { description: "d"; type: "gauge"; name: "v"; } ); },
);
"#;

const ID: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
const POD: &str = "4a2c4f6e-1b3d-4e5f-8a9b-0c1d2e3f4a5b";

/// Writes labels as `name=value` pairs.
#[derive(Default)]
struct Pairs(Vec<(String, String)>);

impl LabelSink for Pairs {
    fn label(&mut self, name: &str, value: &[u8]) {
        self.0
            .push((name.into(), String::from_utf8_lossy(value).into()));
    }
}

/// The runtimes' answer, from a map (the runtime clients have tests of their own).
struct Known(BTreeMap<String, ContainerMeta>);

impl ContainerLookup for Known {
    fn lookup(&self, full_id: &str) -> Option<ContainerMeta> {
        self.0.get(full_id).cloned()
    }
}

/// A proc tree with pid 100 in container `ID` of pod `POD`, pid 200 on the host, and
/// `btime`.
fn proc_tree(root: &Path) {
    let write = |pid: u32, comm: &str, cmdline: &str, cgroup: &str| {
        let dir = root.join(pid.to_string());
        std::fs::create_dir_all(&dir).unwrap();
        let stat =
            format!("{pid} ({comm}) S 1 {pid} {pid} 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 500 0 0");
        std::fs::write(dir.join("stat"), stat).unwrap();
        std::fs::write(dir.join("comm"), format!("{comm}\n")).unwrap();
        std::fs::write(dir.join("cmdline"), cmdline.replace(' ', "\0")).unwrap();
        std::fs::write(dir.join("cgroup"), cgroup).unwrap();
    };
    write(
        100,
        "nginx",
        "nginx -g daemon off;",
        &format!("0::/kubepods/besteffort/pod{POD}/{ID}\n"),
    );
    write(
        200,
        "sshd",
        "/usr/sbin/sshd -D",
        "0::/system.slice/ssh.service\n",
    );
    std::fs::write(root.join("stat"), "cpu 1 2 3\nbtime 1700000000\n").unwrap();
}

fn labels(root: &Path, lookup: Option<Arc<dyn ContainerLookup>>) -> Labels {
    let roots = ScanRoots {
        proc_root: root.into(),
        sys_root: root.join("sys"),
    };
    Labels::new(&registry(META), ProcCache::new(roots, lookup))
}

fn write(
    l: &Labels,
    table: u32,
    chosen: Option<&ProbeLabels>,
    values: &[&str],
) -> Vec<(String, String)> {
    let values: Vec<&[u8]> = values.iter().map(|v| v.as_bytes()).collect();
    let mut out = Pairs::default();
    l.write(TableId(table), chosen, &values, &mut out);
    out.0
}

fn pairs(want: &[(&str, &str)]) -> Vec<(String, String)> {
    want.iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect()
}

fn runtime() -> Arc<dyn ContainerLookup> {
    let meta = ContainerMeta {
        name: Some("web".into()),
        image: Some("nginx:1.25".into()),
        pod_name: Some("web-1".into()),
        pod_namespace: Some("prod".into()),
        pod_uid: Some(POD.into()),
        labels: BTreeMap::from([("app.kubernetes.io/name".into(), "shop".into())]),
    };
    Arc::new(Known(BTreeMap::from([(ID.to_string(), meta)])))
}

#[test]
fn process_container_and_pod_labels_follow_the_table() {
    let dir = tempfile::tempdir().unwrap();
    proc_tree(dir.path());
    let l = labels(dir.path(), Some(runtime()));
    // Before the runtime answered: what /proc says.
    let early = write(&l, 0, None, &["100", "1"]);
    assert!(
        early.starts_with(&pairs(&[
            ("comm", "nginx"),
            ("cmdline", "nginx -g daemon off;"),
            ("start_time", "1700000005"),
            ("container_id", "0123456789ab"),
        ])),
        "{early:?}"
    );
    assert!(l.cache().wait_meta(ID, Duration::from_secs(5)));
    assert_eq!(
        write(&l, 0, None, &["100", "1"]),
        pairs(&[
            ("comm", "nginx"),
            ("cmdline", "nginx -g daemon off;"),
            ("start_time", "1700000005"),
            ("container_id", "0123456789ab"),
            ("container_name", "web"),
            ("container_image", "nginx:1.25"),
            ("pod_id", POD),
            ("pod", "prod/web-1"),
            ("pod_namespace", "prod"),
        ])
    );
    // Own comm: none added; not entity proc: no cmdline; a host process: no container.
    assert_eq!(write(&l, 1, None, &["200", "x", "a", "1"]), []);
    assert_eq!(
        write(&l, 1, None, &["100", "x", "a", "1"])[0],
        ("container_id".into(), "0123456789ab".into())
    );
    // Keyed by container id (short form, any case): container and pod labels, no id again.
    let by_id = write(&l, 2, None, &["0123456789AB", "1"]);
    assert_eq!(by_id[0], ("container_name".into(), "web".into()));
    assert!(!by_id.iter().any(|(k, _)| k == "container_id"));
    // A pid that does not exist, a table with nothing to derive: nothing.
    assert_eq!(write(&l, 0, None, &["999999", "1"]), []);
    assert_eq!(write(&l, 3, None, &["eth0", "1"]), []);
}

#[test]
fn chosen_labels_go_to_the_probes_series_without_clashing() {
    let dir = tempfile::tempdir().unwrap();
    proc_tree(dir.path());
    let l = labels(dir.path(), Some(runtime()));
    let custom = BTreeMap::from([
        ("team".into(), "sre".into()),
        ("app".into(), "clash with a field".into()),
        ("comm".into(), "clash with a derived label".into()),
        ("machine_id".into(), "reserved".into()),
        ("2x".into(), "renamed".into()),
    ]);
    let pods = ["app.kubernetes.io/name".into(), "tier".into()];
    let procs = [ProcNameEntry {
        comm: "^ngin".into(),
        cmdline: "daemon".into(),
        label: Some(("role".into(), "frontend".into())),
    }];
    l.set_probe("tcp", ProbeLabels::new(&custom, &pods, &procs));
    let chosen = l.probe("tcp").unwrap();
    write(&l, 1, Some(&chosen), &["100", "x", "a", "1"]);
    assert!(l.cache().wait_meta(ID, Duration::from_secs(5)));
    let got = write(&l, 1, Some(&chosen), &["100", "x", "a", "1"]);
    let tail = &got[got.len() - 5..];
    assert_eq!(
        tail,
        pairs(&[
            ("app_kubernetes_io_name", "shop"),
            ("tier", POD_LABEL_NOT_FOUND),
            ("role", "frontend"),
            ("_2x", "renamed"),
            ("team", "sre"),
        ])
    );
    // A host process: no pod labels, no proc_name label (sshd does not match).
    assert_eq!(
        write(&l, 1, Some(&chosen), &["200", "x", "a", "1"]),
        pairs(&[("_2x", "renamed"), ("team", "sre")])
    );
    l.set_probe("tcp", ProbeLabels::new(&BTreeMap::new(), &[], &[]));
    assert!(l.probe("tcp").is_none(), "no labels chosen any more");
}

#[test]
fn label_names_are_made_valid() {
    assert_eq!(label_name("app").as_deref(), Some("app"));
    assert_eq!(
        label_name("app.kubernetes.io/name").as_deref(),
        Some("app_kubernetes_io_name")
    );
    assert_eq!(label_name("9lives").as_deref(), Some("_9lives"));
    assert_eq!(label_name(""), None);
    assert_eq!(label_name("__name__"), None);
}

#[test]
fn every_output_writes_the_labels_in_its_own_syntax() {
    let dir = tempfile::tempdir().unwrap();
    proc_tree(dir.path());
    let l = labels(dir.path(), None);
    let custom = BTreeMap::from([("team".to_string(), "a \"b\"".to_string())]);
    l.set_probe("demo", ProbeLabels::new(&custom, &[], &[]));
    let reg = registry(META);
    let meta = reg.table(TableId(0));
    let derived = l.for_table(TableId(0), Some("demo")).expect("labels");
    let values: Vec<&[u8]> = vec![b"100", b"7"];

    let mut prom = Vec::new();
    crate::egress::prometheus::write_labels(meta, &values, Some(&derived), b"m", &mut prom);
    let prom = String::from_utf8(prom).unwrap();
    assert!(
        prom.starts_with("tgid=\"100\",comm=\"nginx\",cmdline=\"nginx -g daemon off;\","),
        "{prom}"
    );
    assert!(
        prom.ends_with(
            "pod_id=\"4a2c4f6e-1b3d-4e5f-8a9b-0c1d2e3f4a5b\",team=\"a \\\"b\\\"\",machine_id=\"m\""
        ),
        "{prom}"
    );

    let mut json = Vec::new();
    crate::egress::json::render_record(meta, &values, Some(&derived), "m", 1, &mut json);
    let json: serde_json::Value = serde_json::from_slice(&json).unwrap();
    assert_eq!(json["labels"]["comm"], "nginx");
    assert_eq!(json["labels"]["container_id"], "0123456789ab");
    assert_eq!(json["labels"]["team"], "a \"b\"");
    assert_eq!(json["labels"]["machine_id"], "m");

    let mut kafka = Vec::new();
    crate::egress::kafka_records::render_metric(meta, &values, Some(&derived), "m", 1, &mut kafka);
    let kafka: serde_json::Value = serde_json::from_slice(&kafka).unwrap();
    assert_eq!(kafka["tgid"], "100");
    assert_eq!(kafka["comm"], "nginx");
    assert_eq!(kafka["pod_id"], POD);
    assert_eq!(kafka["team"], "a \"b\"");

    assert!(
        l.for_table(TableId(3), None).is_none(),
        "nothing to add: the fast path"
    );
    assert!(
        l.for_table(TableId(3), Some("demo")).is_some(),
        "custom labels"
    );
}

#[test]
fn a_container_named_first_by_a_container_table_is_found_by_the_next_refresh() {
    let dir = tempfile::tempdir().unwrap();
    proc_tree(dir.path());
    let l = labels(dir.path(), None);
    assert_eq!(
        write(&l, 2, None, &["0123456789ab", "1"]),
        [],
        "not known yet"
    );
    l.cache().refresh();
    assert_eq!(
        write(&l, 2, None, &["0123456789ab", "1"]),
        pairs(&[("pod_id", POD)]),
        "found by reading every process; no runtime: no names"
    );
}

#[test]
fn a_chosen_name_is_used_once() {
    let custom = BTreeMap::from([
        ("app".to_string(), "custom".to_string()),
        ("team".into(), "sre".into()),
    ]);
    let pods = ["app".to_string(), "app".into(), "tier".into()];
    let procs = [
        ProcNameEntry {
            comm: "x".into(),
            cmdline: String::new(),
            label: Some(("tier".into(), "p".into())),
        },
        ProcNameEntry {
            comm: "y".into(),
            cmdline: String::new(),
            label: Some(("team".into(), "p".into())),
        },
    ];
    let l = ProbeLabels::new(&custom, &pods, &procs);
    let pod_names: Vec<&str> = l.pod_labels.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(pod_names, ["app", "tier"]);
    let proc_names: Vec<&str> = l.proc_names.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(proc_names, ["team"], "tier is a pod label's");
    assert!(
        l.custom.is_empty(),
        "app and team are taken: {:?}",
        l.custom
    );
}
