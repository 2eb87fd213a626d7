#!/usr/bin/python3
"""pg_stat / opengauss_sli: PostgreSQL (openGauss) throughput from pg_stat_database.

One program, two probes of gala-gopher; GALA_GOPHER_PROBE_NAME says which it runs as:

* `pg_stat` (custom probe, declared in gala-gopher-custom.json, tables in
  pg_stat_probe.meta beside this file): one server from the custom params (host (127.0.0.1,
  or a socket directory starting with '/'), port (5432), user (postgres), password (better: a
  PGPASSFILE / ~/.pgpass of the daemon's user), dbname (postgres)). Every `report_period` it
  reports, per database, the raw cumulative counters and `tps` (commits + rollbacks per
  second), and the server as the probe sees it (`up`, `databases`, `poll_duration_ms`,
  `polls`, `poll_errors`).
* `opengauss_sli` (built-in probe 11, table pg_tps of opengauss_sli.meta in the daemon's meta
  directory): the servers listed in the original's YAML file
  /etc/gala-gopher/extend_probes/pg_stat_probe.conf ($GALA_PG_STAT_CONF overrides the path),
  and per database `tps` = committed transactions per second, keyed like the original (tgid of
  the server process listening on ip:port, datid, "POSTGRE", "0").

See README.md.
"""

import importlib
import ipaddress
import os
import socket
import stat
import sys
import time

CUSTOM_PROBE = "pg_stat"
SLI_PROBE = "opengauss_sli"
DB_TABLE = "pg_db_stat"
SERVER_TABLE = "pg_server_stat"
SLI_TABLE = "pg_tps"
# The built-in's meta file, in the daemon's meta directory (<prefix>/meta).
SLI_META = "opengauss_sli.meta"
# The original's credentials file, and the variable that points elsewhere (tests).
SLI_CONF = "/etc/gala-gopher/extend_probes/pg_stat_probe.conf"
ENV_SLI_CONF = "GALA_PG_STAT_CONF"
ENV_PROBE_NAME = "GALA_GOPHER_PROBE_NAME"
CONNECT_TIMEOUT_S = 5
STATEMENT_TIMEOUT_MS = 5000
# A failure that keeps happening is logged again at most this often.
REPEAT_LOG_S = 600

DEFAULTS = {
    "host": "127.0.0.1",
    "port": "5432",
    "user": "postgres",
    "password": "",
    "dbname": "postgres",
}

COUNTERS = (
    "xact_commit",
    "xact_rollback",
    "blks_read",
    "blks_hit",
    "tup_returned",
    "tup_fetched",
    "tup_inserted",
    "tup_updated",
    "tup_deleted",
    "deadlocks",
    "temp_bytes",
)

WHERE = " FROM pg_stat_database WHERE datname IS NOT NULL AND datname NOT IN ('template0', 'template1')"
QUERY = "SELECT datid, datname, numbackends, " + ", ".join(COUNTERS) + WHERE + " ORDER BY datname"
SLI_QUERY = "SELECT datid, datname, xact_commit" + WHERE + " ORDER BY datid"


def sdk_dirs():
    """Where gala_probe.py is looked for, in order: $GALA_PROBE_PYTHONPATH (':'-separated),
    the lib/python of the installation this file is in (<prefix>/extend_probes/..), the
    product's /opt/gala-gopher/lib/python, the source tree's probe-sdk/python."""
    dirs = [d for d in os.environ.get("GALA_PROBE_PYTHONPATH", "").split(":") if d]
    here = os.path.dirname(os.path.realpath(__file__))
    for d in (
        os.path.join(here, "..", "lib", "python"),
        "/opt/gala-gopher/lib/python",
        os.path.join(here, "..", "..", "..", "probe-sdk", "python"),
    ):
        d = os.path.normpath(d)
        if d not in dirs:
            dirs.append(d)
    return dirs


