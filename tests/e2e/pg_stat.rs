//! The pg_stat extend probe (`probes/extends/pg_stat`, Python SDK) against a real PostgreSQL
//! server started for the test: the daemon starts it by REST PUT with custom params, it
//! reports an unreachable server as `up 0`, follows a new server given at run time, and
//! exports pg_stat_database exactly: N rows inserted make `tup_inserted` grow by exactly N.
//! The same program as the built-in `opengauss_sli` (JSON control channel): servers from the
//! original's YAML credentials file, table `pg_tps` (`gala_gopher_sli_tps`) with the
//! original's keys and labels, N commits seen as tps × period; a bad file fails the probe with
//! its file and line in the daemon log.

use std::io::Write;
use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use gala_e2e::{free_port, repo_root, Daemon, Samples, Sandbox, IMDB_DEFAULT};

/// Shortest report period the REST API accepts.
const PERIOD: u64 = 5;
/// Rows inserted (in several transactions) whose count must show up exactly.
const ROWS: u64 = 137;
const PYTHON: &str = "/usr/bin/python3";

/// Directory holding `initdb`, `postgres` and `psql`: the newest Debian
/// `/usr/lib/postgresql/<major>/bin`, else `/usr/bin` (openEuler).
fn postgres_bin_dir() -> PathBuf {
    let has_server = |d: &Path| d.join("initdb").is_file() && d.join("postgres").is_file();
    let mut debian: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let major = e.file_name().to_str()?.parse().ok()?;
            Some((major, e.path().join("bin")))
        })
        .filter(|(_, d)| has_server(d))
        .collect();
    debian.sort();
    if let Some((_, dir)) = debian.pop() {
        return dir;
    }
    let usr_bin = PathBuf::from("/usr/bin");
    assert!(
        has_server(&usr_bin),
        "no PostgreSQL server found (initdb and postgres in /usr/lib/postgresql/*/bin or /usr/bin): \
         install `postgresql` (Debian) or `postgresql-server` (openEuler), e.g. with ./dev.sh test"
    );
    usr_bin
}

/// Fails unless the probe's interpreter has psycopg2.
fn require_psycopg2() {
    let out = Command::new(PYTHON)
        .args(["-c", "import psycopg2"])
        .output()
        .unwrap_or_else(|e| panic!("{PYTHON}: {e}: install python3 and python3-psycopg2"));
    assert!(
        out.status.success(),
        "{PYTHON} cannot import psycopg2 ({}): install `python3-psycopg2` (Debian and openEuler), \
         e.g. with ./dev.sh test",
        String::from_utf8_lossy(&out.stderr).trim()
    );
}

/// A throw-away PostgreSQL server: data and socket in a temp dir, listening on 127.0.0.1 only,
/// trust authentication, no fsync, no autovacuum (an auto-analyze would add rows to
/// pg_statistic and so to `tup_inserted`). Stopped (fast shutdown) when dropped.
struct Postgres {
    bin: PathBuf,
    dir: tempfile::TempDir,
    port: u16,
    child: Child,
}

/// A command for one of the server's programs (in `bin`), run in `dir` as `user` (uid, gid):
/// PostgreSQL refuses to run as root.
fn server_command(bin: &Path, dir: &Path, user: Option<(u32, u32)>, program: &str) -> Command {
    let mut cmd = Command::new(bin.join(program));
    cmd.current_dir(dir);
    if let Some((uid, gid)) = user {
        cmd.uid(uid).gid(gid).env("HOME", dir);
    }
    cmd
}

