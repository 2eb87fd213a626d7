//! Packaging as an operator meets it: `build.sh --package` makes the two tarballs, `rpmbuild -bb`
//! (Debian's rpm) builds the RPM from them with no network at all, rpmlint finds nothing but the
//! packager tag, `rpm -qlp` lists exactly the expected files, the RPM installs into a throwaway
//! `rpm --root` whose daemon starts with the packaged config and serves `/metrics` and REST,
//! `install.sh` lays out the same tree and keeps edited configs, the systemd unit passes
//! `systemd-analyze verify`, `rpm -U` to a newer build keeps edited configs and `rpm -e` leaves
//! no unit, `libgala_probe.so` links by its SONAME, and the container's environment (the Dockerfile's `ENV` and
//! `k8s/daemonset.yaml`'s `env`) turns into the expected configuration and initial probes.
//!
//! The RPM is built once per run and shared by the tests: a full offline release build in its
//! own build dir, about three minutes on two cores (the time is printed). The upgrade test's
//! newer package is a second `rpmbuild` of the same tarballs in the same tree, which reuses
//! the first one's compiled dependencies (a few workspace crates are rebuilt).

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::Read;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use gala_e2e::{free_port, http_request, poll_until, workspace_bin, Samples};

/// The source tree.
pub(crate) fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ is in the workspace")
        .to_path_buf()
}

/// The tools these tests run, and where each comes from.
const TOOLS: &[(&str, &str)] = &[
    (
        "rpmbuild",
        "the Debian package `rpm` (openEuler: `rpm-build`)",
    ),
    ("rpm", "the package `rpm`"),
    (
        "rpmspec",
        "the Debian package `rpm` (openEuler: `rpm-build`)",
    ),
    ("rpmlint", "the package `rpmlint`"),
    ("systemd-analyze", "the package `systemd`"),
    ("unshare", "the package `util-linux`"),
    ("ldd", "the package `libc-bin` (openEuler: `glibc-common`)"),
    ("make", "the package `make`"),
    ("cc", "the package `gcc`"),
    ("readelf", "the package `binutils`"),
    ("tar", "the package `tar`"),
    (
        "shellcheck",
        "the Debian package `shellcheck` (openEuler: `ShellCheck`)",
    ),
    (
        "rpm2cpio",
        "the Debian package `rpm2cpio` (openEuler: `rpm`)",
    ),
    (
        "aarch64-linux-gnu-gcc",
        "the aarch64 cross toolchain: ./build.sh --check --target aarch64-unknown-linux-gnu",
    ),
    (
        "aarch64-linux-gnu-g++",
        "the aarch64 cross toolchain: ./build.sh --check --target aarch64-unknown-linux-gnu",
    ),
];

/// The path of `tool` on PATH, or an error naming the package that brings it.
pub(crate) fn tool(name: &str) -> Result<PathBuf, String> {
    let package = TOOLS
        .iter()
        .find(|(t, _)| *t == name)
        .map_or("?", |(_, p)| p);
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
        .ok_or_else(|| {
            format!("{name} not found on PATH: install {package} (./dev.sh test installs it)")
        })
}

/// [`tool`], panicking with its message.
pub(crate) fn need(name: &str) -> PathBuf {
    tool(name).unwrap_or_else(|e| panic!("{e}"))
}

/// Runs `cmd` (stdin /dev/null) and returns its output, or an error with both streams unless
/// it exited 0.
pub(crate) fn try_run(cmd: &mut Command, what: &str) -> Result<Output, String> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("{what}: {e}"))?;
    if out.status.success() {
        Ok(out)
    } else {
        Err(format!(
            "{what} failed ({}):\n--- stdout\n{}\n--- stderr\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

/// [`try_run`], panicking on failure.
pub(crate) fn run(cmd: &mut Command, what: &str) -> Output {
    try_run(cmd, what).unwrap_or_else(|e| panic!("{e}"))
}

/// The standard output of `out` as text.
pub(crate) fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The package version (`%global source_version` of the spec), which names the tarballs and
/// is the RPM's Version.
pub(crate) fn version() -> String {
    let spec = fs::read_to_string(repo().join("gala-gopher.spec")).expect("gala-gopher.spec");
    spec.lines()
        .find_map(|l| l.strip_prefix("%global source_version "))
        .map(|v| v.trim().to_owned())
        .expect("%global source_version in gala-gopher.spec")
}

/// An RPM built by [`rpmbuild`].
pub(crate) struct Built {
    /// The package.
    pub(crate) rpm: PathBuf,
    /// The rpmbuild tree (`_topdir`) it was built in, with the tarballs in SOURCES/ and
    /// cargo's build dir in `cargo-target/`.
    pub(crate) top: PathBuf,
}

static BUILT: OnceLock<Result<Built, String>> = OnceLock::new();

/// The RPM, built on first use (the other tests wait for it).
fn built() -> &'static Built {
    match BUILT.get_or_init(build_rpm) {
        Ok(b) => b,
        Err(e) => panic!("{e}"),
    }
}

/// The RPM of this host's architecture.
fn build_rpm() -> Result<Built, String> {
    rpmbuild("packaging-rpmbuild", &[])
}

/// `build.sh --package`, then `rpmbuild -bb EXTRA...` on the two tarballs in a network namespace
/// of its own (`unshare -n`: no network at all, so only an offline build can succeed), in the
/// rpmbuild tree `dir` under the test's temporary directory. `--nodeps`: Debian's rpm
/// database knows none of the BuildRequires, which dpkg installed. Cargo builds in
/// `<tree>/cargo-target` (the spec's `cargo_target_dir`), which [`rpmbuild_again`] reuses.
pub(crate) fn rpmbuild(dir: &str, extra: &[&str]) -> Result<Built, String> {
    for t in ["rpmbuild", "rpm", "unshare", "make", "cc", "tar"] {
        tool(t)?;
    }
    let top = Path::new(env!("CARGO_TARGET_TMPDIR")).join(dir);
    let _ = fs::remove_dir_all(&top);
    let sources = top.join("SOURCES");
    fs::create_dir_all(&sources).map_err(|e| format!("{}: {e}", sources.display()))?;
    let v = version();

    let started = Instant::now();
    let out = try_run(
        Command::new(repo().join("build.sh"))
            .arg("--package")
            .arg(&sources)
            .current_dir(repo()),
        "build.sh --package",
    )?;
    let package_time = started.elapsed();
    let listed: Vec<PathBuf> = stdout(&out).lines().map(PathBuf::from).collect();
    let expected = vec![
        sources.join(format!("gala-gopher-{v}.tar.gz")),
        sources.join(format!("gala-gopher-{v}-vendor.tar.gz")),
    ];
    if listed != expected || !expected.iter().all(|p| p.is_file()) {
        return Err(format!(
            "build.sh --package printed {listed:?}, expected {expected:?}"
        ));
    }
    eprintln!(
        "packaging: build.sh --package took {:.1} s",
        package_time.as_secs_f64()
    );
    rpmbuild_again(&top, &v, extra)
}

/// `rpmbuild -bb EXTRA...` (offline, as [`rpmbuild`]) once more in the tree `top` of an earlier
/// [`rpmbuild`], from its tarballs and its cargo build dir: cargo reuses the compiled
/// dependencies and rebuilds only the workspace crates whose build scripts watch a directory
/// (the unpack makes the directories new). `v` is the Version the package will have.
pub(crate) fn rpmbuild_again(top: &Path, v: &str, extra: &[&str]) -> Result<Built, String> {
    let log = top.join(format!("rpmbuild-{v}.log"));
    let log_file = fs::File::create(&log).map_err(|e| format!("{}: {e}", log.display()))?;
    let started = Instant::now();
    let mut rpmbuild = Command::new("unshare");
    rpmbuild
        .args(["-n", "rpmbuild", "-bb", "--nodeps"])
        .args(extra)
        .arg("--define")
        .arg(format!("_topdir {}", top.display()))
        .arg("--define")
        .arg(format!(
            "cargo_target_dir {}",
            top.join("cargo-target").display()
        ))
        .arg(repo().join("gala-gopher.spec"))
        // Cargo's build dir is the define above; nothing of this build's environment leaks in
        // (nor the profile settings `./dev.sh test` makes for CI's debug build).
        .env_remove("CARGO_TARGET_DIR")
        .env_remove("CARGO_BUILD_TARGET_DIR")
        .env_remove("MAKEFLAGS")
        .env_remove("CARGO_MAKEFLAGS")
        .env_remove("CARGO_INCREMENTAL");
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("CARGO_PROFILE_") {
            rpmbuild.env_remove(name);
        }
    }
    let status = rpmbuild
        .stdin(Stdio::null())
        .stdout(log_file.try_clone().map_err(|e| e.to_string())?)
        .stderr(log_file)
        .status()
        .map_err(|e| format!("unshare -n rpmbuild: {e}"))?;
    let build_time = started.elapsed();
    if !status.success() {
        let text = fs::read_to_string(&log).unwrap_or_default();
        let tail: Vec<&str> = text.lines().rev().take(60).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        return Err(format!(
            "rpmbuild -bb {extra:?} failed ({status}); the end of {}:\n{}",
            log.display(),
            tail.join("\n")
        ));
    }
    let arch_dirs = fs::read_dir(top.join("RPMS")).map_err(|e| format!("RPMS: {e}"))?;
    let rpm = arch_dirs
        .flatten()
        .flat_map(|d| fs::read_dir(d.path()).into_iter().flatten().flatten())
        .map(|e| e.path())
        .find(|p| {
            p.file_name().is_some_and(|n| {
                n.to_string_lossy()
                    .starts_with(&format!("gala-gopher-{v}-"))
            })
        })
        .ok_or_else(|| format!("no gala-gopher-{v}-*.rpm under {}/RPMS", top.display()))?;
    eprintln!(
        "packaging: rpmbuild -bb {extra:?} (offline release build) {:.1} s",
        build_time.as_secs_f64()
    );
    Ok(Built {
        rpm,
        top: top.to_path_buf(),
    })
}

/// `rpm -qp --queryformat FORMAT` of the built RPM.
fn query(format: &str) -> String {
    stdout(&run(
        Command::new(need("rpm"))
            .args(["-qp", "--queryformat", format])
            .arg(&built().rpm),
        "rpm -qp --queryformat",
    ))
}

/// Files rpm adds by itself (build-id links into a debuginfo package), not part of our tree.
pub(crate) fn rpm_generated(path: &str) -> bool {
    path.starts_with("/usr/lib/.build-id")
}

/// `rpm --eval %_libdir`: where the spec installs libgala_probe.a.
fn rpm_libdir() -> String {
    stdout(&run(
        Command::new(need("rpm")).args(["--eval", "%_libdir"]),
        "rpm --eval",
    ))
    .trim()
    .to_owned()
}

/// One line of probes/packaging.list.
pub(crate) struct ListedProbe {
    /// The probe's name.
    pub(crate) name: String,
    /// `script`, `make` or `cargo`.
    pub(crate) kind: String,
    /// Its source directory.
    pub(crate) dir: String,
    /// The file installed in /opt/gala-gopher/extend_probes/.
    pub(crate) program: String,
}

/// The probes of probes/packaging.list.
pub(crate) fn packaging_list() -> Vec<ListedProbe> {
    let text = fs::read_to_string(repo().join("probes/packaging.list")).expect("packaging.list");
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            assert_eq!(f.len(), 4, "probes/packaging.list: {l}");
            ListedProbe {
                name: f[0].into(),
                kind: f[1].into(),
                dir: f[2].into(),
                program: f[3].into(),
            }
        })
        .collect()
}