def import_sdk(log):
    dirs = sdk_dirs()
    sys.path[0:0] = [d for d in dirs if os.path.isfile(os.path.join(d, "gala_probe.py"))]
    try:
        import gala_probe
    except ImportError as e:
        log.write("ERROR", "cannot import the gala-gopher Python SDK (gala_probe) from %s: %s" % (", ".join(dirs), e))
        sys.exit(1)
    return gala_probe


def sli_meta_path():
    """The meta file of table pg_tps: <prefix>/meta/opengauss_sli.meta of the installation
    this file is in, else the one beside it (source tree); None if neither exists."""
    here = os.path.dirname(os.path.realpath(__file__))
    for p in (os.path.join(here, "..", "meta", SLI_META), os.path.join(here, SLI_META)):
        if os.path.isfile(p):
            return os.path.normpath(p)
    return None


def one_line(text):
    """A (driver's multi-line) error text on one line."""
    return " ".join(str(text).split())


class Log:
    """Log lines on stdout ('[LEVEL] ...' lines go to the daemon log), with repeats of the
    same kind of message rate-limited."""

    def __init__(self, name):
        self.name = name
        self.probe = None
        self.last = {}  # kind -> (monotonic time logged, repeats suppressed since)

    def write(self, level, message):
        if self.probe is not None:
            # Records buffered by the SDK go first, so lines never interleave.
            self.probe.flush()
        print("[%s] %s: %s" % (level, self.name, one_line(message)), flush=True)

    def limited(self, kind, level, message):
        now = time.monotonic()
        last = self.last.get(kind)
        if last is not None and now - last[0] < REPEAT_LOG_S:
            self.last[kind] = (last[0], last[1] + 1)
            return
        if last is not None and last[1]:
            message = "%s (and %d times more in the last %d s)" % (message, last[1], int(now - last[0]))
        self.last[kind] = (now, 0)
        self.write(level, message)

    def clear(self, kind):
        """Forgets `kind`, so its next occurrence is logged at once; True if it was pending."""
        return self.last.pop(kind, None) is not None


# -- the credentials file of opengauss_sli ---------------------------------------------------


class ConfError(Exception):
    """The credentials file is unusable; str() is ``file:line: message``."""

    def __init__(self, path, line, message):
        super().__init__("%s:%d: %s" % (path, line, message) if line else "%s: %s" % (path, message))


SERVER_KEYS = ("ip", "port", "dbname", "user", "password")
REQUIRED_KEYS = ("ip", "port", "dbname", "user")


def _scalar(text, path, line):
    """One YAML scalar: "double-quoted" (escapes \\\\ \\" \\t \\n), 'single-quoted' ('' is a
    quote) or plain; a trailing ``# comment`` is dropped."""
    if text.startswith('"'):
        out, i = [], 1
        escapes = {"\\": "\\", '"': '"', "t": "\t", "n": "\n", "/": "/"}
        while i < len(text) and text[i] != '"':
            if text[i] == "\\":
                if i + 1 >= len(text) or text[i + 1] not in escapes:
                    raise ConfError(path, line, "unsupported escape in a double-quoted value")
                out.append(escapes[text[i + 1]])
                i += 2
            else:
                out.append(text[i])
                i += 1
        if i >= len(text):
            raise ConfError(path, line, "unterminated double-quoted value")
        value, rest = "".join(out), text[i + 1 :]
    elif text.startswith("'"):
        out, i = [], 1
        while True:
            j = text.find("'", i)
            if j < 0:
                raise ConfError(path, line, "unterminated single-quoted value")
            out.append(text[i:j])
            if text[j + 1 : j + 2] == "'":
                out.append("'")
                i = j + 2
                continue
            value, rest = "".join(out), text[j + 1 :]
            break
    else:
        value = text.split(" #", 1)[0].strip()
        if value == "" or value in ("~", "null", "Null", "NULL"):
            raise ConfError(path, line, "no value")
        if value[0] in "[]{}&*!|>%@`\"'" or value.startswith("- "):
            raise ConfError(path, line, "unsupported YAML value %r: quote it" % value)
        return value
    rest = rest.strip()
    if rest and not rest.startswith("#"):
        raise ConfError(path, line, "text after the closing quote: %r" % rest)
    return value


