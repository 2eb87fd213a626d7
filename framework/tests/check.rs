//! `gala-gopher --check` on a custom-probe file: a misspelt key fails the check with a message
//! that names the file and the key; the same file spelt right passes.
#![allow(clippy::unwrap_used)] // test code: a panic is the failure report

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output};

/// A custom probe's meta file: one table.
const META: &str = "version = \"1.0.0\";\nmeasurements: ({ table_name: \"check_demo\"; \
    entity_name: \"check_demo\"; fields: ({ description: \"id\"; type: \"key\"; name: \"id\"; }, \
    { description: \"value\"; type: \"gauge\"; name: \"value\"; }); });\n";

/// Writes a configuration whose paths all lie in `dir` and a custom probe `demo` with `key`
/// (`ipc_encoding`, or a misspelling of it) set to "proto"; returns the configuration's path.
fn sandbox(dir: &Path, key: &str) -> std::path::PathBuf {
    let p = dir.display();
    std::fs::create_dir(dir.join("meta")).unwrap();
    let bin = dir.join("demo.sh");
    std::fs::write(&bin, "#!/bin/sh\n").unwrap();
    std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o750)).unwrap();
    std::fs::write(dir.join("demo.meta"), META).unwrap();
    let custom = dir.join("gala-gopher-custom.json");
    std::fs::write(
        &custom,
        format!(
            "{{\n  \"demo\": {{\n    \"bin\": \"{}\",\n    \"probe\": [],\n    \"custom_param\": \"\",\n    \"{key}\": \"proto\"\n  }}\n}}\n",
            bin.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&custom, std::fs::Permissions::from_mode(0o640)).unwrap();
    let conf = dir.join("gala-gopher.conf");
    std::fs::write(
        &conf,
        format!(
            r#"paths = {{
  meta_dir = "{p}/meta";
  extend_probe_dir = "{p}/probes";
  probes_init = "{p}/probes.init";
  custom_probes = "{p}/gala-gopher-custom.json";
  run_dir = "{p}/run";
  machine_id_file = "{p}/machine_id";
}};
"#
        ),
    )
    .unwrap();
    conf
}

fn check(conf: &Path) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_gala-gopher"));
    // The configuration file alone decides; GOPHER_* variables would override it.
    for (k, _) in std::env::vars() {
        if k.starts_with("GOPHER_") {
            cmd.env_remove(k);
        }
    }
    cmd.arg("-c").arg(conf).arg("--check").output().unwrap()
}

/// A directory whose path passes the unsafe-character rule (`tempdir()` names start with `.`).
fn tempdir() -> tempfile::TempDir {
    tempfile::Builder::new().prefix("gg").tempdir().unwrap()
}

#[test]
fn a_misspelt_custom_probe_key_fails_the_check_naming_file_and_key() {
    let dir = tempdir();
    let conf = sandbox(dir.path(), "ipc_encodng");
    let out = check(&conf);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    let custom = dir.path().join("gala-gopher-custom.json");
    let want = format!(
        "{}:2: probe \"demo\": unknown field `ipc_encodng`, expected one of `bin`, `probe`, \
         `custom_param`, `ipc_encoding`, `ipc`",
        custom.display()
    );
    assert!(stderr.contains(&want), "{stderr}");
}

#[test]
fn the_same_file_spelt_right_passes() {
    let dir = tempdir();
    let conf = sandbox(dir.path(), "ipc_encoding");
    let out = check(&conf);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("1 custom probes"), "{stdout}");
}