/// The built-in probes' meta files: every .meta under probes/ outside example/, extends/ and
/// tests.
fn builtin_meta_files() -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in fs::read_dir(dir).expect("read probes/").flatten() {
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().into_owned();
            if path.is_dir() {
                if !matches!(name.as_str(), "tests" | "testdata") {
                    walk(&path, out);
                }
            } else if name.ends_with(".meta") {
                out.push(path);
            }
        }
    }
    let mut out = Vec::new();
    for entry in fs::read_dir(repo().join("probes"))
        .expect("probes/")
        .flatten()
    {
        let name = entry.file_name().to_string_lossy().into_owned();
        if entry.path().is_dir() && name != "example" && name != "extends" {
            walk(&entry.path(), &mut out);
        }
    }
    out
}

/// The built-in probes' meta files share `/opt/gala-gopher/meta/`: two with one name would
/// replace each other (install.sh refuses that too).
#[test]
fn builtin_meta_file_names_are_unique() {
    let mut seen = std::collections::BTreeMap::new();
    for meta in builtin_meta_files() {
        let name = meta.file_name().expect("name").to_owned();
        if let Some(other) = seen.insert(name.clone(), meta.clone()) {
            panic!(
                "{} and {} both install as meta/{}",
                other.display(),
                meta.display(),
                name.to_string_lossy()
            );
        }
    }
}

/// Every path the package (and install.sh) must lay out, directories included.
pub(crate) fn expected_paths(libdir: &str) -> BTreeSet<String> {
    let mut paths: BTreeSet<String> = [
        "/usr/bin/gala-gopher",
        "/usr/bin/gopher-ctl",
        "/usr/bin/gala-probe",
        "/etc/gala-gopher",
        "/etc/gala-gopher/gala-gopher.conf",
        "/etc/gala-gopher/probes.init",
        "/etc/gala-gopher/gala-gopher-custom.json",
        "/opt/gala-gopher",
        "/opt/gala-gopher/meta",
        "/opt/gala-gopher/extend_probes",
        "/opt/gala-gopher/lib",
        "/opt/gala-gopher/lib/python",
        "/opt/gala-gopher/lib/python/gala_probe.py",
        "/var/log/gala-gopher",
        "/usr/lib/systemd/system/gala-gopher.service",
        "/usr/include/gala_probe.h",
        "/usr/share/doc/gala-gopher",
        "/usr/share/doc/gala-gopher/README.md",
        "/usr/share/doc/gala-gopher/docs",
        "/usr/share/doc/gala-gopher/probe-sdk",
        "/usr/share/doc/gala-gopher/probe-sdk/API.md",
    ]
    .into_iter()
    .map(String::from)
    .collect();
    paths.insert(format!("{libdir}/libgala_probe.a"));
    paths.insert(format!("{libdir}/libgala_probe.so.1"));
    paths.insert(format!("{libdir}/libgala_probe.so"));
    paths.insert("/usr/share/licenses/gala-gopher".into());
    paths.insert("/usr/share/licenses/gala-gopher/LICENSE".into());
    for doc in fs::read_dir(repo().join("docs")).expect("docs/").flatten() {
        let name = doc.file_name().to_string_lossy().into_owned();
        if name.ends_with(".md") {
            paths.insert(format!("/usr/share/doc/gala-gopher/docs/{name}"));
        }
    }
    let mut names = BTreeSet::new();
    for p in packaging_list() {
        assert!(names.insert(p.name.clone()), "{} listed twice", p.name);
        assert!(repo().join(&p.dir).is_dir(), "{}: no {}", p.name, p.dir);
        paths.insert(format!("/opt/gala-gopher/extend_probes/{}", p.program));
        if p.kind != "cargo" {
            let stem = p.program.rsplit_once('.').map_or(&*p.program, |(s, _)| s);
            paths.insert(format!("/opt/gala-gopher/extend_probes/{stem}.meta"));
        }
        // The pg_stat program also runs as the built-in opengauss_sli, with its own table.
        if p.name == "pg_stat" {
            paths.insert("/opt/gala-gopher/meta/opengauss_sli.meta".into());
        }
    }
    for meta in builtin_meta_files() {
        let name = meta.file_name().expect("name").to_string_lossy();
        paths.insert(format!("/opt/gala-gopher/meta/{name}"));
    }
    // The product's probes, whatever the list says.
    for must in [
        "system_infos",
        "example_probe.sh",
        "pg_stat_probe.py",
        "proc_fd_probe.sh",
        "sockstat_probe",
    ] {
        assert!(
            paths.contains(&format!("/opt/gala-gopher/extend_probes/{must}")),
            "probes/packaging.list lost {must}"
        );
    }
    assert!(
        paths
            .iter()
            .any(|p| p.starts_with("/opt/gala-gopher/meta/")),
        "no built-in meta file"
    );
    paths
}