def _pair(text, path, line):
    """``key: value`` -> (key, value text)."""
    key, sep, rest = text.partition(":")
    if not sep or (rest and not rest[0] in " \t"):
        raise ConfError(path, line, "expected 'key: value', found %r" % text)
    key = key.strip()
    if not key or not all(c.isalnum() or c == "_" for c in key):
        raise ConfError(path, line, "bad key %r" % key)
    return key, rest.strip()


def _server(item, path):
    """A finished list item -> server dict; `item` maps key -> (value, line), '' -> line."""
    start = item.pop("")
    for k in REQUIRED_KEYS:
        if k not in item:
            raise ConfError(path, start, "the server starting here has no '%s'" % k)
    port_text, port_line = item["port"]
    try:
        port = int(port_text)
        if not 0 < port < 65536:
            raise ValueError
    except ValueError:
        raise ConfError(path, port_line, "port %r is not a TCP port (1-65535)" % port_text)
    server = {k: v for k, (v, _) in item.items()}
    server.setdefault("password", "")
    server["port_number"] = port
    server["line"] = start
    return server


def parse_conf(text, path="<string>"):
    """Parses pg_stat_probe.conf (the YAML subset the original's file uses)::

        servers:
          -
            ip: "127.0.0.1"
            port: "5432"
            dbname: "postgres"
            user: "gala"
            password: "secret"
          - ip: 10.0.0.2        # the first key may follow the dash
            ...

    Returns a list of dicts with ip, port (as written), port_number, dbname, user, password
    ('' if absent) and line (where the item starts). Raises ConfError (``file:line:``) for
    anything else: another top-level key, a missing or unknown key, a bad port, tabs, a
    value PyYAML would read as a list, a mapping or null, no server at all."""
    servers = None  # the list, once 'servers:' was seen
    closed = False  # 'servers: []'
    item = None  # key -> (value, line) of the server being read; '' -> its first line
    dash_col = key_col = None
    top_line = 0
    for lineno, raw in enumerate(text.splitlines(), 1):
        body = raw.lstrip(" ")
        indent = len(raw) - len(body)
        body = body.rstrip()
        if body == "" or body.startswith("#") or (body == "---" and servers is None):
            continue
        if body.startswith("\t"):
            raise ConfError(path, lineno, "tab in the indentation (YAML indents with spaces)")
        if body == "-" or body.startswith("- "):
            if servers is None:
                raise ConfError(path, lineno, "a list item before 'servers:'")
            if closed:
                raise ConfError(path, lineno, "'servers: []' is already an empty list")
            if dash_col is not None and indent != dash_col:
                raise ConfError(path, lineno, "the list items are not aligned")
            if item is not None:
                servers.append(_server(item, path))
            dash_col, key_col = indent, None
            item = {"": lineno}
            rest = body[1:].lstrip(" ")
            if rest:
                key_col = indent + len(body) - len(rest)
                body, indent = rest, key_col
            else:
                continue
        elif indent == 0:
            key, value = _pair(body, path, lineno)
            if key != "servers":
                raise ConfError(path, lineno, "unknown key '%s' (the file has one: servers)" % key)
            if servers is not None:
                raise ConfError(path, lineno, "'servers' is given twice")
            value = value.split(" #", 1)[0].strip()
            if value == "[]":
                closed = True
            elif value and not value.startswith("#"):
                raise ConfError(path, lineno, "'servers' must be a list of servers (lines '- ip: ...')")
            servers, top_line = [], lineno
            continue
        if item is None:
            raise ConfError(path, lineno, "expected 'servers:' or a list item '- ', found %r" % body)
        if indent <= dash_col:
            raise ConfError(path, lineno, "expected a list item '- ', found %r" % body)
        if key_col is None:
            key_col = indent
        elif indent != key_col:
            raise ConfError(path, lineno, "the keys of a server are not aligned")
        key, value = _pair(body, path, lineno)
        if key not in SERVER_KEYS:
            raise ConfError(path, lineno, "unknown key '%s' (known: %s)" % (key, ", ".join(SERVER_KEYS)))
        if key in item:
            raise ConfError(path, lineno, "'%s' is given twice" % key)
        item[key] = (_scalar(value, path, lineno), lineno)
    if servers is None:
        raise ConfError(path, 0, "no 'servers:' list")
    if item is not None:
        servers.append(_server(item, path))
    if not servers:
        raise ConfError(path, top_line, "'servers' lists no server")
    return servers


