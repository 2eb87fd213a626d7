"""Unit tests of the pg_stat / opengauss_sli probe's pure parts (probes/extends/pg_stat):
the parser of the credentials file pg_stat_probe.conf, tps, and how the server process is
found from /proc.

Run from the repository root:  python3 -m unittest discover -s probe-sdk/python -v
"""

import contextlib
import importlib.util
import io
import os
import tempfile
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
PROBE = os.path.join(os.path.dirname(os.path.dirname(HERE)), "probes", "extends", "pg_stat", "pg_stat_probe.py")

_spec = importlib.util.spec_from_file_location("pg_stat_probe", PROBE)
pg = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(pg)

# The original's sample file, verbatim.
ORIGINAL = """servers:
  -
    ip: "172.11.0.101"
    port: "5432"
    dbname: "postgres"
    user: "opengauss_exporter"
    password: "opengauss_exporter123"
  -
    ip: "172.12.0.101"
    port: "5433"
    dbname: "postgres"
    user: "opengauss_exporter"
    password: "opengauss_exporter123"
"""


class ConfParser(unittest.TestCase):
    def error(self, text):
        with self.assertRaises(pg.ConfError) as cm:
            pg.parse_conf(text, "/etc/x.conf")
        return str(cm.exception)

    def test_the_originals_file(self):
        servers = pg.parse_conf(ORIGINAL, "f")
        self.assertEqual(len(servers), 2)
        self.assertEqual(
            servers[0],
            {
                "ip": "172.11.0.101",
                "port": "5432",
                "port_number": 5432,
                "dbname": "postgres",
                "user": "opengauss_exporter",
                "password": "opengauss_exporter123",
                "line": 2,
            },
        )
        self.assertEqual((servers[1]["port_number"], servers[1]["line"]), (5433, 8))

    def test_compact_items_plain_and_single_quoted_values_comments(self):
        text = (
            "# credentials\n---\nservers:   # two\n"
            "- ip: 127.0.0.1   # local\n  port: 5432\n  dbname: postgres\n  user: gala\n"
            "  password: 'it''s #1'\n\n"
            "- ip: \"::1\"\n  port: '6000'\n  user: \"a \\\"b\\\"\"\n  dbname: db\n"
        )
        a, b = pg.parse_conf(text, "f")
        self.assertEqual((a["ip"], a["port"], a["password"], a["line"]), ("127.0.0.1", "5432", "it's #1", 4))
        self.assertEqual((b["ip"], b["port_number"], b["user"]), ("::1", 6000, 'a "b"'))
        self.assertEqual(b["password"], "", "the password may be left to ~/.pgpass")

    def test_errors_name_file_and_line(self):
        cases = [
            ("server:\n  - ip: a\n", "/etc/x.conf:1: unknown key 'server'"),
            (ORIGINAL.replace('port: "5433"', 'port: "eighty"'), "/etc/x.conf:10: port 'eighty' is not a TCP port"),
            (ORIGINAL.replace('port: "5432"', 'port: "0"'), "/etc/x.conf:4: port '0' is not a TCP port"),
            (ORIGINAL.replace('    user: "opengauss_exporter"\n', "", 1), "/etc/x.conf:2: the server starting here has no 'user'"),
            (ORIGINAL.replace('dbname: "postgres"', 'dbnme: "postgres"', 1), "/etc/x.conf:5: unknown key 'dbnme'"),
            (ORIGINAL.replace('    ip: "172.12.0.101"', '\tip: "x"'), "/etc/x.conf:9: tab"),
            (ORIGINAL + '    ip: "again"\n', "/etc/x.conf:14: 'ip' is given twice"),
            ('servers:\n  - ip: "unterminated\n', "/etc/x.conf:2: unterminated double-quoted value"),
            ('servers:\n  - ip: "a" b\n', "/etc/x.conf:2: text after the closing quote"),
            ("servers:\n  - ip:\n", "/etc/x.conf:2: no value"),
            ("servers:\n  - ip: [a, b]\n", "/etc/x.conf:2: unsupported YAML value"),
            ("servers:\n  - ip: a\n     port: 1\n", "/etc/x.conf:3: the keys of a server are not aligned"),
            ("servers:\n  - ip: a\n - ip: b\n", "/etc/x.conf:3: the list items are not aligned"),
            ("servers:\n  ip: a\n", "/etc/x.conf:2: expected 'servers:' or a list item"),
            ("servers: a\n", "/etc/x.conf:1: 'servers' must be a list"),
            ("servers:\n", "/etc/x.conf:1: 'servers' lists no server"),
            ("servers: []\n", "/etc/x.conf:1: 'servers' lists no server"),
            ("servers: []\n  - ip: a\n", "/etc/x.conf:2: 'servers: []' is already an empty list"),
            ("# nothing\n", "/etc/x.conf: no 'servers:' list"),
            ("  - ip: a\n", "/etc/x.conf:1: a list item before 'servers:'"),
            (ORIGINAL + "servers:\n", "/etc/x.conf:14: 'servers' is given twice"),
            ("servers:\n  - ip a\n", "/etc/x.conf:2: expected 'key: value'"),
        ]
        for text, want in cases:
            with self.subTest(want=want):
                self.assertIn(want, self.error(text))

    def test_read_conf_warns_when_others_may_read_it(self):
        log = pg.Log("opengauss_sli")
        with tempfile.TemporaryDirectory() as d:
            path = os.path.join(d, "pg_stat_probe.conf")
            with open(path, "w") as f:
                f.write(ORIGINAL)
            for mode, warned in ((0o600, False), (0o640, True), (0o644, True)):
                os.chmod(path, mode)
                out = io.StringIO()
                with contextlib.redirect_stdout(out):
                    self.assertEqual(len(pg.read_conf(path, log)), 2)
                self.assertEqual("[WARN] opengauss_sli: %s holds passwords but its mode is %04o" % (path, mode) in out.getvalue(), warned, out.getvalue())
            missing = os.path.join(d, "nope.conf")
            with self.assertRaises(pg.ConfError) as cm:
                pg.read_conf(missing, log)
            self.assertIn("%s: cannot read the credentials file: No such file" % missing, str(cm.exception))