/// `path -> mode` (st_mode in octal, type bits included) of the RPM's files.
fn rpm_modes() -> BTreeMap<String, String> {
    query("[%{FILEMODES:octal} %{FILENAMES}\\n]")
        .lines()
        .filter_map(|l| l.split_once(' '))
        .filter(|(_, p)| !rpm_generated(p))
        .map(|(m, p)| (p.to_owned(), m.to_owned()))
        .collect()
}

/// `path -> mode` (as [`rpm_modes`]) of every file and directory under `root`, as absolute
/// paths inside it, but for the directories named in `unowned` (their contents are listed).
fn tree_modes(root: &Path, unowned: &[&str]) -> BTreeMap<String, String> {
    fn walk(root: &Path, dir: &Path, unowned: &[&str], out: &mut BTreeMap<String, String>) {
        for entry in fs::read_dir(dir).expect("read_dir").flatten() {
            let path = entry.path();
            let inside = format!(
                "/{}",
                path.strip_prefix(root).expect("under root").display()
            );
            let meta = fs::symlink_metadata(&path).expect("lstat");
            if !unowned.contains(&inside.as_str()) {
                out.insert(inside, format!("{:o}", meta.mode()));
            }
            if meta.is_dir() {
                walk(root, &path, unowned, out);
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(root, root, unowned, &mut out);
    out
}

/// Directories every layout has but the package does not own (the FHS ones).
const SYSTEM_DIRS: &[&str] = &[
    "/etc",
    "/opt",
    "/usr",
    "/usr/bin",
    "/usr/include",
    "/usr/lib",
    "/usr/lib/systemd",
    "/usr/lib/systemd/system",
    "/usr/lib64",
    "/usr/share",
    "/usr/share/doc",
    "/usr/share/licenses",
    "/var",
    "/var/log",
];

/// A throwaway root with the RPM installed (`rpm --root`, `--nodeps`: the root has none of the
/// package's dependencies, libc and python3 included). The scriptlets run chrooted into it:
/// it gets a `/bin/sh` (the host's shell and the libraries ldd names) but no systemd, as a
/// container or a chroot has none.
fn rpm_root() -> tempfile::TempDir {
    let root = tempfile::Builder::new()
        .prefix("gala-rpm-root-")
        .tempdir()
        .expect("tempdir");
    let r = root.path();
    let shell = fs::canonicalize("/bin/sh").expect("/bin/sh");
    fs::create_dir_all(r.join("bin")).expect("bin");
    fs::create_dir_all(r.join("var/tmp")).expect("var/tmp");
    fs::copy(&shell, r.join("bin/sh")).expect("copy /bin/sh");
    let ldd = stdout(&run(Command::new(need("ldd")).arg(&shell), "ldd /bin/sh"));
    for lib in ldd
        .split_whitespace()
        .filter(|w| w.starts_with('/'))
        .map(Path::new)
    {
        let target = r.join(lib.strip_prefix("/").expect("absolute"));
        fs::create_dir_all(target.parent().expect("parent")).expect("lib dir");
        fs::copy(lib, &target).unwrap_or_else(|e| panic!("copy {}: {e}", lib.display()));
    }
    let rpm = need("rpm");
    run(
        Command::new(&rpm)
            .arg("--root")
            .arg(r)
            .args(["--dbpath", "/var/lib/rpm", "--initdb"]),
        "rpm --initdb",
    );
    let out = run(
        Command::new(&rpm)
            .arg("--root")
            .arg(r)
            .args(["--dbpath", "/var/lib/rpm", "-i", "--nodeps"])
            .arg(&built().rpm),
        "rpm -i --root",
    );
    let err = String::from_utf8_lossy(&out.stderr);
    // rpm exits 0 even when a %post fails; its warning says so.
    assert!(
        !err.contains("scriptlet failed") && !err.contains("error:"),
        "rpm -i --root: {err}"
    );
    root
}

/// The daemon started from a root, with the root's config relocated into it.
struct RootDaemon {
    child: Child,
    metrics_port: u16,
    rest_port: u16,
}

impl RootDaemon {
    /// The command starting `<root>/usr/bin/gala-gopher -c <root>/etc/gala-gopher/gala-gopher.conf`
    /// with gala-probe on PATH and no GOPHER_* of the test's own environment.
    fn command(root: &Path) -> Command {
        let mut cmd = Command::new(root.join("usr/bin/gala-gopher"));
        cmd.arg("-c")
            .arg(root.join("etc/gala-gopher/gala-gopher.conf"))
            .stdin(Stdio::null())
            .stdout(Stdio::null());
        let path = std::env::var("PATH").unwrap_or_default();
        cmd.env("PATH", format!("{}:{path}", root.join("usr/bin").display()));
        for (k, _) in std::env::vars() {
            if k.starts_with("GOPHER_") || k == "JOURNAL_STREAM" {
                cmd.env_remove(k);
            }
        }
        cmd
    }

    /// Spawns `cmd` and waits for `/metrics` on `metrics_port`.
    fn start(mut cmd: Command, metrics_port: u16, rest_port: u16) -> Self {
        let child = cmd.spawn().expect("start gala-gopher");
        let mut daemon = RootDaemon {
            child,
            metrics_port,
            rest_port,
        };
        poll_until(Duration::from_secs(20), 100, || {
            if let Ok(Some(status)) = daemon.child.try_wait() {
                panic!("gala-gopher exited at start: {status}");
            }
            match http_request(daemon.metrics_port, "GET", "/metrics", b"") {
                Ok((200, _)) => Ok(()),
                other => Err(format!("no /metrics on port {metrics_port}: {other:?}")),
            }
        });
        daemon
    }

    fn samples(&self) -> Samples {
        let (status, body) = http_request(self.metrics_port, "GET", "/metrics", b"").expect("GET");
        assert_eq!(status, 200, "GET /metrics");
        Samples::parse(&body)
    }

    fn wait_samples(&self, what: &str, pred: impl Fn(&Samples) -> bool) {
        poll_until(Duration::from_secs(30), 200, || {
            if pred(&self.samples()) {
                Ok(())
            } else {
                Err(format!("no {what} on /metrics"))
            }
        });
    }

    fn probe(&self, name: &str) -> serde_json::Value {
        let (status, body) =
            http_request(self.rest_port, "GET", &format!("/{name}"), b"").expect("REST GET");
        assert_eq!(status, 200, "GET /{name}: {body}");
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("GET /{name}: {e}: {body}"))
    }

    /// Waits until REST GET says the probe's process runs.
    fn wait_running(&self, name: &str) -> serde_json::Value {
        poll_until(Duration::from_secs(30), 100, || {
            let v = self.probe(name);
            if v["state"] == "running" && v["runtime"]["status"] == "running" {
                Ok(v)
            } else {
                Err(format!("probe {name} not running: {v}"))
            }
        })
    }

    fn terminate(mut self) -> ExitStatus {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        self.child.wait().expect("wait")
    }
}

impl Drop for RootDaemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Rewrites the root's config to point into the root, as `./dev.sh stage` does.
fn relocate(root: &Path) {
    run(
        Command::new(repo().join("dev.sh"))
            .arg("relocate")
            .arg(root)
            .current_dir(repo()),
        "dev.sh relocate",
    );
}

#[test]
fn the_rpm_builds_offline_and_holds_exactly_the_expected_files() {
    let rpm = need("rpm");
    let libdir = rpm_libdir();
    let listed: BTreeSet<String> = stdout(&run(
        Command::new(&rpm).arg("-qlp").arg(&built().rpm),
        "rpm -qlp",
    ))
    .lines()
    .filter(|p| !rpm_generated(p))
    .map(String::from)
    .collect();
    let expected = expected_paths(&libdir);
    let missing: Vec<_> = expected.difference(&listed).collect();
    let extra: Vec<_> = listed.difference(&expected).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "rpm -qlp: missing {missing:?}, unexpected {extra:?}"
    );

    // %config(noreplace) for the three config files, %doc for the docs.
    let flags: BTreeMap<String, String> = query("[%{FILENAMES} %{FILEFLAGS:fflags}\\n]")
        .lines()
        .filter_map(|l| l.split_once(' '))
        .map(|(p, f)| (p.to_owned(), f.to_owned()))
        .collect();
    for config in ["gala-gopher.conf", "probes.init", "gala-gopher-custom.json"] {
        let f = &flags[&format!("/etc/gala-gopher/{config}")];
        assert!(f.contains('c') && f.contains('n'), "{config}: flags {f:?}");
    }
    assert!(flags["/usr/share/doc/gala-gopher/README.md"].contains('d'));
    assert!(flags["/usr/share/licenses/gala-gopher/LICENSE"].contains('l'));

    // The C package's modes: configs 0640, programs 0550; the shared library under its SONAME
    // with the development symlink.
    let modes = rpm_modes();
    for config in ["gala-gopher.conf", "probes.init", "gala-gopher-custom.json"] {
        assert_eq!(
            modes[&format!("/etc/gala-gopher/{config}")],
            "100640",
            "{config}"
        );
    }
    let programs = ["gala-gopher", "gopher-ctl", "gala-probe"]
        .iter()
        .map(|b| format!("/usr/bin/{b}"))
        .chain(
            packaging_list()
                .into_iter()
                .map(|p| format!("/opt/gala-gopher/extend_probes/{}", p.program)),
        );
    for program in programs {
        assert_eq!(modes[&program], "100550", "{program}");
    }
    assert_eq!(modes[&format!("{libdir}/libgala_probe.so.1")], "100755");
    let links: BTreeMap<String, String> = query("[%{FILENAMES} %{FILELINKTOS}\\n]")
        .lines()
        .filter_map(|l| l.split_once(' '))
        .map(|(p, t)| (p.to_owned(), t.to_owned()))
        .collect();
    assert_eq!(
        links[&format!("{libdir}/libgala_probe.so")],
        "libgala_probe.so.1"
    );
    let provides = query("[%{PROVIDENAME}\\n]");
    assert!(
        provides
            .lines()
            .any(|l| l.starts_with("libgala_probe.so.1")),
        "provides: {provides}"
    );
    // The LICENSE is the Mulan PSL v2, both languages.
    let license = fs::read_to_string(repo().join("LICENSE")).expect("LICENSE");
    assert!(
        license.contains("木兰宽松许可证， 第2版")
            && license.contains("Mulan Permissive Software License，Version 2 (Mulan PSL v2)")
            && license.contains("END OF THE TERMS AND CONDITIONS"),
        "LICENSE is not the Mulan PSL v2 text"
    );
    assert_eq!(query("%{LICENSE}"), "MulanPSL-2.0");

    // psycopg2 (pg_stat) is a weak dependency only.
    let requires = query("[%{REQUIRENAME}\\n]");
    let recommends = query("[%{RECOMMENDNAME}\\n]");
    assert!(!requires.contains("psycopg2"), "requires: {requires}");
    assert!(
        recommends.lines().any(|l| l == "python3-psycopg2"),
        "recommends: {recommends}"
    );
    assert_eq!(query("%{VERSION}"), version());
}

#[test]
fn rpmlint_reports_no_error_but_the_packager_tag() {
    let out = Command::new(need("rpmlint"))
        .arg("-r")
        .arg(repo().join("gala-gopher.rpmlintrc"))
        .arg(repo().join("gala-gopher.spec"))
        .arg(&built().rpm)
        .stdin(Stdio::null())
        .output()
        .expect("rpmlint");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let allowed = ["no-packager-tag", "no-signature"];
    let errors: Vec<&str> = text
        .lines()
        .filter(|l| l.contains(": E: "))
        .filter(|l| !allowed.iter().any(|a| l.contains(&format!(": E: {a}"))))
        .collect();
    assert!(errors.is_empty(), "rpmlint errors:\n{text}");
    assert!(
        text.contains("packages and 1 specfiles checked"),
        "rpmlint did not check: {text}"
    );
}

#[test]
fn the_spec_switches_probes_off_like_the_originals_without_defines() {
    let spec = repo().join("gala-gopher.spec");
    let parsed = |args: &[&str]| {
        stdout(&run(
            Command::new(need("rpmspec"))
                .arg("-P")
                .args(args)
                .arg(&spec),
            "rpmspec -P",
        ))
    };
    let all = parsed(&[]);
    assert!(all.contains("--without \"\""), "{all}");
    let fewer = parsed(&["--without", "sockstat", "--without", "pg_stat"]);
    assert!(
        fewer.contains("--without \"pg_stat,sockstat,\""),
        "rpmbuild --without sockstat --without pg_stat: {fewer}"
    );
    assert!(
        !fewer.contains("python3-psycopg2") && all.contains("Recommends:     python3-psycopg2"),
        "without pg_stat, no python dependencies"
    );
    // The daemon restores probes.init itself: no init_probes.sh in any scriptlet.
    assert!(!all.contains("init_probes"), "{all}");
}

#[test]
fn the_rpm_installs_into_a_throwaway_root_whose_daemon_serves_metrics_and_rest() {
    let root = rpm_root();
    let r = root.path();
    relocate(r);
    let (metrics_port, rest_port) = (free_port(), free_port());
    let mut cmd = RootDaemon::command(r);
    // The packaged config as it is, but for the ports (free ones, through the image's
    // override variables) and the paths relocated into the root.
    cmd.env("GOPHER_METRIC_PORT", metrics_port.to_string())
        .env("GOPHER_REST_PORT", rest_port.to_string())
        .stderr(Stdio::null());
    let daemon = RootDaemon::start(cmd, metrics_port, rest_port);
    // The packaged probes.init starts baseinfo (its first round reports at once, the shipped
    // 30 s period only spaces the later ones) and no demo probe.
    daemon.wait_samples("baseinfo data", |s| {
        s.0.iter().any(|s| s.name.starts_with("gala_gopher_mem_"))
    });
    let baseinfo = daemon.wait_running("baseinfo");
    assert!(baseinfo["runtime"]["pid"].as_u64().is_some(), "{baseinfo}");
    assert_eq!(daemon.probe("example"), serde_json::json!({}));
    assert!(
        daemon
            .samples()
            .0
            .iter()
            .all(|s| !s.name.starts_with("gala_gopher_example_")),
        "example probe data from the packaged config"
    );
    assert_eq!(daemon.probe("tcp"), serde_json::json!({}));
    assert!(daemon.terminate().success(), "clean stop");
    let log = fs::read_to_string(r.join("var/log/gala-gopher/debug/gopher.log")).expect("log");
    assert!(log.contains("[INFO] starting"), "{log}");
    let init = r.join("etc/gala-gopher/probes.init");
    let saved = fs::read(&init).expect("probes.init");
    let changed = saved != fs::read(repo().join("config/probes.init")).expect("shipped");

    // The installed C SDK (header and archive) builds a probe.
    let build = tempfile::tempdir().expect("tempdir");
    let libdir = rpm_libdir();
    run(
        Command::new(need("make"))
            .arg("-s")
            .arg("-C")
            .arg(repo().join("probes/extends/sockstat"))
            .arg(format!("SDK_INC={}", r.join("usr/include").display()))
            .arg(format!(
                "SDK_LIB={}",
                r.join(libdir.trim_start_matches('/')).display()
            ))
            .arg(format!("BUILD_DIR={}", build.path().display())),
        "make sockstat against the installed SDK",
    );
    assert!(build.path().join("sockstat_probe").is_file());

    // Erasing runs %preun/%postun without systemd too; the edited probes.init is kept.
    let out = run(
        Command::new(need("rpm")).arg("--root").arg(r).args([
            "--dbpath",
            "/var/lib/rpm",
            "-e",
            "gala-gopher",
        ]),
        "rpm -e --root",
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("scriptlet failed"), "rpm -e: {err}");
    assert!(!r.join("usr/bin/gala-gopher").exists());
    if changed {
        // The daemon rewrote it at stop: a changed config file is kept.
        assert_eq!(
            fs::read(r.join("etc/gala-gopher/probes.init.rpmsave")).expect(".rpmsave"),
            saved
        );
    }
}

/// The newer package of the upgrade test: the same tarballs and spec, built again in the
/// tree of [`built`] as Version [`NEWER`] (`rpmbuild --define 'version_override ...'`), which
/// reuses that build's cargo output.
static NEWER_BUILT: OnceLock<Result<Built, String>> = OnceLock::new();

/// The Version of the upgrade test's newer package.
const NEWER: &str = "2.1.1";

fn newer() -> &'static Built {
    let older = built();
    match NEWER_BUILT.get_or_init(|| {
        rpmbuild_again(
            &older.top,
            NEWER,
            &["--define", &format!("version_override {NEWER}")],
        )
    }) {
        Ok(b) => b,
        Err(e) => panic!("{e}"),
    }
}