def read_conf(path, log):
    """The servers of the credentials file at `path`; warns when group or others may read it
    (it holds passwords). Raises ConfError."""
    try:
        with open(path, encoding="utf-8") as f:
            mode = os.fstat(f.fileno()).st_mode
            text = f.read()
    except (OSError, UnicodeDecodeError) as e:
        raise ConfError(path, 0, "cannot read the credentials file: %s" % (getattr(e, "strerror", None) or e))
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        log.write(
            "WARN",
            "%s holds passwords but its mode is %04o: group and others may read it; chmod 600 it"
            % (path, stat.S_IMODE(mode)),
        )
    return parse_conf(text, path)


# -- the server process behind ip:port (tgid of pg_tps) --------------------------------------


def parse_proc_net_tcp(text):
    """Listening sockets of a /proc/net/tcp or /proc/net/tcp6 text: (address, port, inode)."""
    out = []
    for line in text.splitlines()[1:]:
        f = line.split()
        if len(f) < 10 or f[3] != "0A":  # TCP_LISTEN
            continue
        addr_hex, _, port_hex = f[1].partition(":")
        try:
            raw = bytes.fromhex(addr_hex)
            # Each 32-bit word is in host (little-endian) byte order.
            packed = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
            addr = ipaddress.ip_address(packed)
            out.append((addr, int(port_hex, 16), int(f[9])))
        except ValueError:
            continue
    return out


def _addresses(host):
    """The IP addresses `host` (an address or a name) stands for."""
    try:
        return {ipaddress.ip_address(host)}
    except ValueError:
        pass
    try:
        return {ipaddress.ip_address(a[4][0].split("%")[0]) for a in socket.getaddrinfo(host, None)}
    except (OSError, ValueError):
        return set()


def listening_inodes(host, port, proc="/proc"):
    """Inodes of the listening TCP sockets that accept connections to host:port (bound to
    that address, or to 0.0.0.0 / ::)."""
    wanted = _addresses(host)
    wanted |= {a.ipv4_mapped for a in wanted if a.version == 6 and a.ipv4_mapped}
    wanted |= {ipaddress.ip_address("::ffff:%s" % a) for a in list(wanted) if a.version == 4}
    inodes = set()
    for name in ("tcp", "tcp6"):
        try:
            with open(os.path.join(proc, "net", name)) as f:
                text = f.read()
        except OSError:
            continue
        for addr, p, inode in parse_proc_net_tcp(text):
            if p == port and inode and (addr.is_unspecified or addr in wanted):
                inodes.add(inode)
    return inodes


def server_tgid(host, port, proc="/proc"):
    """The lowest pid of the processes holding a listening socket of host:port (the
    postmaster), found through /proc/net/tcp{,6} and /proc/*/fd; 0 if none is visible (a
    Unix-socket host, a server in another network namespace, no permission)."""
    links = {"socket:[%d]" % i for i in listening_inodes(host, port, proc)}
    if not links:
        return 0
    pids = sorted(int(d) for d in os.listdir(proc) if d.isdigit())
    for pid in pids:
        fd_dir = os.path.join(proc, str(pid), "fd")
        try:
            fds = os.listdir(fd_dir)
        except OSError:
            continue
        for fd in fds:
            try:
                if os.readlink(os.path.join(fd_dir, fd)) in links:
                    return pid
            except OSError:
                continue
    return 0


