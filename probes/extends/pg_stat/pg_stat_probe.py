#!/usr/bin/python3
"""pg_stat: PostgreSQL throughput from pg_stat_database, one record per database.

An extend probe of gala-gopher (declared in gala-gopher-custom.json, tables in
pg_stat_probe.meta beside this file). Every `report_period` it reads pg_stat_database of
one server and reports, per database, the raw cumulative counters and `tps`, the
transactions (commits + rollbacks) per second since the previous poll. It also reports
the server as the probe sees it: `up`, `databases`, `poll_duration_ms`, `polls`,
`poll_errors`.

Connection (custom params, all optional): host (127.0.0.1, or a socket directory
starting with '/'), port (5432), user (postgres), password (better: a PGPASSFILE /
~/.pgpass of the daemon's user), dbname (postgres). See README.md.
"""

import importlib
import os
import sys
import time

PROBE = "pg_stat"
DB_TABLE = "pg_db_stat"
SERVER_TABLE = "pg_server_stat"
APPLICATION_NAME = "gala-gopher-pg_stat"
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

QUERY = (
    "SELECT datid, datname, numbackends, "
    + ", ".join(COUNTERS)
    + " FROM pg_stat_database"
    " WHERE datname IS NOT NULL AND datname NOT IN ('template0', 'template1')"
    " ORDER BY datname"
)


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


def import_sdk():
    dirs = sdk_dirs()
    sys.path[0:0] = [d for d in dirs if os.path.isfile(os.path.join(d, "gala_probe.py"))]
    try:
        import gala_probe
    except ImportError as e:
        print(
            "[ERROR] %s: cannot import the gala-gopher Python SDK (gala_probe) from %s: %s"
            % (PROBE, ", ".join(dirs), e),
            flush=True,
        )
        sys.exit(1)
    return gala_probe


def one_line(text):
    """A (driver's multi-line) error text on one line."""
    return " ".join(str(text).split())


class Log:
    """Log lines on stdout ('[LEVEL] ...' lines go to the daemon log), with repeats of the
    same kind of message rate-limited."""

    def __init__(self):
        self.probe = None
        self.last = {}  # kind -> (monotonic time logged, repeats suppressed since)

    def write(self, level, message):
        if self.probe is not None:
            # Records buffered by the SDK go first, so lines never interleave.
            self.probe.flush()
        print("[%s] %s: %s" % (level, PROBE, one_line(message)), flush=True)

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


class Target:
    """Connection settings from the custom params."""

    def __init__(self, custom):
        custom = custom or {}
        get = lambda k: (str(custom.get(k) or "").strip() or DEFAULTS[k])
        self.host = get("host")
        self.port_text = get("port")
        self.user = get("user")
        self.password = str(custom.get("password") or "")
        self.dbname = get("dbname")
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
            "application_name": APPLICATION_NAME,
            "connect_timeout": CONNECT_TIMEOUT_S,
            "options": "-c statement_timeout=%d" % STATEMENT_TIMEOUT_MS,
        }
        if self.password:
            args["password"] = self.password
        return args


class PgStat:
    def __init__(self, probe, log):
        self.probe = probe
        self.log = log
        self.psycopg2 = None
        self.conn = None
        self.target = None
        self.prev = {}  # datname -> (datid, commits + rollbacks, monotonic time)
        self.polls = 0
        self.poll_errors = 0
        self.was_up = None

    # -- configuration -------------------------------------------------------------------

    def configure(self, config):
        target = Target(config.custom_params)
        if self.target is not None and target.key() == self.target.key():
            return False
        if self.target is not None:
            self.log.write("INFO", "server changed to %s" % target.describe())
        self.close()
        self.target = target
        self.prev = {}
        self.was_up = None
        # The server is the key of the pg_server series: its counters start anew.
        self.polls = 0
        self.poll_errors = 0
        # The new server's problems are logged at once.
        self.log.clear("target")
        self.log.clear("connect")
        return True

    # -- one poll ------------------------------------------------------------------------

    def driver(self):
        if self.psycopg2 is None:
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
            self.psycopg2 = psycopg2
            if self.log.clear("driver"):
                self.log.write("INFO", "psycopg2 %s loaded" % psycopg2.__version__)
        return self.psycopg2

    def connect(self, pg):
        conn = pg.connect(**self.target.connect_args())
        conn.autocommit = True
        self.conn = conn
        version = conn.get_parameter_status("server_version") or "?"
        self.log.clear("connect")
        self.log.write("INFO", "connected to %s, PostgreSQL %s" % (self.target.describe(), version))

    def close(self):
        if self.conn is not None:
            try:
                self.conn.close()
            except Exception:
                pass
            self.conn = None

    def read_stats(self, pg):
        """Rows of pg_stat_database and the time they were read, or raises."""
        if self.conn is None or self.conn.closed:
            self.connect(pg)
        with self.conn.cursor() as cur:
            # Autocommit: the query is a transaction of its own, so the statistics snapshot
            # (stats_fetch_consistency) is taken afresh on every poll, and the probe adds one
            # commit per poll to its own database.
            cur.execute(QUERY)
            rows = cur.fetchall()
        return rows, time.monotonic()

    def poll(self):
        self.polls += 1
        started = time.monotonic()
        rows = None
        if self.target.error:
            self.log.limited("target", "ERROR", self.target.error)
        else:
            pg = self.driver()
            if pg is not None:
                try:
                    rows, at = self.read_stats(pg)
                except pg.Error as e:
                    self.failed(e, pg)
                except Exception as e:  # never crash the probe on a poll
                    self.failed(e, pg)
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

    def failed(self, error, pg):
        broken = self.conn is None or self.conn.closed or isinstance(
            error, (pg.OperationalError, pg.InterfaceError)
        )
        if self.conn is None:
            what = "cannot connect to %s" % self.target.describe()
        else:
            what = "cannot read pg_stat_database on %s" % self.target.describe()
        message = "%s: %s" % (what, one_line(error) or type(error).__name__)
        self.log.limited("connect", "WARN", message + "; retrying every report_period")
        if broken:
            self.close()
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


def main():
    log = Log()
    gala_probe = import_sdk()
    probe = gala_probe.connect()
    log.probe = probe
    stat = PgStat(probe, log)
    stat.configure(probe.config)
    log.write("INFO", "started, polling %s every %s s" % (stat.target.describe(), probe.config.params.report_period))
    next_poll = time.monotonic()
    while probe.running:
        period = max(1, int(probe.config.params.report_period or 60))
        now = time.monotonic()
        if now >= next_poll:
            stat.poll()
            # Keep the schedule; after a stall, start a new one rather than catching up.
            next_poll += period
            if next_poll <= now:
                next_poll = now + period
        wake = probe.wait(max(0.0, next_poll - time.monotonic()))
        if wake == "stop":
            break
        if wake == "config":
            if stat.configure(probe.config):
                next_poll = time.monotonic()  # new server: report it at once
            else:
                next_poll = min(next_poll, time.monotonic() + max(1, int(probe.config.params.report_period or 60)))
    stat.close()
    probe.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
