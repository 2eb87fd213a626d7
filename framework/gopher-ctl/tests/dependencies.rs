//! `gopher-ctl` stays light: what `cargo tree` says it is built from (normal dependencies, the
//! ones `cargo build -p gopher-ctl` compiles) holds nothing of the daemon. Read offline from
//! `Cargo.lock`, so the test needs no network.

use std::collections::BTreeSet;
use std::process::Command;

/// What the daemon needs and `gopher-ctl` must not: the daemon library itself, its Kafka
/// client, its HTTP server and TLS stack, its async runtime.
const FORBIDDEN: &[&str] = &[
    "gala-gopher",
    "rdkafka",
    "rdkafka-sys",
    "hyper",
    "rustls",
    "tokio",
];

/// The names of the crates in the normal dependency tree of `package`.
fn normal_dependencies(package: &str) -> BTreeSet<String> {
    let cargo = std::env::var_os("CARGO").expect("cargo runs the tests and sets CARGO");
    let out = Command::new(cargo)
        .args([
            "tree", "--frozen", "-e", "normal", "--prefix", "none", "-p", package,
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("run cargo tree");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "cargo tree -p {package}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Lines are `name vX.Y.Z [(path)] [(*)]`.
    stdout
        .lines()
        .filter_map(|line| line.split_whitespace().next())
        .map(str::to_owned)
        .collect()
}

#[test]
fn gopher_ctl_is_built_without_the_daemon() {
    let crates = normal_dependencies("gopher-ctl");
    // The tree is really read: the package and its command-line parser are in it.
    assert!(
        crates.contains("gopher-ctl") && crates.contains("clap"),
        "{crates:?}"
    );
    let found: Vec<_> = FORBIDDEN
        .iter()
        .filter(|name| crates.contains(**name))
        .collect();
    assert!(
        found.is_empty(),
        "gopher-ctl depends on {found:?}: {crates:?}"
    );
}

#[test]
fn the_daemon_tree_has_what_gopher_ctl_must_not() {
    // The same reading of the daemon's tree (whose first line is the daemon itself) finds every
    // forbidden crate, so the check above can fail.
    let crates = normal_dependencies("gala-gopher");
    for name in FORBIDDEN {
        assert!(crates.contains(*name), "{name} not in {crates:?}");
    }
}