# -- connections ------------------------------------------------------------------------------


class Driver:
    """psycopg2, imported on first use and retried while it is missing."""

    def __init__(self, log):
        self.log = log
        self.module = None

    def get(self):
        if self.module is None:
            importlib.invalidate_caches()  # it may have been installed since the last try
            try:
                import psycopg2
            except ImportError as e:
                self.log.limited(
                    "driver",
                    "ERROR",
                    "the PostgreSQL driver psycopg2 is missing for %s (%s): install python3-psycopg2"
                    " (Debian, openEuler); retrying every report_period" % (sys.executable, e),
                )
                return None
            self.module = psycopg2
            if self.log.clear("driver"):
                self.log.write("INFO", "psycopg2 %s loaded" % psycopg2.__version__)
        return self.module


class Target:
    """Where and as whom to connect."""

    def __init__(self, host, port_text, user, password, dbname, application):
        self.host = host
        self.port_text = port_text
        self.user = user
        self.password = password
        self.dbname = dbname
        self.application = application
        self.error = None
        try:
            self.port = int(self.port_text)
            if not 0 < self.port < 65536:
                raise ValueError
        except ValueError:
            self.port = None
            self.error = "custom param port %r is not a TCP port (1-65535)" % self.port_text
        host = "[%s]" % self.host if ":" in self.host else self.host
        self.server = "%s:%s" % (host, self.port_text)

    @classmethod
    def from_custom(cls, custom):
        """The target of the pg_stat custom params (defaults for those not given)."""
        custom = custom or {}
        get = lambda k: (str(custom.get(k) or "").strip() or DEFAULTS[k])
        password = str(custom.get("password") or "")
        return cls(get("host"), get("port"), get("user"), password, get("dbname"), "gala-gopher-pg_stat")

    @classmethod
    def from_conf(cls, server):
        """The target of one server of pg_stat_probe.conf."""
        return cls(
            server["ip"], server["port"], server["user"], server["password"], server["dbname"], "gala-gopher-opengauss_sli"
        )

    def key(self):
        return (self.host, self.port, self.user, self.password, self.dbname)

    def describe(self):
        return "%s (user %s, database %s)" % (self.server, self.user, self.dbname)

    def connect_args(self):
        args = {
            "host": self.host,
            "port": self.port,
            "user": self.user,
            "dbname": self.dbname,
            "application_name": self.application,
            "connect_timeout": CONNECT_TIMEOUT_S,
            "options": "-c statement_timeout=%d" % STATEMENT_TIMEOUT_MS,
        }
        if self.password:
            args["password"] = self.password
        return args


class Connection:
    """One server's connection: (re)connected on demand, a failed query logged (rate-limited)
    and the broken connection dropped."""

    def __init__(self, target, log, driver):
        self.target = target
        self.log = log
        self.driver = driver
        self.conn = None
        self.connects = 0
        # Log kinds of this server, so that two servers' failures are limited separately.
        self.kind = "connect " + target.server

    def close(self):
        if self.conn is not None:
            try:
                self.conn.close()
            except Exception:
                pass
            self.conn = None

    def fetch(self, query):
        """(rows, monotonic time read) of `query`, or (None, message) after a failure."""
        pg = self.driver.get()
        if pg is None:
            return None, "psycopg2 is missing"
        try:
            if self.conn is None or self.conn.closed:
                self.conn = None
                conn = pg.connect(**self.target.connect_args())
                conn.autocommit = True
                self.conn = conn
                self.connects += 1
                version = conn.get_parameter_status("server_version") or "?"
                self.log.clear(self.kind)
                self.log.write("INFO", "connected to %s, PostgreSQL %s" % (self.target.describe(), version))
            with self.conn.cursor() as cur:
                # Autocommit: the query is a transaction of its own, so the statistics
                # snapshot (stats_fetch_consistency) is taken afresh on every poll, and the
                # probe adds one commit per poll to its own database.
                cur.execute(query)
                rows = cur.fetchall()
            return rows, time.monotonic()
        except Exception as e:  # never crash the probe on a poll
            broken = self.conn is None or self.conn.closed or isinstance(e, (pg.OperationalError, pg.InterfaceError))
            if self.conn is None:
                what = "cannot connect to %s" % self.target.describe()
            else:
                what = "cannot read pg_stat_database on %s" % self.target.describe()
            message = "%s: %s" % (what, one_line(e) or type(e).__name__)
            self.log.limited(self.kind, "WARN", message + "; retrying every report_period")
            if broken:
                self.close()
            return None, message


