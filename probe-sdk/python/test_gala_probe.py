"""Unit tests of gala_probe (standard library unittest).

Run from the repository root:  python3 -m unittest discover -s probe-sdk/python -v
"""

import contextlib
import io
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)

import gala_probe  # noqa: E402

SDK_ECHO_META = os.path.join(ROOT, "tests", "probes", "sdk_echo.meta")
SDK_ECHO_PY = os.path.join(ROOT, "tests", "probes", "sdk_echo.py")
EXAMPLE_META = os.path.join(ROOT, "probes", "example", "example_probe.meta")

ENV_VARS = ("GALA_GOPHER_IPC_FD", "GALA_GOPHER_IPC_ENCODING", "GALA_GOPHER_PROBE_NAME",
            "GALA_GOPHER_META", "GALA_GOPHER_CONFIG")


class CleanEnv(unittest.TestCase):
    """Each test starts without the GALA_GOPHER_* variables and gets them back afterwards."""

    def setUp(self):
        saved = dict((k, os.environ[k]) for k in ENV_VARS if k in os.environ)
        for k in ENV_VARS:
            os.environ.pop(k, None)

        def restore():
            for k in ENV_VARS:
                os.environ.pop(k, None)
            os.environ.update(saved)
        self.addCleanup(restore)

    def connect(self, **kwargs):
        probe = gala_probe.connect(**kwargs)
        self.addCleanup(probe.close)
        return probe


@contextlib.contextmanager
def captured_stderr():
    saved, sys.stderr = sys.stderr, io.StringIO()
    try:
        yield sys.stderr
    finally:
        sys.stderr = saved


class FdCapture(object):
    """Redirects fd 1 into a temporary file while active."""

    def __enter__(self):
        sys.stdout.flush()
        self.tmp = tempfile.TemporaryFile()
        self.saved = os.dup(1)
        os.dup2(self.tmp.fileno(), 1)
        return self

    def text(self):
        size = os.fstat(self.tmp.fileno()).st_size
        return os.pread(self.tmp.fileno(), size, 0).decode("utf-8")

    def __exit__(self, *exc):
        sys.stdout.flush()
        os.dup2(self.saved, 1)
        os.close(self.saved)
        self.final = self.text()
        self.tmp.close()
        return False


class FakeDaemon(object):
    """The daemon's end of a control socket pair."""

    def __init__(self):
        self.ours, self.theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        self.buf = b""

    def send(self, data):
        self.ours.sendall(data)

    def send_config(self, **config):
        self.send((json.dumps({"config": config}) + "\n").encode())

    def messages(self, count, timeout=5.0):
        deadline = time.monotonic() + timeout
        out = []
        while len(out) < count:
            while b"\n" not in self.buf:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError("got %d of %d messages: %r" % (len(out), count, out))
                self.ours.settimeout(remaining)
                chunk = self.ours.recv(65536)
                if not chunk:
                    raise AssertionError("channel closed after %r" % out)
                self.buf += chunk
            line, self.buf = self.buf.split(b"\n", 1)
            out.append(json.loads(line.decode()))
        return out

    def nothing_more(self):
        self.ours.setblocking(False)
        try:
            data = self.ours.recv(65536)
        except BlockingIOError:
            data = b""
        finally:
            self.ours.setblocking(True)
        return self.buf + data == b""

    def close(self):
        self.ours.close()
        self.theirs.close()


# ---------------------------------------------------------------------------------------------