/// `rpm --root ROOT --dbpath /var/lib/rpm ARGS...`: its output, after checking that no
/// scriptlet failed and rpm printed no error (it exits 0 after a failed scriptlet).
fn rpm_in(root: &Path, args: &[&str], what: &str) -> Output {
    let out = run(
        Command::new(need("rpm"))
            .arg("--root")
            .arg(root)
            .args(["--dbpath", "/var/lib/rpm"])
            .args(args),
        what,
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !err.contains("scriptlet failed") && !err.contains("error:"),
        "{what}: {err}"
    );
    out
}

/// `systemd-analyze verify gala-gopher.service` in a scratch root holding the system's units
/// (the targets the unit's dependencies name) plus whatever unit files and daemon binary
/// `root` holds.
fn verify_unit_in(root: &Path) -> Output {
    let scratch = tempfile::tempdir().expect("tempdir");
    let v = scratch.path();
    fs::create_dir_all(v.join("usr/lib/systemd")).expect("dirs");
    fs::create_dir_all(v.join("usr/bin")).expect("dirs");
    run(
        Command::new("cp")
            .arg("-a")
            .arg("/usr/lib/systemd/system")
            .arg(v.join("usr/lib/systemd/")),
        "copy the system's units",
    );
    // Nothing of gala-gopher from the host: only what `root` brings.
    for entry in fs::read_dir(v.join("usr/lib/systemd/system"))
        .expect("units")
        .flatten()
    {
        if entry.file_name().to_string_lossy().contains("gala-gopher") {
            fs::remove_file(entry.path()).expect("rm");
        }
    }
    for dir in ["usr/lib/systemd/system", "etc/systemd/system"] {
        let Ok(entries) = fs::read_dir(root.join(dir)) else {
            continue;
        };
        fs::create_dir_all(v.join(dir)).expect("unit dir");
        for entry in entries.flatten() {
            run(
                Command::new("cp")
                    .arg("-a")
                    .arg(entry.path())
                    .arg(v.join(dir)),
                "copy a unit",
            );
        }
    }
    let daemon = root.join("usr/bin/gala-gopher");
    if daemon.exists() {
        fs::copy(&daemon, v.join("usr/bin/gala-gopher")).expect("binary");
    }
    Command::new(need("systemd-analyze"))
        .arg("verify")
        .arg(format!("--root={}", v.display()))
        .arg("gala-gopher.service")
        .stdin(Stdio::null())
        .output()
        .expect("systemd-analyze")
}