impl Postgres {
    fn start() -> Self {
        let bin = postgres_bin_dir();
        let dir = tempfile::Builder::new()
            .prefix("gala-e2e-pg-")
            .tempdir()
            .expect("tempdir");
        let user = nix::unistd::geteuid().is_root().then(|| {
            let pg = nix::unistd::User::from_name("postgres")
                .ok()
                .flatten()
                .expect(
                    "as root, the server runs as user `postgres` (made by the postgresql packages)",
                );
            (pg.uid.as_raw(), pg.gid.as_raw())
        });
        // The server's user must reach its directories inside our temp dir.
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))
            .expect("chmod");
        for sub in ["data", "sock"] {
            let p = dir.path().join(sub);
            std::fs::create_dir(&p).expect("mkdir");
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o700)).expect("chmod");
            if let Some((uid, gid)) = user {
                nix::unistd::chown(&p, Some(uid.into()), Some(gid.into())).expect("chown");
            }
        }
        let data = dir.path().join("data");
        let out = server_command(&bin, dir.path(), user, "initdb")
            .arg("-D")
            .arg(&data)
            .args(["-A", "trust", "-U", "postgres"])
            .args(["-E", "UTF8", "--locale=C", "--no-sync"])
            .output()
            .expect("run initdb");
        assert!(
            out.status.success(),
            "initdb failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let port = free_port();
        let log = std::fs::File::create(dir.path().join("postgres.log")).expect("log");
        let child = server_command(&bin, dir.path(), user, "postgres")
            .arg("-D")
            .arg(&data)
            .arg("-p")
            .arg(port.to_string())
            .arg("-k")
            .arg(dir.path().join("sock"))
            .args(["-c", "listen_addresses=127.0.0.1", "-c", "fsync=off"])
            .args(["-c", "autovacuum=off", "-c", "max_connections=20"])
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("spawn postgres");
        // From here on, a panic stops the server (Drop).
        let mut pg = Postgres {
            bin,
            dir,
            port,
            child,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(Some(status)) = pg.child.try_wait() {
                panic!("postgres exited at start ({status}):\n{}", pg.log());
            }
            if TcpStream::connect(("127.0.0.1", pg.port)).is_ok()
                && pg.try_psql("postgres", "SELECT 1").is_ok()
            {
                return pg;
            }
            assert!(
                Instant::now() < deadline,
                "postgres did not accept connections within 60 s:\n{}",
                pg.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("postgres.log")).unwrap_or_default()
    }

    /// Runs `sql` in database `db` in one psql session (stopping at the first error); the
    /// session ends before this returns, so the server has its statistics.
    fn try_psql(&self, db: &str, sql: &str) -> Result<String, String> {
        let psql = [self.bin.join("psql"), PathBuf::from("/usr/bin/psql")]
            .into_iter()
            .find(|p| p.is_file())
            .expect("psql (postgresql-client) not found");
        let mut child = Command::new(psql)
            .args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1"])
            .args(["-h", "127.0.0.1"])
            .arg("-p")
            .arg(self.port.to_string())
            .args(["-U", "postgres", "-d", db, "-f", "-"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("psql: {e}"))?;
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(sql.as_bytes())
            .map_err(|e| format!("psql stdin: {e}"))?;
        let out = child.wait_with_output().map_err(|e| format!("psql: {e}"))?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).into_owned())
        }
    }

    fn psql(&self, db: &str, sql: &str) -> String {
        self.try_psql(db, sql)
            .unwrap_or_else(|e| panic!("psql {db}: {sql}: {e}"))
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        // SIGINT = fast shutdown.
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT);
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The probe and its meta file installed in the sandbox as the product installs them.
fn install_probe(sb: &mut Sandbox) -> PathBuf {
    let src = repo_root().join("probes/extends/pg_stat");
    let bin = sb.path().join("probes/pg_stat_probe.py");
    std::fs::copy(src.join("pg_stat_probe.py"), &bin).expect("copy probe");
    std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o750)).expect("chmod");
    let meta = bin.with_extension("meta");
    std::fs::copy(src.join("pg_stat_probe.meta"), &meta).expect("copy meta");
    std::fs::set_permissions(&meta, std::fs::Permissions::from_mode(0o640)).expect("chmod");
    sb.declare_custom_probe(
        "pg_stat",
        &bin,
        &[],
        &["host", "port", "user", "password", "dbname"],
    );
    bin
}

/// The password the probe is given (the test server trusts local connections, so any works);
/// never shown by GET.
const PASSWORD: &str = "pw-0f3c9a";

/// PUTs the probe running (period [`PERIOD`]) against 127.0.0.1:`port`.
fn put_server(d: &Daemon, bin: &Path, port: u16) {
    let body = format!(
        r#"{{"cmd": {{"bin": "{}", "probe": []}}, "params": {{"report_period": {PERIOD}, "custom_param": [{{"host": "127.0.0.1"}}, {{"port": "{port}"}}, {{"user": "postgres"}}, {{"password": "{PASSWORD}"}}, {{"dbname": "postgres"}}]}}, "state": "running"}}"#,
        bin.display()
    );
    let (status, answer) = d.put("pg_stat", &body);
    assert_eq!(status, 200, "PUT /pg_stat: {answer}");
}