class ConfigNormalisation(unittest.TestCase):
    def test_camel_case_with_omitted_defaults_and_int64_strings(self):
        text = json.dumps({
            "probeName": "custom_a", "seq": "18446744073709551615", "changeFlags": 2,
            "subitems": ["tcp_abnormal"], "subitemMask": "4",
            "snooperMode": "SNOOPER_MODE_BLACKLIST",
            "params": {"reportPeriod": 5, "supportSsl": True, "l7Protocol": ["http", "dns"],
                       "l7ProbeProtoFlags": 3, "devName": "eth0", "cadvisorPort": "8083"},
            "snoopers": [{"process": {"pid": 42, "comm": "nginx", "containerId": "c1"}},
                         {"container": {"id": "abc", "podName": "p", "cpucgInode":
                                        "12345678901234"}},
                         {"process": {"pid": 7}}, {}],
            "customLabels": {"team": "a"},
            "custom": {"subitems": ["s1", "s2"], "params": {"level": "3"}},
        })
        cfg = gala_probe.parse_config(text)
        self.assertEqual(cfg.probe_name, "custom_a")
        self.assertEqual(cfg.seq, 2 ** 64 - 1)
        self.assertEqual(cfg.change_flags, gala_probe.PARAMS_CHG)
        self.assertEqual(cfg.subitems, ("tcp_abnormal",))
        self.assertTrue(cfg.has_subitem("tcp_abnormal"))
        self.assertTrue(cfg.has_subitem("s2"))
        self.assertFalse(cfg.has_subitem("nope"))
        self.assertEqual(cfg.subitem_mask, 4)
        self.assertEqual(cfg.snooper_mode, "blacklist")
        p = cfg.params
        self.assertEqual(p.report_period, 5)
        self.assertTrue(p.support_ssl)
        self.assertEqual(p.l7_protocol, ("http", "dns"))
        self.assertEqual(p.l7_probe_proto_flags, 3)
        self.assertEqual(p.dev_name, "eth0")
        self.assertEqual(p.cadvisor_port, 8083)
        # Omitted = proto3 defaults.
        self.assertEqual(p.sample_period, 0)
        self.assertFalse(p.report_event)
        self.assertEqual(p.pyroscope_server, "")
        self.assertEqual(len(p.as_dict()), 31)
        self.assertEqual(cfg.processes, (
            gala_probe.Process(42, "nginx", "", "", "c1", ""),
            gala_probe.Process(7, "", "", "", "", "")))
        self.assertEqual(cfg.pids, (42, 7))
        self.assertEqual(cfg.containers[0].id, "abc")
        self.assertEqual(cfg.containers[0].pod_name, "p")
        self.assertEqual(cfg.containers[0].cpucg_inode, 12345678901234)
        self.assertEqual(dict(cfg.custom_labels), {"team": "a"})
        self.assertEqual(cfg.custom_subitems, ("s1", "s2"))
        self.assertEqual(dict(cfg.custom_params), {"level": "3"})

    def test_snake_case_enum_numbers_and_int64_numbers(self):
        cfg = gala_probe.parse_config({
            "probe_name": "tcp", "seq": 3, "change_flags": 1, "snooper_mode": 1,
            "params": {"report_period": 60, "sample_period": 100, "ringbuf_map_size": 2,
                       "report_event": True},
            "snoopers": [{"container": {"id": "x", "pod_id": "p1", "cpucg_inode": 99}}],
            "custom_labels": {"a": "b"},
            "custom": {"subitems": [], "params": {}},
        })
        self.assertEqual((cfg.probe_name, cfg.seq, cfg.change_flags), ("tcp", 3, 1))
        self.assertEqual(cfg.snooper_mode, "blacklist")
        self.assertEqual(cfg.params.sample_period, 100)
        self.assertEqual(cfg.params.ringbuf_map_size, 2)
        self.assertTrue(cfg.params.report_event)
        self.assertEqual(cfg.containers[0].pod_id, "p1")
        self.assertEqual(cfg.containers[0].cpucg_inode, 99)
        self.assertEqual(cfg.pids, ())

    def test_empty_config_is_all_defaults(self):
        cfg = gala_probe.parse_config(b"{}")
        self.assertEqual(cfg.seq, 0)
        self.assertEqual(cfg.snooper_mode, "whitelist")
        self.assertEqual(cfg.params, gala_probe.Params())
        self.assertEqual(cfg.custom_params, {})
        self.assertEqual(gala_probe.parse_config('{"snooperMode": 0}').snooper_mode,
                         "whitelist")

    def test_a_whole_daemon_message_is_accepted(self):
        cfg = gala_probe.parse_config('{"config": {"seq": "4"}}')
        self.assertEqual(cfg.seq, 4)

    def test_bad_values_are_refused(self):
        for bad in ('{"seq": "x"}', '{"seq": -1}', '{"changeFlags": 4294967296}',
                    '{"params": {"reportPeriod": true}}', '{"params": {"supportSsl": 1}}',
                    '{"subitems": "a"}', '{"snooperMode": "SNOOPER_MODE_GREYLIST"}',
                    '{"customLabels": {"a": 1}}', '{"probeName": 5}', '[1]', '{"seq": 1.5}',
                    'not json'):
            with self.assertRaises(gala_probe.ConfigError, msg=bad):
                gala_probe.parse_config(bad)

    def test_config_is_read_only(self):
        cfg = gala_probe.parse_config("{}")
        with self.assertRaises(AttributeError):
            cfg.seq = 5
        with self.assertRaises(AttributeError):
            cfg.params.report_period = 5
        with self.assertRaises(TypeError):
            cfg.custom_params["x"] = "y"

    def test_get_by_path(self):
        cfg = gala_probe.parse_config({
            "probeName": "p", "seq": "9", "subitems": ["a", "b"],
            "params": {"reportPeriod": 5, "supportSsl": True, "l7Protocol": ["http", "dns"]},
            "snoopers": [{"process": {"pid": 1}}, {"process": {"pid": 2}}],
            "customLabels": {"k": "v"}, "custom": {"subitems": ["x", "y"],
                                                   "params": {"level": "3"}}})
        self.assertEqual(cfg.get("probe_name"), "p")
        self.assertEqual(cfg.get("seq"), "9")
        self.assertEqual(cfg.get("subitems"), "a b")
        self.assertEqual(cfg.get("snooper_mode"), "whitelist")
        self.assertEqual(cfg.get("params.report_period"), "5")
        self.assertEqual(cfg.get("params.support_ssl"), "true")
        self.assertEqual(cfg.get("params.report_event"), "false")
        self.assertEqual(cfg.get("params.l7_protocol"), "http dns")
        self.assertEqual(cfg.get("pids"), "1 2")
        self.assertEqual(cfg.get("custom.params.level"), "3")
        self.assertEqual(cfg.get("custom.subitems"), "x y")
        self.assertEqual(cfg.get("custom_labels.k"), "v")
        for bad in ("nope", "params.nope", "custom.params.nope", "custom_labels.nope"):
            with self.assertRaises(KeyError):
                cfg.get(bad)