class Tps(unittest.TestCase):
    def test_committed_transactions_per_measured_second(self):
        self.assertIsNone(pg.sli_tps(None, 10, 5.0), "first poll: no record")
        self.assertEqual(pg.sli_tps((10, 5.0), 47, 10.0), 7.4)
        self.assertEqual(pg.sli_tps((10, 5.0), 10, 15.0), 0.0)
        self.assertIsNone(pg.sli_tps((10, 5.0), 3, 10.0), "counter reset: no record")
        self.assertIsNone(pg.sli_tps((10, 5.0), 12, 5.0), "no time elapsed")


TCP = """  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:1538 00000000:0000 0A 00000000:00000000 00:00000000 00000000   101        0 4242 1 0 100 0 0 10 0
   1: 00000000:0016 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 17 1 0 100 0 0 10 0
   2: 0100007F:1538 0100007F:D2F0 01 00000000:00000000 00:00000000 00000000   101        0 999 1 0 20 4 30 10 -1
"""
TCP6 = """  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000000000000000000001000000:1539 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000   101        0 5151 1 0 100 0 0 10 0
"""


class ServerProcess(unittest.TestCase):
    def test_proc_net_tcp_listening_sockets(self):
        self.assertEqual(
            [(str(a), p, i) for a, p, i in pg.parse_proc_net_tcp(TCP)],
            [("127.0.0.1", 5432, 4242), ("0.0.0.0", 22, 17)],
        )
        self.assertEqual([(str(a), p, i) for a, p, i in pg.parse_proc_net_tcp(TCP6)], [("::1", 5433, 5151)])

    def fake_proc(self, d):
        os.makedirs(os.path.join(d, "net"))
        with open(os.path.join(d, "net", "tcp"), "w") as f:
            f.write(TCP)
        with open(os.path.join(d, "net", "tcp6"), "w") as f:
            f.write(TCP6)
        for pid, links in ((700, ["socket:[4242]", "/dev/null"]), (650, ["pipe:[1]"]), (900, ["socket:[4242]"]),
                           (800, ["socket:[5151]"]), (1, ["socket:[17]"])):
            fd = os.path.join(d, str(pid), "fd")
            os.makedirs(fd)
            for n, target in enumerate(links):
                os.symlink(target, os.path.join(fd, str(n)))
        os.makedirs(os.path.join(d, "self"))

    def test_tgid_of_the_listening_process(self):
        with tempfile.TemporaryDirectory() as d:
            self.fake_proc(d)
            self.assertEqual(pg.server_tgid("127.0.0.1", 5432, d), 700, "the lowest pid holding the socket")
            self.assertEqual(pg.server_tgid("::1", 5433, d), 800)
            self.assertEqual(pg.server_tgid("10.1.2.3", 22, d), 1, "a socket on 0.0.0.0 takes every address")
            self.assertEqual(pg.server_tgid("10.1.2.3", 5432, d), 0, "bound to another address")
            self.assertEqual(pg.server_tgid("127.0.0.1", 5499, d), 0, "nobody listens")
            self.assertEqual(pg.server_tgid("/var/run/postgresql", 5432, d), 0, "a socket directory")


if __name__ == "__main__":
    unittest.main()