fn server_metric(s: &Samples, server: &str, field: &str) -> Option<u64> {
    s.value(
        &format!("gala_gopher_pg_server_{field}"),
        &[("server", server)],
    )
    .and_then(|v| v.parse().ok())
}

fn db_metric<'a>(s: &'a Samples, server: &str, db: &str, field: &str) -> Option<&'a str> {
    s.value(
        &format!("gala_gopher_pg_database_{field}"),
        &[("server", server), ("datname", db)],
    )
}

fn db_counter(s: &Samples, server: &str, db: &str, field: &str) -> Option<u64> {
    db_metric(s, server, db, field).and_then(|v| v.parse().ok())
}

/// Waits for the first report of a poll after poll number `after` of `server`.
fn next_poll(d: &Daemon, server: &str, after: u64) -> (u64, Samples) {
    let s = d.wait_for(
        Duration::from_secs(3 * PERIOD + 10),
        &format!("poll {} of {server}", after + 1),
        |s| server_metric(s, server, "polls").is_some_and(|n| n > after),
    );
    (server_metric(&s, server, "polls").unwrap(), s)
}

fn daemon_log(sb: &Sandbox) -> String {
    std::fs::read_to_string(sb.path().join("log/debug/gopher.log")).unwrap_or_default()
}

fn wait_log(sb: &Sandbox, what: &str, timeout: Duration) -> String {
    let deadline = Instant::now() + timeout;
    loop {
        let log = daemon_log(sb);
        if log.contains(what) {
            return log;
        }
        assert!(
            Instant::now() < deadline,
            "daemon log never said {what:?}:\n{log}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn pg_stat_exports_pg_stat_database_of_a_real_server() {
    require_psycopg2();
    let pg = Postgres::start();
    // Created before the probe starts: its first report already holds gala_test.
    pg.psql("postgres", "CREATE DATABASE gala_test;");
    pg.psql(
        "gala_test",
        "CREATE TABLE items (id integer NOT NULL, name text NOT NULL);",
    );

    let mut sb = Sandbox::new();
    let bin = install_probe(&mut sb);
    sb.write_config(IMDB_DEFAULT, "");
    let sdk = repo_root().join("probe-sdk/python");
    let d = sb.start_with_env(&[("GALA_PROBE_PYTHONPATH", sdk.to_str().expect("utf-8 path"))]);

    // A server that does not answer: reported down, warned about, and the probe lives on.
    let closed = free_port();
    let down = format!("127.0.0.1:{closed}");
    put_server(&d, &bin, closed);
    let s = d.wait_for(Duration::from_secs(20), "the unreachable server", |s| {
        server_metric(s, &down, "poll_errors").is_some_and(|n| n >= 1)
    });
    assert_eq!(server_metric(&s, &down, "up"), Some(0));
    assert!(
        s.find("gala_gopher_pg_database_tup_inserted", &[("server", &down)])
            .is_empty(),
        "no database records for a server that is down"
    );
    wait_log(
        &sb,
        &format!("cannot connect to {down}"),
        Duration::from_secs(10),
    );

    // The real server, given at run time: polled at once.
    let server = format!("127.0.0.1:{}", pg.port);
    put_server(&d, &bin, pg.port);
    let s = d.wait_for(Duration::from_secs(20), "gala_test reported", |s| {
        db_counter(s, &server, "gala_test", "tup_inserted").is_some()
            && server_metric(s, &server, "polls").is_some()
    });
    let mut polls = server_metric(&s, &server, "polls").unwrap();
    assert_eq!(server_metric(&s, &server, "up"), Some(1));
    // The password is masked in GET, kept in probes.init (to restore it), which only its
    // owner can read.
    let (status, get) = d.get("pg_stat");
    assert_eq!(status, 200, "{get}");
    assert!(!get.contains(PASSWORD), "GET shows the password: {get}");
    assert!(get.contains(r#"{"password":"******"}"#), "{get}");
    let init = sb.path().join("probes.init");
    let saved = std::fs::read_to_string(&init).expect("probes.init");
    assert!(saved.contains(PASSWORD), "{saved}");
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&init)
        .expect("probes.init")
        .permissions()
        .mode();
    assert_eq!(mode & 0o077, 0, "probes.init mode {mode:o}");
    assert_eq!(
        server_metric(&s, &server, "databases"),
        Some(2),
        "postgres and gala_test"
    );
    if polls == 1 {
        assert_eq!(
            db_metric(&s, &server, "gala_test", "tps"),
            None,
            "no tps on the first poll"
        );
    }
    for template in ["template0", "template1"] {
        assert!(
            s.find(
                "gala_gopher_pg_database_xact_commit",
                &[("datname", template)]
            )
            .is_empty(),
            "{template} is not reported"
        );
    }
    wait_log(
        &sb,
        &format!("connected to {server}"),
        Duration::from_secs(10),
    );

    // The baseline: the same value on two consecutive reports.
    let mut last = db_counter(&s, &server, "gala_test", "tup_inserted").unwrap();
    let mut stable = 0;
    let mut tries = 0;
    let base = loop {
        let (n, s) = next_poll(&d, &server, polls);
        polls = n;
        let v = db_counter(&s, &server, "gala_test", "tup_inserted").expect("tup_inserted");
        if v == last {
            stable += 1;
        } else {
            stable = 0;
            last = v;
        }
        tries += 1;
        assert!(tries <= 6, "tup_inserted of gala_test never settled");
        if stable >= 1 {
            let tps = db_metric(&s, &server, "gala_test", "tps").unwrap_or_else(|| {
                panic!(
                    "tps from the second poll on: {:?}",
                    s.find("gala_gopher_pg_database_tps", &[])
                )
            });
            assert!(tps.parse::<f64>().is_ok_and(|t| t >= 0.0), "tps = {tps}");
            break s;
        }
    };
    let inserted0 = last;
    let commits0 = db_counter(&base, &server, "gala_test", "xact_commit").expect("xact_commit");
    let rollbacks0 =
        db_counter(&base, &server, "gala_test", "xact_rollback").expect("xact_rollback");

    // ROWS rows in three transactions, and one transaction rolled back.
    let (a, b) = (50, 100);
    pg.psql(
        "gala_test",
        &format!(
            "BEGIN; INSERT INTO items SELECT g, 'item ' || g FROM generate_series(1, {a}) g; COMMIT;\n\
             BEGIN; INSERT INTO items SELECT g, 'item ' || g FROM generate_series({}, {b}) g; COMMIT;\n\
             BEGIN; INSERT INTO items SELECT g, 'item ' || g FROM generate_series({}, {ROWS}) g; COMMIT;\n\
             BEGIN; SELECT count(*) FROM items; ROLLBACK;\n",
            a + 1,
            b + 1
        ),
    );
    assert_eq!(
        pg.psql("gala_test", "SELECT count(*) FROM items;").trim(),
        ROWS.to_string()
    );

    let want = inserted0 + ROWS;
    let s = d.wait_for(
        Duration::from_secs(4 * PERIOD + 10),
        &format!("tup_inserted of gala_test = {inserted0} + {ROWS}"),
        |s| db_counter(s, &server, "gala_test", "tup_inserted").is_some_and(|v| v >= want),
    );
    assert_eq!(
        db_counter(&s, &server, "gala_test", "tup_inserted"),
        Some(want),
        "grew by exactly {ROWS}"
    );
    let tps: f64 = db_metric(&s, &server, "gala_test", "tps")
        .and_then(|v| v.parse().ok())
        .expect("tps");
    assert!(
        tps > 0.0,
        "the poll that saw the inserts saw their commits: tps = {tps}"
    );
    let polls_seen = server_metric(&s, &server, "polls").unwrap();

    // The transactions are counted (at least ours: a session may add its own).
    d.wait_for(
        Duration::from_secs(3 * PERIOD + 10),
        "xact_commit and xact_rollback of gala_test grow",
        |s| {
            db_counter(s, &server, "gala_test", "xact_commit").is_some_and(|v| v >= commits0 + 3)
                && db_counter(s, &server, "gala_test", "xact_rollback")
                    .is_some_and(|v| v > rollbacks0)
        },
    );

    // And the value stays exactly there on the next report.
    let (_, s) = next_poll(&d, &server, polls_seen);
    assert_eq!(
        db_counter(&s, &server, "gala_test", "tup_inserted"),
        Some(want),
        "no more rows than inserted"
    );
    assert_eq!(server_metric(&s, &server, "up"), Some(1));
    let log = daemon_log(&sb);
    assert!(!log.contains("psycopg2 is missing"), "{log}");
}

/// Transactions committed in database `gala_sli` by the opengauss_sli test's session: its
/// INSERTs plus the one a connection's start-up commits (reading the catalogs). Odd, so that
/// when they straddle two polls the two polls' `tps` differ and both are seen.
const SLI_COMMITS: u64 = 37;

/// The built-in opengauss_sli as the product installs it: the program in the extend-probe
/// directory, its table (`opengauss_sli.meta`) in the meta directory, and the credentials
/// file `pg_stat_probe.conf` (mode `mode`) at `<sandbox>/etc/extend_probes/`, its path given
/// to the daemon (and so to its probes) in `GALA_PG_STAT_CONF`.
fn install_sli(sb: &Sandbox, conf: &str, mode: u32) -> PathBuf {
    let src = repo_root().join("probes/extends/pg_stat");
    let bin = sb.path().join("probes/pg_stat_probe.py");
    std::fs::copy(src.join("pg_stat_probe.py"), &bin).expect("copy probe");
    std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o750)).expect("chmod");
    let meta = std::fs::read_to_string(src.join("opengauss_sli.meta")).expect("opengauss_sli.meta");
    sb.write_meta("opengauss_sli.meta", &meta);
    let dir = sb.path().join("etc/extend_probes");
    std::fs::create_dir_all(&dir).expect("mkdir");
    let path = dir.join("pg_stat_probe.conf");
    std::fs::write(&path, conf).expect("write conf");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).expect("chmod");
    path
}