class Offline(CleanEnv):
    def test_defaults(self):
        os.environ["GALA_GOPHER_PROBE_NAME"] = "by_hand"
        probe = self.connect(meta="")
        self.assertTrue(probe.offline)
        self.assertTrue(probe.running)
        cfg = probe.config
        self.assertEqual(cfg.probe_name, "by_hand")
        self.assertEqual((cfg.seq, cfg.change_flags), (1, 3))
        self.assertEqual(cfg.snooper_mode, "whitelist")
        self.assertEqual(cfg.processes, ())
        p = cfg.params
        self.assertEqual((p.report_period, p.sample_period, p.ringbuf_map_size, p.kafka_port),
                         (60, 5000, 1, 9092))
        self.assertEqual((p.latency_thr, p.dev_name, p.report_event, p.svg_period),
                         (0, "", False, 0))

    def test_program_name_without_extension(self):
        saved = sys.argv[0]
        sys.argv[0] = "/opt/probes/my_probe.py"
        try:
            self.assertEqual(gala_probe.offline_config().probe_name, "my_probe")
        finally:
            sys.argv[0] = saved

    def test_gala_gopher_config_overlays_the_defaults(self):
        os.environ["GALA_GOPHER_CONFIG"] = json.dumps({
            "params": {"reportPeriod": 1, "latencyThr": "20"},
            "snoopers": [{"process": {"pid": 5}}],
            "custom": {"subitems": ["a"], "params": {"level": "7"}}})
        cfg = self.connect(meta="").config
        self.assertEqual(cfg.params.report_period, 1)
        self.assertEqual(cfg.params.latency_thr, 20)
        self.assertEqual(cfg.params.sample_period, 5000)  # kept from the defaults
        self.assertEqual(cfg.params.kafka_port, 9092)
        self.assertEqual((cfg.seq, cfg.change_flags), (1, 3))
        self.assertEqual(cfg.pids, (5,))
        self.assertEqual(cfg.custom_subitems, ("a",))
        self.assertEqual(cfg.custom_params["level"], "7")

    def test_gala_gopher_config_from_a_file(self):
        with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
            f.write('{"probe_name": "from_file", "seq": "4", "snooperMode": '
                    '"SNOOPER_MODE_BLACKLIST"}')
        self.addCleanup(os.unlink, f.name)
        os.environ["GALA_GOPHER_CONFIG"] = "@" + f.name
        cfg = gala_probe.offline_config()
        self.assertEqual((cfg.probe_name, cfg.seq, cfg.snooper_mode),
                         ("from_file", 4, "blacklist"))
        self.assertEqual(cfg.params.report_period, 60)

    def test_bad_gala_gopher_config(self):
        os.environ["GALA_GOPHER_CONFIG"] = "{oops"
        with self.assertRaises(gala_probe.ConfigError) as cm:
            gala_probe.connect(meta="")
        self.assertIn("GALA_GOPHER_CONFIG", str(cm.exception))
        os.environ["GALA_GOPHER_CONFIG"] = "@/nonexistent/config.json"
        with self.assertRaises(gala_probe.ConfigError):
            gala_probe.connect(meta="")

    def test_an_unknown_offline_field_is_an_error(self):
        for text, field in (('{"processes": [{"pid": 1}]}', "processes"),
                            ('{"params": {"reportPeriode": 5}}', "reportPeriode"),
                            ('{"snoopers": [{"process": {"tgid": 1}}]}', "tgid")):
            os.environ["GALA_GOPHER_CONFIG"] = text
            with self.assertRaises(gala_probe.ConfigError) as cm:
                gala_probe.offline_config()
            self.assertIn(field, str(cm.exception))
        # The daemon's messages may carry fields of a newer schema.
        cfg = gala_probe.parse_config('{"seq": 2, "newerField": 1}')
        self.assertEqual(cfg.seq, 2)

    def test_wait_times_out_and_stops_on_sigterm(self):
        probe = self.connect(meta="")
        start = time.monotonic()
        self.assertEqual(probe.wait(0.2), "timeout")
        self.assertGreaterEqual(time.monotonic() - start, 0.19)
        timer = threading.Timer(0.2, os.kill, (os.getpid(), signal.SIGTERM))
        timer.start()
        start = time.monotonic()
        self.assertEqual(probe.wait(10), "stop")
        self.assertLess(time.monotonic() - start, 5)
        self.assertFalse(probe.running)
        self.assertEqual(probe.wait(10), "stop")

    def test_signal_outside_wait_is_kept(self):
        probe = self.connect(meta="")
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.01)
        self.assertFalse(probe.running)
        self.assertEqual(probe.wait(10), "stop")

    def test_close_restores_the_signal_handlers(self):
        before = signal.getsignal(signal.SIGTERM)
        probe = gala_probe.connect(meta="")
        self.assertNotEqual(signal.getsignal(signal.SIGTERM), before)
        probe.close()
        self.assertEqual(signal.getsignal(signal.SIGTERM), before)
        self.assertEqual(probe.wait(1), "stop")
        self.assertFalse(probe.running)