/// Every path under `root` whose name mentions gala (`gala-gopher`, `gala_probe`, ...).
fn gala_paths(root: &Path) -> BTreeSet<String> {
    tree_modes(root, &[])
        .into_keys()
        .filter(|p| p.contains("gala"))
        .collect()
}

#[test]
fn rpm_upgrade_keeps_edited_configs_replaces_the_programs_and_erase_leaves_no_unit() {
    // Version 2.1.0 (the spec's) installed, with the scriptlets run: rpm runs them chrooted
    // into the root, which has a shell but no systemd, so they skip systemctl as in a chroot.
    let root = rpm_root();
    let r = root.path();
    let q = |what: &str| {
        stdout(&rpm_in(
            r,
            &[
                "-q",
                "--queryformat",
                "%{VERSION}-%{RELEASE}\n",
                "gala-gopher",
            ],
            what,
        ))
    };
    assert_eq!(q("rpm -q"), format!("{}-1\n", version()));

    // The operator edits the three config files.
    let etc = r.join("etc/gala-gopher");
    let mut edited = BTreeMap::new();
    for (name, text) in [
        ("gala-gopher.conf", "# edited by the operator\n"),
        ("probes.init", "proc_fd {\"state\": \"running\"}\n"),
        ("gala-gopher-custom.json", "\n"),
    ] {
        let path = etc.join(name);
        let mut content = fs::read(&path).expect(name);
        content.extend_from_slice(text.as_bytes());
        fs::write(&path, &content).expect(name);
        edited.insert(name, content);
    }
    let inode = |p: &str| fs::metadata(r.join(p)).expect(p).ino();
    let programs = [
        "usr/bin/gala-gopher",
        "usr/bin/gopher-ctl",
        "usr/bin/gala-probe",
    ];
    let before: Vec<u64> = programs.iter().map(|p| inode(p)).collect();

    // The newer package, from the same spec and tarballs.
    let newer = newer();
    assert!(
        newer
            .rpm
            .to_string_lossy()
            .contains(&format!("gala-gopher-{NEWER}-1.")),
        "{}",
        newer.rpm.display()
    );
    let mut upgrade = vec!["-U", "--nodeps"];
    let rpm_path = newer.rpm.to_string_lossy().into_owned();
    upgrade.push(&rpm_path);
    rpm_in(r, &upgrade, "rpm -U --root");
    assert_eq!(
        q("rpm -q after -U"),
        format!("{NEWER}-1\n"),
        "one package, the newer"
    );

    // The edited configs are kept as they were (the shipped ones did not change between the
    // two versions, so rpm writes no .rpmnew either); mode and owner stay.
    for (name, content) in &edited {
        let path = etc.join(name);
        assert_eq!(
            &fs::read(&path).expect(name),
            content,
            "{name} lost its edit"
        );
        assert_eq!(
            fs::metadata(&path).expect(name).mode() & 0o7777,
            0o640,
            "{name}"
        );
    }
    // The programs are the newer package's files: new inodes, and `rpm -V` finds every file of
    // the package as the newer one shipped it but the edited configs.
    for (p, old) in programs.iter().zip(&before) {
        assert_ne!(inode(p), *old, "{p} was not replaced");
        assert_eq!(
            fs::metadata(r.join(p)).expect(p).mode() & 0o7777,
            0o550,
            "{p}"
        );
    }
    let verify = Command::new(need("rpm"))
        .arg("--root")
        .arg(r)
        .args(["--dbpath", "/var/lib/rpm", "-V", "--nodeps", "gala-gopher"])
        .stdin(Stdio::null())
        .output()
        .expect("rpm -V");
    let report = stdout(&verify);
    let unexpected: Vec<&str> = report
        .lines()
        .filter(|l| {
            !edited
                .keys()
                .any(|n| l.ends_with(&format!("/etc/gala-gopher/{n}")))
        })
        .collect();
    assert!(unexpected.is_empty(), "rpm -V after the upgrade:\n{report}");
    assert!(
        edited
            .keys()
            .all(|n| report.contains(&format!(" c /etc/gala-gopher/{n}"))),
        "rpm -V sees no edited config:\n{report}"
    );

    // The upgraded unit verifies; after the erase no unit of gala-gopher is left to start.
    let out = verify_unit_in(r);
    assert!(
        out.status.success() && out.stderr.is_empty(),
        "systemd-analyze verify before rpm -e:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    rpm_in(r, &["-e", "gala-gopher"], "rpm -e --root");
    let out = verify_unit_in(r);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("gala-gopher.service"),
        "systemd-analyze verify after rpm -e ({}): {err}",
        out.status
    );
    // What is left: the edited configs as .rpmsave in their directory, nothing else.
    let left = gala_paths(r);
    let expected: BTreeSet<String> = std::iter::once("/etc/gala-gopher".to_owned())
        .chain(
            edited
                .keys()
                .map(|n| format!("/etc/gala-gopher/{n}.rpmsave")),
        )
        .collect();
    assert_eq!(left, expected, "left behind by rpm -e");
}