# -- the pg_stat custom probe -----------------------------------------------------------------


class PgStat:
    """pg_stat: tables pg_db_stat and pg_server_stat of one server from the custom params."""

    def __init__(self, probe, log, driver):
        self.probe = probe
        self.log = log
        self.driver = driver
        self.server = None
        self.prev = {}  # datname -> (datid, commits + rollbacks, monotonic time)
        self.polls = 0
        self.poll_errors = 0
        self.was_up = None

    @property
    def target(self):
        return self.server.target

    def describe(self):
        return self.target.describe()

    def configure(self, config):
        """Takes the custom params; True if the server changed."""
        target = Target.from_custom(config.custom_params)
        if self.server is not None and target.key() == self.target.key():
            return False
        if self.server is not None:
            self.log.write("INFO", "server changed to %s" % target.describe())
            self.server.close()
        self.server = Connection(target, self.log, self.driver)
        self.prev = {}
        self.was_up = None
        # The server is the key of the pg_server series: its counters start anew.
        self.polls = 0
        self.poll_errors = 0
        # The new server's problems are logged at once.
        self.log.clear("target")
        self.log.clear(self.server.kind)
        return True

    def close(self):
        if self.server is not None:
            self.server.close()

    def poll(self):
        self.polls += 1
        started = time.monotonic()
        rows = None
        if self.target.error:
            self.log.limited("target", "ERROR", self.target.error)
        else:
            rows, at = self.server.fetch(QUERY)
            if rows is None and self.driver.module is not None:
                self.failed(at)
        if rows is not None:
            self.report(rows, at)
        else:
            self.poll_errors += 1
        up = rows is not None
        self.was_up = up
        self.emit(
            SERVER_TABLE,
            self.target.server,
            1 if up else 0,
            len(rows) if up else "",
            int((time.monotonic() - started) * 1000),
            self.polls,
            self.poll_errors,
        )

    def failed(self, message):
        if self.was_up is not False and self.probe.config.params.report_event:
            try:
                self.probe.event("pg_server", self.target.server, "up", message, severity="WARN")
            except Exception as e:
                self.log.limited("event", "WARN", "event not sent: %s" % e)

    def report(self, rows, at):
        seen = {}
        for row in rows:
            datid, datname, numbackends = row[0], row[1], row[2]
            counters = row[3:]
            xacts = (counters[0] or 0) + (counters[1] or 0)
            tps = ""
            prev = self.prev.get(datname)
            if prev is not None and prev[0] == datid and xacts >= prev[1] and at > prev[2]:
                tps = round((xacts - prev[1]) / (at - prev[2]), 3)
            seen[datname] = (datid, xacts, at)
            values = [self.target.server, datname]
            values += ["" if v is None else v for v in counters]
            values += ["" if numbackends is None else numbackends, tps]
            self.emit(DB_TABLE, *values)
        self.prev = seen

    def emit(self, table, *values):
        try:
            self.probe.emit(table, *values)
        except Exception as e:  # e.g. a database name holding '|': that record only
            what = "%s %r" % (table, values[1] if table == DB_TABLE else values[0])
            self.log.limited("emit " + what, "WARN", "record %s not reported: %s" % (what, e))


# -- the opengauss_sli built-in probe ---------------------------------------------------------