class Channel(CleanEnv):
    def setUp(self):
        CleanEnv.setUp(self)
        self.daemon = FakeDaemon()
        self.addCleanup(self.daemon.close)

    def connect_channel(self, **kwargs):
        kwargs.setdefault("meta", "")
        return self.connect(channel=self.daemon.theirs, **kwargs)

    def test_hello_first_config_and_status(self):
        os.environ["GALA_GOPHER_PROBE_NAME"] = "custom_x"
        self.daemon.send_config(probeName="custom_x", seq="1", changeFlags=3,
                                params={"reportPeriod": 5})
        probe = self.connect_channel()
        self.assertFalse(probe.offline)
        self.assertEqual(probe.config.seq, 1)
        self.assertEqual(probe.config.params.report_period, 5)
        hello, status = self.daemon.messages(2)
        self.assertEqual(hello, {"hello": {"sdkVersion": "python-1", "probeName": "custom_x",
                                           "pid": os.getpid()}})
        self.assertEqual(status, {"status": {"level": "LEVEL_INFO", "text": "applied config 1",
                                             "configSeq": "1"}})

    def test_wait_returns_config_timeout_and_stop(self):
        self.daemon.send_config(seq="1", changeFlags=3)
        probe = self.connect_channel()
        self.daemon.messages(2)
        self.assertEqual(probe.wait(0.1), "timeout")
        threading.Timer(0.1, self.daemon.send_config,
                        kwargs={"seq": "2", "changeFlags": 2,
                                "custom": {"params": {"level": "5"}}}).start()
        self.assertEqual(probe.wait(10), "config")
        self.assertEqual(probe.config.seq, 2)
        self.assertEqual(probe.config.change_flags, 2)
        self.assertEqual(probe.config.custom_params["level"], "5")
        self.assertEqual(self.daemon.messages(1), [{"status": {
            "level": "LEVEL_INFO", "text": "applied config 2", "configSeq": "2"}}])
        probe.status("warn", "degraded")
        self.assertEqual(self.daemon.messages(1), [{"status": {
            "level": "LEVEL_WARN", "text": "degraded", "configSeq": "2"}}])
        self.daemon.ours.shutdown(socket.SHUT_WR)
        self.assertEqual(probe.wait(10), "stop")
        self.assertFalse(probe.running)
        self.assertEqual(probe.wait(10), "stop")

    def test_queued_configs_collapse_into_the_newest(self):
        self.daemon.send_config(seq="1", changeFlags=3)
        probe = self.connect_channel()
        self.daemon.messages(2)
        self.daemon.send_config(seq="2", changeFlags=1)
        self.daemon.send_config(seq="3", changeFlags=0, params={"reportPeriod": 7})
        self.daemon.send_config(seq="4", changeFlags=2, params={"reportPeriod": 9})
        time.sleep(0.1)
        self.assertEqual(probe.wait(10), "config")
        self.assertEqual(probe.config.seq, 4)
        self.assertEqual(probe.config.change_flags, 3)
        self.assertEqual(probe.config.params.report_period, 9)
        self.assertEqual(probe.wait(0.1), "timeout")
        self.assertEqual(self.daemon.messages(1)[0]["status"]["configSeq"], "4")
        self.assertTrue(self.daemon.nothing_more())

    def test_configs_queued_before_connect_collapse_too(self):
        self.daemon.send_config(seq="1", changeFlags=3)
        self.daemon.send_config(seq="2", changeFlags=0)
        probe = self.connect_channel()
        self.assertEqual((probe.config.seq, probe.config.change_flags), (2, 3))
        self.assertEqual(probe.wait(0.05), "timeout")

    def test_partial_lines_are_kept_across_reads(self):
        self.daemon.send_config(seq="1")
        probe = self.connect_channel()
        line = (json.dumps({"config": {"seq": "2", "probeName": "split"}}) + "\n").encode()
        self.daemon.send(line[:10])
        self.assertEqual(probe.wait(0.1), "timeout")
        self.daemon.send(line[10:20])
        self.assertEqual(probe.wait(0.1), "timeout")
        self.daemon.send(line[20:] + b"\n\r\n{bad json}\n" + b'{"unknown": {}}\n')
        with captured_stderr() as err:
            self.assertEqual(probe.wait(10), "config")
        self.assertIn("bad control message", err.getvalue())
        self.assertEqual((probe.config.seq, probe.config.probe_name), (2, "split"))
        self.assertEqual(probe.wait(0.1), "timeout")

    def test_no_first_config_within_the_timeout(self):
        start = time.monotonic()
        with captured_stderr() as err:
            probe = self.connect_channel(timeout=0.2)
        self.assertGreaterEqual(time.monotonic() - start, 0.19)
        self.assertIn("no configuration from the daemon within 0.2 s", err.getvalue())
        self.assertEqual(probe.config.seq, 0)
        self.assertEqual(probe.config.params.report_period, 60)
        self.daemon.send_config(seq="1", params={"reportPeriod": 5})
        self.assertEqual(probe.wait(10), "config")
        self.assertEqual(probe.config.params.report_period, 5)

    def test_eof_before_the_first_config_is_stop(self):
        self.daemon.ours.shutdown(socket.SHUT_WR)
        probe = self.connect_channel()
        self.assertFalse(probe.running)
        self.assertEqual(probe.wait(10), "stop")

    def test_config_then_eof(self):
        self.daemon.send_config(seq="1")
        self.daemon.send_config(seq="2")
        self.daemon.ours.shutdown(socket.SHUT_WR)
        probe = self.connect_channel()
        self.assertEqual(probe.config.seq, 2)
        self.assertEqual(probe.wait(10), "stop")

    def test_sigterm_to_self_is_stop(self):
        self.daemon.send_config(seq="1")
        probe = self.connect_channel()
        threading.Timer(0.2, os.kill, (os.getpid(), signal.SIGTERM)).start()
        start = time.monotonic()
        self.assertEqual(probe.wait(10), "stop")
        self.assertLess(time.monotonic() - start, 5)
        self.assertFalse(probe.running)

    def test_wait_flushes_output(self):
        self.daemon.send_config(seq="1")
        probe = self.connect_channel()
        with FdCapture() as out:
            probe.emit("t", "k", 1)
            self.assertEqual(out.text(), "")
            probe.wait(0)
            self.assertEqual(out.text(), "|t|k|1|\n")

    def test_close_ends_the_channel(self):
        self.daemon.send_config(seq="1")
        probe = self.connect_channel()
        self.daemon.messages(2)
        probe.close()
        self.assertEqual(self.daemon.ours.recv(10), b"")
        self.assertEqual(probe.wait(1), "stop")