/// `libgala_probe.so` carries the SONAME `libgala_probe.so.1`; install.sh lays it out as the
/// RPM does (`libgala_probe.so.1` and the `libgala_probe.so` symlink), and a C program linked
/// with `-lgala_probe` against that tree needs `libgala_probe.so.1` and runs with it.
#[test]
fn the_c_sdk_shared_library_has_a_soname_and_links_by_it() {
    let bin_dir = workspace_bin("gala-gopher")
        .parent()
        .expect("bin dir")
        .to_path_buf();
    let dynamic = |path: &Path| {
        stdout(&run(
            Command::new(need("readelf")).arg("-d").arg(path),
            "readelf -d",
        ))
    };
    let built = bin_dir.join("libgala_probe.so");
    assert!(
        dynamic(&built).contains("Library soname: [libgala_probe.so.1]"),
        "{}: {}",
        built.display(),
        dynamic(&built)
    );

    let dest = tempfile::tempdir().expect("tempdir");
    let d = dest.path();
    run(
        Command::new(repo().join("install.sh"))
            .arg("--bin-dir")
            .arg(&bin_dir)
            .args(["--libdir", "/usr/lib64"])
            .arg(d)
            .current_dir(repo()),
        "install.sh",
    );
    let lib = d.join("usr/lib64");
    assert_eq!(
        fs::read_link(lib.join("libgala_probe.so")).expect("symlink"),
        Path::new("libgala_probe.so.1")
    );
    assert!(fs::symlink_metadata(lib.join("libgala_probe.so.1"))
        .expect("so.1")
        .is_file());

    // Without the library the program does not link; the archive moved away, so only the
    // shared library can satisfy -lgala_probe.
    fs::remove_file(lib.join("libgala_probe.a")).expect("rm archive");
    let work = tempfile::tempdir().expect("tempdir");
    let source = work.path().join("soname.c");
    fs::write(
        &source,
        "#include <stdio.h>\n#include <gala_probe.h>\n\
         int main(void) {\n\
             gala_probe *p = gala_probe_connect(\"/nonexistent/soname.meta\");\n\
             if (p != NULL) { gala_probe_close(p); return 1; }\n\
             const char *e = gala_probe_last_error();\n\
             printf(\"error: %s\\n\", e ? e : \"(none)\");\n\
             return 0;\n\
         }\n",
    )
    .expect("write soname.c");
    let program = work.path().join("soname");
    run(
        Command::new(need("cc"))
            .arg("-I")
            .arg(d.join("usr/include"))
            .arg("-o")
            .arg(&program)
            .arg(&source)
            .arg("-L")
            .arg(&lib)
            .arg("-lgala_probe"),
        "cc -lgala_probe against the installed shared library",
    );
    let needed = dynamic(&program);
    assert!(
        needed.contains("Shared library: [libgala_probe.so.1]"),
        "{needed}"
    );
    let out = run(
        Command::new(&program).env("LD_LIBRARY_PATH", &lib),
        "the program linked with libgala_probe.so.1",
    );
    let text = stdout(&out);
    assert!(
        text.starts_with("error: ") && text.trim() != "error: (none)",
        "{text}"
    );
    // And the loader really resolves it by the SONAME: without libgala_probe.so.1 it fails.
    fs::rename(lib.join("libgala_probe.so.1"), lib.join("moved.so")).expect("mv");
    let out = Command::new(&program)
        .env("LD_LIBRARY_PATH", &lib)
        .stdin(Stdio::null())
        .output()
        .expect("run");
    assert!(
        !out.status.success()
            && String::from_utf8_lossy(&out.stderr).contains("libgala_probe.so.1"),
        "{out:?}"
    );
}