def sli_tps(prev, commits, at):
    """tps of one database: Δxact_commit / seconds since the previous poll `prev`
    ((xact_commit, monotonic time) or None); None on the first poll, after the counter went
    backwards (pg_stat_reset, server restart) or without elapsed time."""
    if prev is None or commits is None or commits < prev[0] or at <= prev[1]:
        return None
    return round((commits - prev[0]) / (at - prev[1]), 3)


class OpengaussSli:
    """opengauss_sli: table pg_tps of every server of pg_stat_probe.conf."""

    def __init__(self, probe, log, driver, servers):
        self.probe = probe
        self.log = log
        self.servers = []
        for s in servers:
            target = Target.from_conf(s)
            # Per server: its connection, the tgid found at its last connect, and the
            # previous poll's (xact_commit, time) per datid.
            self.servers.append({"conn": Connection(target, log, driver), "ip": s["ip"], "port": s["port"],
                                 "connects": 0, "tgid": 0, "prev": {}})

    def describe(self):
        return ", ".join(s["conn"].target.describe() for s in self.servers)

    def configure(self, config):
        """The servers come from the file, read once at start: nothing to change."""
        return False

    def close(self):
        for s in self.servers:
            s["conn"].close()

    def poll(self):
        for s in self.servers:
            conn = s["conn"]
            rows, at = conn.fetch(SLI_QUERY)
            if rows is None:
                continue
            if conn.connects != s["connects"]:
                # A new connection may be to a restarted server: find its process again.
                s["connects"] = conn.connects
                s["tgid"] = server_tgid(conn.target.host, conn.target.port)
                if s["tgid"] == 0:
                    self.log.limited("tgid " + conn.target.server, "INFO",
                                     "no process of this host listens on %s: tgid 0" % conn.target.server)
            seen = {}
            for datid, datname, commits in rows:
                tps = sli_tps(s["prev"].get(datid), commits, at)
                seen[datid] = (commits, at)
                if tps is None:
                    continue
                values = (s["tgid"], datid, "POSTGRE", "0", s["ip"], s["port"], datname, tps)
                try:
                    self.probe.emit(SLI_TABLE, *values)
                except Exception as e:  # e.g. a database name holding '|': that record only
                    self.log.limited("emit %s" % datname, "WARN", "record pg_tps %r not reported: %s" % (datname, e))
            s["prev"] = seen


# -- main -------------------------------------------------------------------------------------


def main():
    name = os.environ.get(ENV_PROBE_NAME, CUSTOM_PROBE).lower()
    sli = name == SLI_PROBE
    log = Log(SLI_PROBE if sli else CUSTOM_PROBE)
    servers = None
    if sli:
        path = os.environ.get(ENV_SLI_CONF) or SLI_CONF
        try:
            servers = read_conf(path, log)
        except ConfError as e:
            log.write("ERROR", "%s; the probe stops" % e)
            return 1
    gala_probe = import_sdk(log)
    probe = gala_probe.connect(meta=(sli_meta_path() or "") if sli else None)
    log.probe = probe
    driver = Driver(log)
    if sli:
        poller = OpengaussSli(probe, log, driver, servers)
    else:
        poller = PgStat(probe, log, driver)
    poller.configure(probe.config)
    log.write("INFO", "started, polling %s every %s s" % (poller.describe(), probe.config.params.report_period))
    next_poll = time.monotonic()
    while probe.running:
        period = max(1, int(probe.config.params.report_period or 60))
        now = time.monotonic()
        if now >= next_poll:
            poller.poll()
            # Keep the schedule; after a stall, start a new one rather than catching up.
            next_poll += period
            if next_poll <= now:
                next_poll = now + period
        wake = probe.wait(max(0.0, next_poll - time.monotonic()))
        if wake == "stop":
            break
        if wake == "config":
            if poller.configure(probe.config):
                next_poll = time.monotonic()  # new server: report it at once
            else:
                next_poll = min(next_poll, time.monotonic() + max(1, int(probe.config.params.report_period or 60)))
    poller.close()
    probe.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