class Environment(CleanEnv):
    """connect() picking up the channel from GALA_GOPHER_IPC_FD, in a child process."""

    CHILD = (
        "import sys; sys.path.insert(0, %r)\n"
        "import gala_probe\n"
        "try:\n"
        "    p = gala_probe.connect(meta='')\n"
        "except gala_probe.ProbeError as e:\n"
        "    print('ProbeError: %%s' %% e); sys.exit(3)\n"
        "import fcntl, os\n"
        "fd = int(os.environ['GALA_GOPHER_IPC_FD'])\n"
        "print('cloexec', bool(fcntl.fcntl(fd, fcntl.F_GETFD) & fcntl.FD_CLOEXEC))\n"
        "print('seq', p.config.seq, p.config.probe_name)\n"
        "print('wake', p.wait(10))\n"
        "print('seq', p.config.seq)\n"
        "sys.stdout.flush()\n"
        "print('wake', p.wait(10))\n"
    ) % HERE

    def run_child(self, fd, env, pass_fds=()):
        full = dict(os.environ)
        full.update(env)
        return subprocess.Popen([sys.executable, "-c", self.CHILD], env=full,
                                pass_fds=pass_fds, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE)

    def test_channel_from_the_environment(self):
        daemon = FakeDaemon()
        self.addCleanup(daemon.close)
        fd = daemon.theirs.fileno()
        daemon.send_config(seq="1", probeName="envprobe")
        child = self.run_child(fd, {"GALA_GOPHER_IPC_FD": str(fd),
                                    "GALA_GOPHER_IPC_ENCODING": "json",
                                    "GALA_GOPHER_PROBE_NAME": "envprobe"}, (fd,))
        daemon.theirs.close()
        hello, status = daemon.messages(2)
        self.assertEqual(hello["hello"]["probeName"], "envprobe")
        self.assertEqual(hello["hello"]["pid"], child.pid)
        self.assertEqual(status["status"]["configSeq"], "1")
        daemon.send_config(seq="2")
        self.assertEqual(daemon.messages(1)[0]["status"]["configSeq"], "2")
        daemon.ours.close()
        out, err = child.communicate(timeout=10)
        self.assertEqual(child.returncode, 0, err)
        self.assertEqual(out.decode().splitlines(),
                         ["cloexec True", "seq 1 envprobe", "wake config", "seq 2",
                          "wake stop"])

    def test_proto_encoding_is_refused_clearly(self):
        daemon = FakeDaemon()
        self.addCleanup(daemon.close)
        fd = daemon.theirs.fileno()
        child = self.run_child(fd, {"GALA_GOPHER_IPC_FD": str(fd),
                                    "GALA_GOPHER_IPC_ENCODING": "proto"}, (fd,))
        out, _ = child.communicate(timeout=10)
        self.assertEqual(child.returncode, 3)
        self.assertIn('"ipc_encoding": "json"', out.decode())
        self.assertIn("gala-gopher-custom.json", out.decode())

    def test_bad_environment(self):
        os.environ["GALA_GOPHER_IPC_FD"] = "three"
        os.environ["GALA_GOPHER_IPC_ENCODING"] = "json"
        with self.assertRaises(gala_probe.ProbeError):
            gala_probe.connect(meta="")
        os.environ["GALA_GOPHER_IPC_FD"] = "3"
        del os.environ["GALA_GOPHER_IPC_ENCODING"]
        with self.assertRaises(gala_probe.ProbeError):
            gala_probe.connect(meta="")
        os.environ["GALA_GOPHER_IPC_ENCODING"] = "xml"
        with self.assertRaises(gala_probe.ProbeError):
            gala_probe.connect(meta="")

    def test_an_fd_that_is_not_a_unix_stream_socket_is_left_open(self):
        with tempfile.TemporaryFile() as f, \
                socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as dgram, \
                socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
            os.environ["GALA_GOPHER_IPC_ENCODING"] = "json"
            for fd in (f.fileno(), dgram.fileno(), tcp.fileno()):
                os.environ["GALA_GOPHER_IPC_FD"] = str(fd)
                with self.assertRaises(gala_probe.ProbeError):
                    gala_probe.connect(meta="")
                os.fstat(fd)  # still open
            r, w = os.pipe()
            os.close(r)
            os.close(w)
            os.environ["GALA_GOPHER_IPC_FD"] = str(r)
            with self.assertRaises(gala_probe.ProbeError):
                gala_probe.connect(meta="")