#[test]
fn install_sh_lays_out_the_rpm_tree_and_keeps_edited_configs() {
    let bin_dir = workspace_bin("gala-gopher")
        .parent()
        .expect("bin dir")
        .to_path_buf();
    let dest = tempfile::Builder::new()
        .prefix("gala-destdir-")
        .tempdir()
        .expect("tempdir");
    let d = dest.path();
    let install = |dest: &Path, extra: &[&str]| {
        run(
            Command::new(repo().join("install.sh"))
                .arg("--bin-dir")
                .arg(&bin_dir)
                .arg("--libdir")
                .arg(rpm_libdir())
                .args(extra)
                .arg(dest)
                .current_dir(repo()),
            "install.sh",
        )
    };
    install(d, &[]);

    // The same paths with the same modes as the RPM.
    let rpm = rpm_modes();
    let tree = tree_modes(d, SYSTEM_DIRS);
    let differ: Vec<String> = rpm
        .keys()
        .chain(tree.keys())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .filter(|p| rpm.get(*p) != tree.get(*p))
        .map(|p| format!("{p}: rpm {:?}, install.sh {:?}", rpm.get(p), tree.get(p)))
        .collect();
    assert!(differ.is_empty(), "trees differ:\n{}", differ.join("\n"));

    // The same contents, but for the binaries (built twice, in two profiles).
    let root = rpm_root();
    for (path, mode) in &tree {
        let ours = d.join(&path[1..]);
        if !mode.starts_with("100") {
            continue;
        }
        let mut head = [0u8; 8];
        let n = fs::File::open(&ours)
            .and_then(|mut f| f.read(&mut head))
            .unwrap_or(0);
        if head[..n].starts_with(b"\x7fELF") || head[..n].starts_with(b"!<arch>") {
            continue;
        }
        let packaged = fs::read(root.path().join(&path[1..])).expect("packaged file");
        assert!(
            fs::read(&ours).expect("installed file") == packaged,
            "{path} differs between install.sh and the RPM"
        );
    }

    // A second run keeps what was edited (and what the daemon rewrote), with the shipped
    // version beside it, and leaves the rest as it was.
    let conf = d.join("etc/gala-gopher/gala-gopher.conf");
    let init = d.join("etc/gala-gopher/probes.init");
    let edited_conf = format!(
        "{}\n# edited by the operator\n",
        fs::read_to_string(&conf).expect("conf")
    );
    fs::write(&conf, &edited_conf).expect("edit conf");
    fs::write(&init, "example {\"state\": \"stopped\"}\n").expect("edit probes.init");
    for _ in 0..2 {
        install(d, &[]);
        assert_eq!(fs::read_to_string(&conf).expect("conf"), edited_conf);
        assert_eq!(
            fs::read_to_string(&init).expect("init"),
            "example {\"state\": \"stopped\"}\n"
        );
        for (new, shipped) in [
            ("gala-gopher.conf.new", "config/gala-gopher.conf"),
            ("probes.init.new", "config/probes.init"),
        ] {
            assert_eq!(
                fs::read(d.join("etc/gala-gopher").join(new)).expect(new),
                fs::read(repo().join(shipped)).expect(shipped)
            );
        }
        assert!(!d
            .join("etc/gala-gopher/gala-gopher-custom.json.new")
            .exists());
    }

    // --without leaves probes out, program, meta files and all.
    let lean = tempfile::tempdir().expect("tempdir");
    install(lean.path(), &["--without", "sockstat,baseinfo"]);
    let probes = lean.path().join("opt/gala-gopher/extend_probes");
    assert!(
        !probes.join("sockstat_probe").exists() && !probes.join("sockstat_probe.meta").exists()
    );
    assert!(!probes.join("system_infos").exists());
    assert!(probes.join("example_probe.sh").exists());
    for meta in builtin_meta_files() {
        if meta.starts_with(repo().join("probes/baseinfo")) {
            let name = meta.file_name().expect("name");
            let installed = lean.path().join("opt/gala-gopher/meta").join(name);
            assert!(!installed.exists(), "{} installed", installed.display());
        }
    }
}

#[test]
fn the_unit_passes_systemd_analyze_verify() {
    let root = rpm_root();
    let unit_rel = "usr/lib/systemd/system/gala-gopher.service";
    let unit = fs::read_to_string(root.path().join(unit_rel)).expect("unit");
    for line in [
        "Type=exec",
        "ExecStart=/usr/bin/gala-gopher -c /etc/gala-gopher/gala-gopher.conf",
        "Restart=on-abnormal",
        "KillMode=mixed",
        "Delegate=yes",
        "WantedBy=multi-user.target",
    ] {
        assert!(unit.lines().any(|l| l == line), "unit lacks {line}");
    }
    let around = ["ExecStartPre", "ExecStartPost", "ExecStop", "ExecReload"];
    assert!(
        !unit
            .lines()
            .any(|l| around.iter().any(|key| l.starts_with(key))),
        "the daemon saves and restores probes.init itself: no scripts around it"
    );

    let out = verify_unit_in(root.path());
    // verify exits 0 on mere warnings ("Unknown key ..., ignoring"): none may appear.
    assert!(
        out.status.success() && out.stdout.is_empty() && out.stderr.is_empty(),
        "systemd-analyze verify ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // And it does look: without the binary it fails.
    fs::remove_file(root.path().join("usr/bin/gala-gopher")).expect("rm");
    assert!(
        !verify_unit_in(root.path()).status.success(),
        "verify saw no missing ExecStart"
    );
}

/// `KEY=value` pairs of the Dockerfile's `ENV` lines.
fn dockerfile_env() -> Vec<(String, String)> {
    let text = fs::read_to_string(repo().join("Dockerfile")).expect("Dockerfile");
    text.lines()
        .filter_map(|l| l.strip_prefix("ENV "))
        .flat_map(|l| l.split_whitespace())
        .map(|kv| {
            let (k, v) = kv.split_once('=').expect("ENV KEY=value");
            (k.to_owned(), v.to_owned())
        })
        .collect()
}

/// The `env:` list of k8s/daemonset.yaml: `- name: X` followed by `value: "..."` (a JSON-like
/// double-quoted string) or `value: |` (a literal block). Every name must have a value.
fn daemonset_env() -> Vec<(String, String)> {
    let text = fs::read_to_string(repo().join("k8s/daemonset.yaml")).expect("daemonset.yaml");
    let lines: Vec<&str> = text.lines().collect();
    let indent = |l: &str| l.len() - l.trim_start().len();
    let mut env = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let Some(name) = lines[i].trim_start().strip_prefix("- name: GOPHER_") else {
            i += 1;
            continue;
        };
        let name = format!("GOPHER_{}", name.trim());
        let value_line = lines.get(i + 1).map_or("", |l| l.trim_start());
        let value = value_line
            .strip_prefix("value: ")
            .unwrap_or_else(|| panic!("{name}: no value line"));
        i += 2;
        let value = if value == "|" {
            let block: Vec<&str> = lines[i..]
                .iter()
                .take_while(|l| l.trim().is_empty() || indent(l) > indent(lines[i - 1]))
                .copied()
                .collect();
            i += block.len();
            let strip = block.iter().map(|l| indent(l)).min().unwrap_or(0);
            let mut text: String = block
                .iter()
                .map(|l| format!("{}\n", l.get(strip..).unwrap_or("")))
                .collect();
            while text.ends_with("\n\n") {
                text.pop();
            }
            text
        } else {
            serde_json::from_str::<String>(value)
                .unwrap_or_else(|e| panic!("{name}: value {value}: {e}"))
        };
        env.push((name, value));
    }
    env
}

/// The first non-loopback IPv4 address of this machine, if any.
fn outside_address() -> Option<Ipv4Addr> {
    nix::ifaddrs::getifaddrs()
        .ok()?
        .filter_map(|a| a.address?.as_sockaddr_in().map(|s| s.ip()))
        .find(|ip| !ip.is_loopback())
}

fn reachable(ip: Ipv4Addr, port: u16) -> bool {
    TcpStream::connect_timeout(
        &SocketAddr::new(IpAddr::V4(ip), port),
        Duration::from_secs(2),
    )
    .is_ok()
}

/// The probe names of a probes.init text.
fn init_probes(text: &str) -> Vec<String> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|l| l.split_whitespace().next())
        .map(String::from)
        .collect()
}