fn start_sli(sb: &Sandbox, conf: &Path) -> Daemon {
    let sdk = repo_root().join("probe-sdk/python");
    sb.start_with_env(&[
        ("GALA_PROBE_PYTHONPATH", sdk.to_str().expect("utf-8 path")),
        ("GALA_PG_STAT_CONF", conf.to_str().expect("utf-8 path")),
    ])
}

fn sli_tps(s: &Samples, port: u16, db: &str) -> Option<f64> {
    s.value(
        "gala_gopher_sli_tps",
        &[("server_port", &port.to_string()), ("datname", db)],
    )
    .and_then(|v| v.parse().ok())
}

#[test]
fn opengauss_sli_reports_pg_tps_of_the_servers_in_the_conf_file() {
    require_psycopg2();
    let pg = Postgres::start();
    pg.psql("postgres", "CREATE DATABASE gala_sli;");
    pg.psql("gala_sli", "CREATE TABLE t (id integer NOT NULL);");
    let datid = pg
        .psql(
            "postgres",
            "SELECT oid FROM pg_database WHERE datname = 'gala_sli';",
        )
        .trim()
        .to_owned();
    let closed = free_port();
    // The original's layout: the top-level list `servers`, every value quoted; a second
    // server that does not answer must not stop the first one's reports.
    let conf = format!(
        "servers:\n  -\n    ip: \"127.0.0.1\"\n    port: \"{}\"\n    dbname: \"postgres\"\n    \
         user: \"postgres\"\n    password: \"{PASSWORD}\"\n  -\n    ip: \"127.0.0.1\"\n    \
         port: \"{closed}\"\n    dbname: \"postgres\"\n    user: \"postgres\"\n    password: \"x\"\n",
        pg.port
    );
    let sb = Sandbox::new();
    let conf = install_sli(&sb, &conf, 0o600);
    sb.write_config(IMDB_DEFAULT, "");
    let d = start_sli(&sb, &conf);
    let (status, answer) = d.put(
        "opengauss_sli",
        &format!(r#"{{"params": {{"report_period": {PERIOD}}}, "state": "running"}}"#),
    );
    assert_eq!(status, 200, "PUT /opengauss_sli: {answer}");

    // From the second poll on, one record per database; keys and labels as the original's.
    let s = d.wait_for(
        Duration::from_secs(3 * PERIOD + 10),
        "gala_gopher_sli_tps of gala_sli",
        |s| sli_tps(s, pg.port, "gala_sli").is_some(),
    );
    let port = pg.port.to_string();
    let found = s.find(
        "gala_gopher_sli_tps",
        &[("server_port", &port), ("datname", "gala_sli")],
    );
    assert_eq!(found.len(), 1, "{found:?}");
    let tgid = pg.child.id().to_string();
    for (label, want) in [
        ("tgid", tgid.as_str()),
        ("ins_id", datid.as_str()),
        ("app", "POSTGRE"),
        ("method", "0"),
        ("server_ip", "127.0.0.1"),
    ] {
        assert!(
            s.value(
                "gala_gopher_sli_tps",
                &[
                    ("server_port", &port),
                    ("datname", "gala_sli"),
                    (label, want)
                ]
            )
            .is_some(),
            "label {label}={want}: {found:?}"
        );
    }
    for template in ["template0", "template1"] {
        assert!(sli_tps(&s, pg.port, template).is_none(), "{template}");
    }
    // The probe's own poll commits in `postgres`, not in gala_sli: idle is 0.
    d.wait_for(
        Duration::from_secs(3 * PERIOD + 10),
        "tps 0 of the idle gala_sli",
        |s| sli_tps(s, pg.port, "gala_sli") == Some(0.0),
    );
    let log = wait_log(
        &sb,
        &format!("cannot connect to 127.0.0.1:{closed}"),
        Duration::from_secs(10),
    );
    assert!(
        !log.contains("mode is"),
        "a 0600 file is not warned about: {log}"
    );

    // SLI_COMMITS transactions (the session's start, each INSERT) in one short session: they
    // fall into one poll, or two at most; the tps of those polls add up to
    // SLI_COMMITS / period.
    let inserts: String = (1..SLI_COMMITS)
        .map(|i| format!("INSERT INTO t VALUES ({i});\n"))
        .collect();
    pg.psql("gala_sli", &inserts);
    let mut seen: Vec<f64> = Vec::new();
    let mut last = 0.0;
    let deadline = Instant::now() + Duration::from_secs(4 * PERIOD + 10);
    loop {
        let s = Samples::parse(&d.scrape());
        let v = sli_tps(&s, pg.port, "gala_sli").expect("tps of gala_sli");
        if v != last {
            if v > 0.0 {
                seen.push(v);
            }
            last = v;
        }
        if !seen.is_empty() && v == 0.0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "tps never went up and back to 0: {seen:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(seen.len() <= 2, "{seen:?}");
    let commits: f64 = seen.iter().map(|v| v * PERIOD as f64).sum();
    // tps divides by the measured time between two polls, which a loaded machine may make
    // a little longer or (after a late poll: the schedule keeps its pace) shorter than the
    // period: allow 20 % for that (a raw total or an undivided delta is 5 times off).
    let want = SLI_COMMITS as f64;
    assert!(
        (want * 0.8..=want * 1.25).contains(&commits),
        "tps {seen:?} × {PERIOD} s = {commits}, not {SLI_COMMITS}"
    );

    // It ran all along: the built-in is running, never restarted.
    let v = d.probe_json("opengauss_sli");
    assert_eq!(v["runtime"]["status"], "running", "{v}");
    assert_eq!(v["runtime"]["restarts"], 0, "{v}");
    let log = daemon_log(&sb);
    assert!(log.contains("connected to 127.0.0.1:"), "{log}");
}

#[test]
fn opengauss_sli_with_a_bad_conf_file_fails_naming_file_and_line() {
    // Line 4 holds a port that is no number; the file is readable by others (0644).
    let conf =
        "servers:\n  - ip: \"127.0.0.1\"\n    dbname: \"postgres\"\n    port: \"eighty\"\n    \
                user: \"gala\"\n    password: \"pw\"\n";
    let sb = Sandbox::new();
    let conf = install_sli(&sb, conf, 0o644);
    sb.write_config(
        IMDB_DEFAULT,
        "supervisor = { failed_after = 3; restart_backoff_max = 1; };",
    );
    let d = start_sli(&sb, &conf);
    let (status, answer) = d.put("opengauss_sli", r#"{"state": "running"}"#);
    assert_eq!(status, 200, "PUT /opengauss_sli: {answer}");
    let v = d.wait_probe(
        "opengauss_sli",
        Duration::from_secs(30),
        "opengauss_sli failed",
        |v| v["runtime"]["status"] == "failed",
    );
    assert_eq!(v["runtime"]["last_exit"], "exit status: 1", "{v}");
    let log = wait_log(
        &sb,
        &format!(
            "{}:4: port 'eighty' is not a TCP port (1-65535)",
            conf.display()
        ),
        Duration::from_secs(5),
    );
    assert!(
        log.contains(&format!(
            "{} holds passwords but its mode is 0644",
            conf.display()
        )),
        "{log}"
    );
}