class Emit(CleanEnv):
    def test_records_are_buffered_and_rendered(self):
        probe = self.connect(meta="")
        with FdCapture() as out:
            probe.emit("t", "key", 1, 2.5, True, None, "x y", b"raw")
            self.assertEqual(out.text(), "")
            probe.flush()
        self.assertEqual(out.final, "|t|key|1|2.5|1||x y|raw|\n")

    def test_bad_records_raise_and_write_nothing(self):
        probe = self.connect(meta=SDK_ECHO_META)
        good = ("python", "p", "none", "none", 5, 0, 1)
        bad_cases = [
            ("sdk_echo", ("py|thon",) + good[1:]),
            ("sdk_echo", good[:1] + ("a|b",) + good[2:]),
            ("sdk_echo", good[:2] + ("a\nb",) + good[3:]),
            ("sdk_echo", good[:6] + ("1\r",)),
            ("sdk_echo", ("",) + good[1:]),
            ("sdk_echo", (None,) + good[1:]),
            ("other_table", good),
            ("sdk_echo", good[:-1]),
            ("sdk_echo", good + (1,)),
            ("", good),
            ("a|b", good),
        ]
        with FdCapture() as out:
            for table, values in bad_cases:
                with self.assertRaises(gala_probe.RecordError, msg=(table, values)) as cm:
                    probe.emit(table, *values)
                self.assertIsInstance(cm.exception, ValueError)
            probe.flush()
            self.assertEqual(out.text(), "")
            probe.emit("sdk_echo", *good)
            probe.flush()
        self.assertEqual(out.final, "|sdk_echo|python|p|none|none|5|0|1|\n")

    def test_checks_without_meta(self):
        probe = self.connect(meta="")
        self.assertIsNone(probe.tables)
        with FdCapture() as out:
            for table, values in (("t", ("a|b",)), ("t", ("",)), ("t", ()), ("event", ("x",)),
                                  ("log", ("x",)), ("x" * 64, ("k",)), ("t", ("k", "\n"))):
                with self.assertRaises(gala_probe.RecordError):
                    probe.emit(table, *values)
            probe.emit("any_table", "k", "", 3)  # any table, any count; later values may be empty
            probe.flush()
        self.assertEqual(out.final, "|any_table|k||3|\n")

    def test_meta_from_the_environment_and_next_to_the_program(self):
        os.environ["GALA_GOPHER_META"] = EXAMPLE_META + ":" + SDK_ECHO_META
        probe = gala_probe.connect()
        probe.close()
        self.assertEqual(probe.tables, {"example_load": 5, "example_sched": 3, "sdk_echo": 7})
        del os.environ["GALA_GOPHER_META"]
        saved = sys.argv[0]
        try:
            sys.argv[0] = os.path.join(ROOT, "tests", "probes", "sdk_echo.py")
            probe = gala_probe.connect()
            probe.close()
            self.assertEqual(probe.tables, {"sdk_echo": 7})
            sys.argv[0] = os.path.join(ROOT, "tests", "probes", "no_such_probe.py")
            probe = gala_probe.connect()
            probe.close()
            self.assertIsNone(probe.tables)
        finally:
            sys.argv[0] = saved
        os.environ["GALA_GOPHER_META"] = "/nonexistent.meta"
        with self.assertRaises(gala_probe.MetaError):
            gala_probe.connect()

    def test_output_is_flushed_at_64_kib(self):
        probe = self.connect(meta="")
        value = "v" * 1000
        with FdCapture() as out:
            for _ in range(70):
                probe.emit("t", value)
            written = len(out.text())
            self.assertGreaterEqual(written, 64 * 1024)
            self.assertEqual(written % len("|t|%s|\n" % value), 0)
            probe.close()
        self.assertEqual(len(out.final), 70 * len("|t|%s|\n" % value))


class Event(CleanEnv):
    NOW = time.mktime((2026, 12, 1, 19, 40, 38, 0, 0, -1))

    def test_line_and_body(self):
        line = gala_probe.event_line("tcp_link", "1.2.3.4_80", "retrans", "high retrans",
                                     severity="WARN", now=self.NOW)
        self.assertEqual(line, "|event|tcp_link|1.2.3.4_80|retrans|||||||WARN|13|"
                               "Tue Dec  1 19:40:38 2026 WARN Entity(1.2.3.4_80) high retrans|\n")
        line = gala_probe.event_line("proc", "42", "fd", "m", severity="error", pid=42,
                                     comm="nginx", ip="10.0.0.1", container_id="c1",
                                     pod_id="p1", device="sda", now=self.NOW)
        self.assertEqual(line.split("|")[1:14], [
            "event", "proc", "42", "fd", "42", "nginx", "10.0.0.1", "c1", "p1", "sda",
            "ERROR", "17", "Tue Dec  1 19:40:38 2026 ERROR Entity(42) m"])
        for sev, number in (("INFO", 9), ("fatal", 21), (13, 13)):
            fields = gala_probe.event_line("e", "i", "m", "x", severity=sev).split("|")
            self.assertEqual(fields[12], str(number))

    def test_message_is_escaped(self):
        line = gala_probe.event_line("e", "i", "m", "a|b\nc\rd | ok", now=self.NOW)
        self.assertTrue(line.endswith(" WARN Entity(i) a/b c d / ok|\n"), line)
        self.assertEqual(line.count("\n"), 1)
        self.assertEqual(line.count("|"), 14)

    def test_other_fields_are_refused(self):
        probe = self.connect(meta=SDK_ECHO_META)
        good = dict(entity_name="e", entity_id="i", metric="m", message="x")
        bad_cases = [dict(entity_name="a|b"), dict(entity_id="a\nb"), dict(metric="m\r"),
                     dict(comm="a|b"), dict(ip="\n"), dict(container_id="|"),
                     dict(pod_id="\r"), dict(device="d|"), dict(entity_name=""),
                     dict(entity_id=""), dict(metric=""), dict(severity="LOUD"),
                     dict(severity=10), dict(pid=-1), dict(pid="x")]
        with FdCapture() as out:
            for change in bad_cases:
                args = dict(good)
                args.update(change)
                with self.assertRaises(gala_probe.RecordError, msg=change):
                    probe.event(**args)
            probe.flush()
            self.assertEqual(out.text(), "")
            probe.event(**good)  # events need no meta table
            probe.flush()
        self.assertTrue(out.final.startswith("|event|e|i|m|"), out.final)