#[test]
fn the_container_environment_becomes_the_config_and_the_initial_probes() {
    let image = dockerfile_env();
    let daemonset = daemonset_env();
    let mut env: BTreeMap<String, String> = image.into_iter().chain(daemonset).collect();
    let names: BTreeSet<&str> = env.keys().map(String::as_str).collect();
    for var in [
        "GOPHER_HOST_PATH",
        "GOPHER_LOG_LEVEL",
        "GOPHER_EVENT_CHANNEL",
        "GOPHER_META_CHANNEL",
        "GOPHER_KAKFA_SERVER",
        "GOPHER_METRIC_ADDR",
        "GOPHER_METRIC_PORT",
        "GOPHER_REST_ADDR",
        "GOPHER_REST_PORT",
        "GOPHER_REST_AUTH",
        "GOPHER_METRIC_LOGS_TOTAL_SIZE",
        "GOPHER_PROBES_INIT",
    ] {
        assert!(names.contains(var), "the DaemonSet does not set {var}");
    }
    assert_eq!(env["GOPHER_METRIC_ADDR"], "0.0.0.0");
    assert_eq!(env["GOPHER_REST_ADDR"], "127.0.0.1");
    let wanted = init_probes(&env["GOPHER_PROBES_INIT"]);
    assert!(!wanted.is_empty(), "GOPHER_PROBES_INIT starts no probe");

    let root = rpm_root();
    let r = root.path();
    relocate(r);
    let packaged_init = fs::read_to_string(r.join("etc/gala-gopher/probes.init")).expect("init");
    // This machine is the host the DaemonSet mounts at /host; the ports are free ones.
    let (metrics_port, rest_port) = (free_port(), free_port());
    env.insert("GOPHER_HOST_PATH".into(), "/".into());
    env.insert("GOPHER_METRIC_PORT".into(), metrics_port.to_string());
    env.insert("GOPHER_REST_PORT".into(), rest_port.to_string());

    let check = |extra: &[(&str, &str)]| {
        let mut cmd = RootDaemon::command(r);
        cmd.envs(&env).envs(extra.iter().copied()).arg("--check");
        cmd.stderr(Stdio::piped()).output().expect("--check")
    };
    let ok = check(&[]);
    assert!(ok.status.success(), "--check: {ok:?}");
    // A bad value stops the start, naming the variable and the key it sets.
    for (var, value, key) in [
        ("GOPHER_METRIC_PORT", "80", "web_server.port"),
        ("GOPHER_REST_PORT", "http", "rest_api_server.port"),
        ("GOPHER_LOG_LEVEL", "verbose", "global.log_level"),
        (
            "GOPHER_METRIC_LOGS_TOTAL_SIZE",
            "0",
            "logs.metric_total_size",
        ),
        ("GOPHER_REST_AUTH", "yes", "rest_api_server.private_key"),
        ("GOPHER_EVENT_CHANNEL", "kafka", "kafka.kafka_broker"),
    ] {
        let out = check(&[(var, value)]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success() && err.contains(var) && err.contains(key),
            "{var}={value}: {} {err}",
            out.status
        );
    }

    // The DaemonSet's environment as it is.
    let mut cmd = RootDaemon::command(r);
    cmd.envs(&env).stderr(Stdio::null());
    let daemon = RootDaemon::start(cmd, metrics_port, rest_port);
    for probe in &wanted {
        daemon.wait_running(probe);
    }
    if wanted.iter().any(|p| p == "baseinfo") {
        daemon.wait_samples("baseinfo mem data", |s| {
            s.0.iter().any(|s| s.name.starts_with("gala_gopher_mem_"))
        });
    }
    // GOPHER_PROBES_INIT replaces the file's probes (the packaged one starts example) without
    // rewriting the file.
    if !wanted.iter().any(|p| p == "example") {
        assert_eq!(daemon.probe("example"), serde_json::json!({}));
    }
    assert_eq!(
        fs::read_to_string(r.join("etc/gala-gopher/probes.init")).expect("init"),
        packaged_init
    );
    // Metrics on every address, REST on loopback only.
    match outside_address() {
        Some(ip) => {
            assert!(reachable(ip, metrics_port), "metrics not on {ip}");
            assert!(!reachable(ip, rest_port), "REST reachable on {ip}");
        }
        None => gala_e2e::require::unavailable(
            "no non-loopback IPv4 address: the bind addresses are not checked",
        ),
    }
    let log_path = r.join("var/log/gala-gopher/debug/gopher.log");
    assert!(fs::read_to_string(&log_path)
        .expect("log")
        .contains("[INFO] starting"));
    assert!(daemon.terminate().success());
    fs::remove_file(&log_path).expect("rm log");

    // The other variables of the original's image, under systemd's journal (JOURNAL_STREAM
    // names the daemon's stderr, as systemd sets it).
    let stderr_path = r.join("stderr");
    let stderr_file = fs::File::create(&stderr_path).expect("stderr file");
    let st = stderr_file.metadata().expect("stat");
    let (metrics_port, rest_port) = (free_port(), free_port());
    let mut cmd = RootDaemon::command(r);
    cmd.envs([
        ("GOPHER_METRIC_PORT", metrics_port.to_string()),
        ("GOPHER_REST_PORT", rest_port.to_string()),
        ("GOPHER_LOG_LEVEL", "warn".into()),
        ("GOPHER_EVENT_CHANNEL", "kafka".into()),
        ("GOPHER_META_CHANNEL", "kafka".into()),
        // The kafka channels need a broker: the misspelt variable gives it.
        ("GOPHER_KAKFA_SERVER", "127.0.0.1".into()),
        ("GOPHER_METRIC_LOGS_TOTAL_SIZE", "5".into()),
        ("GOPHER_REST_AUTH", "no".into()),
        (
            "GOPHER_PROBES_INIT",
            "proc_fd {\"state\": \"running\"}".into(),
        ),
        ("JOURNAL_STREAM", format!("{}:{}", st.dev(), st.ino())),
    ])
    .stderr(stderr_file);
    let daemon = RootDaemon::start(cmd, metrics_port, rest_port);
    daemon.wait_running("proc_fd");
    assert_eq!(daemon.probe("example"), serde_json::json!({}));
    assert!(daemon.terminate().success());
    let journal = fs::read_to_string(&stderr_path).expect("stderr");
    let log = fs::read_to_string(&log_path).expect("log");
    // Nothing listens on 127.0.0.1:9092: librdkafka's connection failure is a warning.
    let warning = "[WARN] kafka: ";
    assert!(
        journal.contains(&format!("<4>{warning}")),
        "journal: {journal}"
    );
    assert!(!journal.contains("[INFO]"), "journal: {journal}");
    assert!(
        log.contains(warning) && !log.contains("[INFO]"),
        "log: {log}"
    );
    // The file keeps the original's line format, time first.
    let first = log.lines().next().expect("a log line");
    assert_eq!(&first[2..3], "/", "{first}");
    // What ran is saved for the next start (GOPHER_PROBES_INIT wins again then).
    let saved = fs::read_to_string(r.join("etc/gala-gopher/probes.init")).expect("init");
    assert_eq!(init_probes(&saved), ["proc_fd"], "{saved}");
}

#[test]
fn build_sh_check_is_idempotent_and_non_interactive() {
    for round in 0..2 {
        let out = run(
            Command::new(repo().join("build.sh"))
                .arg("--check")
                .current_dir(repo()),
            "build.sh --check",
        );
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("build dependencies present"), "{err}");
        if round == 1 {
            assert!(
                !err.contains(" install "),
                "the second --check installed something: {err}"
            );
        }
    }
}

#[test]
fn build_sh_clean_removes_the_build_output() {
    let target = tempfile::tempdir().expect("tempdir");
    let t = target.path().join("target");
    fs::create_dir_all(t.join("release/extend_probes")).expect("dirs");
    fs::write(t.join("release/extend_probes/sockstat_probe"), "").expect("file");
    run(
        Command::new(repo().join("build.sh"))
            .arg("--clean")
            .env("CARGO_TARGET_DIR", &t)
            .current_dir(repo()),
        "build.sh --clean",
    );
    assert!(!t.exists(), "{} still there", t.display());
}

#[test]
fn the_scripts_pass_bash_n_and_shellcheck() {
    let scripts = ["build.sh", "install.sh", "dev.sh"];
    for s in scripts {
        run(
            Command::new("bash").arg("-n").arg(repo().join(s)),
            &format!("bash -n {s}"),
        );
        let mode = fs::metadata(repo().join(s))
            .expect("stat")
            .permissions()
            .mode();
        assert!(mode & 0o111 != 0, "{s} is not executable");
    }
    match tool("shellcheck") {
        Ok(shellcheck) => {
            run(
                Command::new(shellcheck)
                    .args(["build.sh", "install.sh", "dev.sh", ".ci/run"])
                    .current_dir(repo()),
                "shellcheck",
            );
        }
        Err(e) => gala_e2e::require::unavailable(&format!("{e}: only bash -n checked")),
    }
}