class Meta(unittest.TestCase):
    def test_repository_meta_files(self):
        self.assertEqual(gala_probe.load_meta(EXAMPLE_META),
                         {"example_load": 5, "example_sched": 3})
        self.assertEqual(gala_probe.load_meta(SDK_ECHO_META), {"sdk_echo": 7})
        self.assertEqual(gala_probe.load_meta([EXAMPLE_META, SDK_ECHO_META]),
                         {"example_load": 5, "example_sched": 3, "sdk_echo": 7})
        # Every meta file shipped in the repository parses.
        for top in ("probes", "tests", "meta"):
            for dirpath, _, files in os.walk(os.path.join(ROOT, top)):
                for name in files:
                    if name.endswith(".meta"):
                        gala_probe.load_meta(os.path.join(dirpath, name))

    def test_libconfig_syntax(self):
        text = r'''
            # hash comment
            // line comment
            /* block
               comment */
            version = "1." "0"   "0";
            other: { a = 1; b = 0x10; b2 = -16; c = 1.5e3; d = TRUE; e = [1, 2, 3,]; f = 12L,
                     g = "q\"uote\\ \x41\n"; h = (); i = .5; j = 1LL; k = ( { }, "s", [ ] ) }
            measurements = (
                { table_name = "t1"; entity_name: "e"; fields = ({ name = "k"; type = "key"; },
                  { name = "v"; type = "gauge"; description = "multi"
                    "part"; }) },
                { table_name: "t2", entity_name: "e2", fields: ( { name: "k", type: "key" }, ), },
            )
        '''
        self.assertEqual(gala_probe.parse_meta(text), {"t1": 2, "t2": 1})
        self.assertEqual(gala_probe.parse_meta('version="1"; measurements=();'), {})

    def error(self, text):
        with self.assertRaises(gala_probe.MetaError) as cm:
            gala_probe.parse_meta(text, "bad.meta")
        return cm.exception

    def test_syntax_errors_name_file_and_line(self):
        cases = [
            ('version = "1";\nmeasurements = (\n{ table_name = }\n);', 3),
            ('version = "1";\n\nmeasurements = (\n', 4),
            ('version = "1";\n/* open', 2),
            ('version = "1";\nx = "unterminated\n\n', 2),
            ('version = "1";\nx = 12ab;', 2),
            ('version = "1";\n\nx y;', 3),
            ('version = "1";\nx = 1;\nx = 2;', 3),
            ('version = "1";\nx = [ { } ];', 2),
            ('version = "1";\n@include "other.meta"', 2),
            ('version = "1";\nx = $;', 2),
            ('version = "1";\nx = (1 2);', 2),
            ('version = "1";\ng = { a = 1;\n', 3),
        ]
        for text, line in cases:
            e = self.error(text)
            self.assertEqual(e.line, line, "%r: %s" % (text, e))
            self.assertTrue(str(e).startswith("bad.meta:%d: " % line), str(e))

    def test_structure_errors(self):
        cases = [
            ('measurements = ();', 1, 'missing required setting "version"'),
            ('version = 1; measurements = ();', 1, '"version" must be a string'),
            ('version = "1";', 1, '"measurements"'),
            ('version = "1";\nmeasurements = { };', 2, "must be a list"),
            ('version = "1";\nmeasurements = ( 1 );', 2, "must be a group"),
            ('version = "1";\nmeasurements = (\n{ entity_name = "e"; fields = ({}); });', 3,
             '"table_name"'),
            ('version = "1";\nmeasurements = ({ table_name = "t"; fields = ({}); });', 2,
             '"entity_name"'),
            ('version = "1";\nmeasurements = ({ table_name = "t"; entity_name = "e";\n'
             'fields = (); });', 3, "empty"),
            ('version = "1";\nmeasurements = ({ table_name = "t"; entity_name = "e";\n'
             'fields = (1); });', 3, "must be a group"),
            ('version = "1";\nmeasurements = ({ table_name = "t"; entity_name = "e";\n'
             'fields = ({}); },\n{ table_name = "t"; entity_name = "e"; fields = ({}); });', 4,
             'duplicate table "t"'),
        ]
        for text, line, words in cases:
            e = self.error(text)
            self.assertEqual(e.line, line, "%r: %s" % (text, e))
            self.assertIn(words, str(e))

    def test_file_errors(self):
        with self.assertRaises(gala_probe.MetaError) as cm:
            gala_probe.load_meta("/nonexistent/x.meta")
        self.assertIn("/nonexistent/x.meta", str(cm.exception))
        with tempfile.NamedTemporaryFile("w", suffix=".meta", delete=False) as f:
            f.write('version = "1";\n\nmeasurements = (\n  { table_name = 5; } );\n')
        self.addCleanup(os.unlink, f.name)
        with self.assertRaises(gala_probe.MetaError) as cm:
            gala_probe.load_meta(f.name)
        self.assertTrue(str(cm.exception).startswith(f.name + ":4: "), str(cm.exception))
        with self.assertRaises(gala_probe.MetaError) as cm:
            gala_probe.load_meta([SDK_ECHO_META, SDK_ECHO_META])
        self.assertIn("sdk_echo", str(cm.exception))


class SdkEcho(CleanEnv):
    """The conformance probe tests/probes/sdk_echo.py over a fake daemon at fd 3."""

    def start(self, env, channel=None):
        full = dict(os.environ)
        full.update(env)
        preexec = None
        if channel is not None:
            fd = channel.fileno()

            def preexec():
                os.dup2(fd, 3)  # dup2 leaves close-on-exec off
        # close_fds would close fd 3 after preexec_fn; the parent's fds are close-on-exec.
        child = subprocess.Popen([sys.executable, SDK_ECHO_PY], env=full, preexec_fn=preexec,
                                 close_fds=False, stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE)
        self.addCleanup(lambda: child.poll() is None and child.kill())
        return child

    def test_under_a_fake_daemon(self):
        daemon = FakeDaemon()
        self.addCleanup(daemon.close)
        daemon.send_config(probeName="sdk_echo_py", seq="1", changeFlags=3,
                           params={"reportPeriod": 1},
                           snoopers=[{"process": {"pid": 11}}, {"process": {"pid": 12}}],
                           custom={"subitems": ["a", "b"], "params": {"level": "4"}})
        child = self.start({"GALA_GOPHER_IPC_FD": "3", "GALA_GOPHER_IPC_ENCODING": "json",
                            "GALA_GOPHER_PROBE_NAME": "sdk_echo_py"}, daemon.theirs)
        daemon.theirs.close()
        hello, status = daemon.messages(2)
        self.assertEqual(hello["hello"]["sdkVersion"], "python-1")
        self.assertEqual(status["status"]["configSeq"], "1")
        event = child.stdout.readline().decode()
        fields = event.split("|")
        self.assertEqual(fields[1:5], ["event", "sdk_echo", "python-1", "seq"])
        self.assertEqual(fields[11:13], ["WARN", "13"])
        self.assertTrue(fields[13].endswith(" WARN Entity(python-1) applied config 1 with "
                                            "level 4 / ok"), event)
        self.assertEqual(child.stdout.readline().decode(),
                         "|sdk_echo|python|sdk_echo_py|a,b|11,12|1|4|1|\n")
        daemon.send_config(probeName="sdk_echo_py", seq="2", changeFlags=2,
                           params={"reportPeriod": 1})
        self.assertEqual(daemon.messages(1)[0]["status"]["configSeq"], "2")
        event = child.stdout.readline().decode()
        self.assertIn("Entity(python-2) applied config 2 with level 0 / ok|", event)
        self.assertEqual(child.stdout.readline().decode(),
                         "|sdk_echo|python|sdk_echo_py|none|none|1|0|2|\n")
        # A round later, the same record again.
        self.assertEqual(child.stdout.readline().decode(),
                         "|sdk_echo|python|sdk_echo_py|none|none|1|0|2|\n")
        child.send_signal(signal.SIGTERM)
        _, err = child.communicate(timeout=10)
        self.assertEqual(child.returncode, 0, err.decode())

    def test_offline(self):
        child = self.start({"GALA_GOPHER_CONFIG": '{"params":{"reportPeriod":1}}'})
        self.assertIn("Entity(python-1) applied config 1 with level 0 / ok|",
                      child.stdout.readline().decode())
        record = "|sdk_echo|python|sdk_echo|none|none|1|0|1|\n"
        self.assertEqual(child.stdout.readline().decode(), record)
        self.assertEqual(child.stdout.readline().decode(), record)
        child.send_signal(signal.SIGINT)
        _, err = child.communicate(timeout=10)
        self.assertEqual(child.returncode, 0, err.decode())

    def test_daemon_closing_the_channel_stops_it(self):
        daemon = FakeDaemon()
        self.addCleanup(daemon.close)
        daemon.send_config(seq="1", params={"reportPeriod": 60})
        child = self.start({"GALA_GOPHER_IPC_FD": "3", "GALA_GOPHER_IPC_ENCODING": "json"},
                           daemon.theirs)
        daemon.theirs.close()
        daemon.messages(2)
        daemon.ours.close()
        out, err = child.communicate(timeout=10)
        self.assertEqual(child.returncode, 0, err.decode())
        # The daemon's config names no probe here: the label is empty.
        self.assertEqual(out.decode().splitlines()[1], "|sdk_echo|python||none|none|60|0|1|")


if __name__ == "__main__":
    unittest.main()
