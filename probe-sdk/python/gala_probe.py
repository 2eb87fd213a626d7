"""Python SDK for gala-gopher probes (standard library only, Python >= 3.6).

A probe is a program the gala-gopher daemon starts.  It reads its configuration from the
control socket at fd 3, writes records ``|table|v1|...|vN|`` and events to stdout, and exits
when the daemon asks it to stop::

    import gala_probe

    probe = gala_probe.connect()
    while True:
        cfg = probe.config
        probe.emit("my_table", "key", 42)
        if probe.wait(cfg.params.report_period) == "stop":
            break
    probe.close()

The contract shared with the Rust, C and shell SDKs is ``probe-sdk/API.md``.  Without
``GALA_GOPHER_IPC_FD`` in the environment the SDK runs offline: the configuration is the
defaults overlaid with the proto3-JSON ``ProbeConfig`` in ``GALA_GOPHER_CONFIG`` (the text, or
``@path`` of a file holding it).
"""

import collections
import errno
import fcntl
import json
import os
import select
import signal
import socket
import sys
import threading
import time
import types

__version__ = "1"
SDK_VERSION = "python-" + __version__

__all__ = [
    "connect", "Probe", "Config", "Params", "Process", "Container",
    "ProbeError", "RecordError", "MetaError", "ConfigError",
    "parse_config", "offline_config", "parse_meta", "load_meta", "record_line", "event_line",
    "SNOOPER_CHG", "PARAMS_CHG", "TIMEOUT", "CONFIG", "STOP", "SDK_VERSION",
]

# change_flags bits.
SNOOPER_CHG = 0x1
PARAMS_CHG = 0x2

# What wait() returns.
TIMEOUT = "timeout"
CONFIG = "config"
STOP = "stop"

ENV_IPC_FD = "GALA_GOPHER_IPC_FD"
ENV_IPC_ENCODING = "GALA_GOPHER_IPC_ENCODING"
ENV_PROBE_NAME = "GALA_GOPHER_PROBE_NAME"
ENV_META = "GALA_GOPHER_META"
ENV_CONFIG = "GALA_GOPHER_CONFIG"

# Output is written to stdout once this much is pending.
FLUSH_THRESHOLD = 64 * 1024
# Largest control-channel frame (JSON line) accepted, as the daemon's limit.
MAX_FRAME = 16 * 1024 * 1024
# How long connect() waits for the first configuration.
FIRST_CONFIG_TIMEOUT = 5.0

_SEVERITIES = {"INFO": 9, "WARN": 13, "ERROR": 17, "FATAL": 21}
_LEVELS = {"info": "LEVEL_INFO", "warn": "LEVEL_WARN", "error": "LEVEL_ERROR"}
_FORBIDDEN = ("|", "\n", "\r")


class ProbeError(RuntimeError):
    """The control channel cannot be used (bad environment, wrong encoding, bad fd)."""


class RecordError(ValueError):
    """A record or event was refused; nothing was written."""


class MetaError(ValueError):
    """A meta file cannot be read or parsed; the message starts with ``file:line:``."""

    def __init__(self, path, line, message):
        self.path = path
        self.line = line
        self.message = message
        ValueError.__init__(self, "%s:%d: %s" % (path, line, message))


class ConfigError(ValueError):
    """A configuration (from the daemon or GALA_GOPHER_CONFIG) does not fit the schema."""


def _warn(text):
    try:
        sys.stderr.write("gala_probe: %s\n" % text)
        sys.stderr.flush()
    except Exception:  # stderr may be closed; a warning is not worth dying for
        pass


# ---------------------------------------------------------------------------------------------
# Configuration
# ---------------------------------------------------------------------------------------------

# (name, kind) of every field of the proto `Params`, in field-number order.  The names are the
# REST keys (API.md, "One vocabulary"); framework/tests/param_vocabulary.rs holds this list
# to the proto and to the daemon's REST table.
_PARAMS_FIELDS = (
    ("report_period", "u32"),
    ("sample_period", "u32"),
    ("latency_thr", "u32"),
    ("offline_thr", "u32"),
    ("drops_thr", "u32"),
    ("kafka_port", "u32"),
    ("report_event", "bool"),
    ("ringbuf_map_size", "u32"),
    ("report_cport", "bool"),
    ("metrics_flags", "u32"),
    ("env_flags", "u32"),
    ("support_ssl", "bool"),
    ("res_upper_thr", "u32"),
    ("res_lower_thr", "u32"),
    ("continuous_sampling", "bool"),
    ("multi_instance", "bool"),
    ("native_stack", "bool"),
    ("cluster_ip_backend", "u32"),
    ("dev_name", "str"),
    ("elf_path", "str"),
    ("l7_probe_proto_flags", "u32"),
    ("l7_protocol", "strs"),
    ("svg_period", "u32"),
    ("perf_sample_period", "u32"),
    ("pyroscope_server", "str"),
    ("output_dir", "str"),
    ("flame_dir", "str"),
    ("cadvisor_port", "u32"),
    ("profiling_channel", "str"),
    ("min_exec_dur", "u32"),
    ("min_aggr_dur", "u32"),
)
_PARAMS_KINDS = dict(_PARAMS_FIELDS)
_ZERO = {"u32": 0, "u64": 0, "bool": False, "str": "", "strs": ()}

# Offline defaults that differ from the proto3 zero values (API.md).
_OFFLINE_PARAMS = {
    "report_period": 60,
    "sample_period": 5000,
    "ringbuf_map_size": 1,
    "kafka_port": 9092,
}

_PROCESS_FIELDS = (
    ("pid", "u32"), ("comm", "str"), ("cmdline", "str"), ("exe", "str"),
    ("container_id", "str"), ("pod_id", "str"),
)
_CONTAINER_FIELDS = (
    ("id", "str"), ("name", "str"), ("pod_id", "str"), ("pod_name", "str"), ("image", "str"),
    ("cpucg_inode", "u64"), ("libc_path", "str"), ("libssl_path", "str"),
)

Process = collections.namedtuple("Process", [n for n, _ in _PROCESS_FIELDS])
Process.__doc__ = "A process selected by a snooper: pid, comm, cmdline, exe, container_id, pod_id."
Container = collections.namedtuple("Container", [n for n, _ in _CONTAINER_FIELDS])
Container.__doc__ = ("A container selected by a snooper: id, name, pod_id, pod_name, image, "
                     "cpucg_inode, libc_path, libssl_path.")


def _camel(name):
    """The proto3 JSON name of a snake_case field (``report_period`` -> ``reportPeriod``)."""
    parts = name.split("_")
    return parts[0] + "".join(p[:1].upper() + p[1:] for p in parts[1:])


def _lookup(obj, name):
    """The value of field `name` in a JSON object, under its camelCase or snake_case name;
    None when absent (a JSON null also means "default" in proto3)."""
    value = obj.get(_camel(name))
    if value is None:
        value = obj.get(name)
    return value


def _has(obj, name):
    return _lookup(obj, name) is not None


def _to_uint(value, bits, where):
    if isinstance(value, bool):
        raise ConfigError("%s: expected an integer, got %r" % (where, value))
    if isinstance(value, int):
        number = value
    elif isinstance(value, float) and value == int(value):
        number = int(value)
    elif isinstance(value, str):
        try:
            number = int(value.strip(), 10)
        except ValueError:
            try:
                as_float = float(value)
            except ValueError:
                raise ConfigError("%s: expected an integer, got %r" % (where, value))
            if as_float != as_float or as_float != int(as_float):
                raise ConfigError("%s: expected an integer, got %r" % (where, value))
            number = int(as_float)
    else:
        raise ConfigError("%s: expected an integer, got %r" % (where, value))
    if number < 0 or number >= (1 << bits):
        raise ConfigError("%s: %d is out of range for uint%d" % (where, number, bits))
    return number


def _to_bool(value, where):
    if isinstance(value, bool):
        return value
    if value in ("true", "false"):
        return value == "true"
    raise ConfigError("%s: expected true or false, got %r" % (where, value))


def _to_str(value, where):
    if isinstance(value, str):
        return value
    raise ConfigError("%s: expected a string, got %r" % (where, value))


def _to_strs(value, where):
    if not isinstance(value, list):
        raise ConfigError("%s: expected a list of strings, got %r" % (where, value))
    return tuple(_to_str(v, "%s[%d]" % (where, i)) for i, v in enumerate(value))


def _to_map(value, where):
    if not isinstance(value, dict):
        raise ConfigError("%s: expected an object of strings, got %r" % (where, value))
    return dict((_to_str(k, where), _to_str(v, "%s.%s" % (where, k))) for k, v in value.items())


def _convert(value, kind, where):
    if kind == "u32":
        return _to_uint(value, 32, where)
    if kind == "u64":
        return _to_uint(value, 64, where)
    if kind == "bool":
        return _to_bool(value, where)
    if kind == "str":
        return _to_str(value, where)
    if kind == "strs":
        return _to_strs(value, where)
    raise AssertionError(kind)


def _object(value, where):
    if not isinstance(value, dict):
        raise ConfigError("%s: expected an object, got %r" % (where, value))
    return value


def _fields_from(obj, spec, where, base=None):
    """Converts the fields of `spec` found in JSON object `obj`; absent ones come from `base`
    or are the proto3 zero value."""
    out = {}
    for name, kind in spec:
        value = _lookup(obj, name)
        if value is None:
            out[name] = base[name] if base is not None else _ZERO[kind]
        else:
            out[name] = _convert(value, kind, "%s.%s" % (where, name))
    return out


class _Frozen(object):
    """Read-only attributes once constructed."""

    __slots__ = ()

    def __setattr__(self, name, value):
        raise AttributeError("%s is read-only" % type(self).__name__)

    def __delattr__(self, name):
        raise AttributeError("%s is read-only" % type(self).__name__)

    def _init(self, name, value):
        object.__setattr__(self, name, value)


class Params(_Frozen):
    """All fields of the proto ``Params`` as snake_case attributes, defaults filled in."""

    __slots__ = tuple(n for n, _ in _PARAMS_FIELDS)
    _fields = __slots__

    def __init__(self, **values):
        for name, kind in _PARAMS_FIELDS:
            self._init(name, values.pop(name, _ZERO[kind]))
        if values:
            raise TypeError("unknown params: %s" % ", ".join(sorted(values)))

    def as_dict(self):
        """The parameters as a dict, snake_case names."""
        return dict((n, getattr(self, n)) for n in self._fields)

    def __eq__(self, other):
        return isinstance(other, Params) and self.as_dict() == other.as_dict()

    def __ne__(self, other):
        return not self == other

    __hash__ = None

    def __repr__(self):
        return "Params(%s)" % ", ".join("%s=%r" % kv for kv in self.as_dict().items())


def _render(value):
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (tuple, list)):
        return " ".join(_render(v) for v in value)
    return str(value)


class Config(_Frozen):
    """The latest complete configuration snapshot, read-only.

    Attributes: ``probe_name``, ``seq``, ``change_flags``, ``subitems`` (tuple of names),
    ``subitem_mask``, ``snooper_mode`` (``"whitelist"``/``"blacklist"``), ``params``
    (:class:`Params`), ``processes`` (tuple of :class:`Process`), ``containers`` (tuple of
    :class:`Container`), ``pids`` (tuple of the processes' pids), ``custom_labels`` (mapping),
    ``custom_subitems`` (tuple), ``custom_params`` (mapping label -> value).
    """

    __slots__ = ("probe_name", "seq", "change_flags", "subitems", "subitem_mask",
                 "snooper_mode", "params", "processes", "containers", "pids",
                 "custom_labels", "custom_subitems", "custom_params")

    def __init__(self, probe_name="", seq=0, change_flags=0, subitems=(), subitem_mask=0,
                 snooper_mode="whitelist", params=None, processes=(), containers=(),
                 custom_labels=None, custom_subitems=(), custom_params=None):
        if snooper_mode not in ("whitelist", "blacklist"):
            raise ValueError("snooper_mode must be 'whitelist' or 'blacklist'")
        self._init("probe_name", probe_name)
        self._init("seq", seq)
        self._init("change_flags", change_flags)
        self._init("subitems", tuple(subitems))
        self._init("subitem_mask", subitem_mask)
        self._init("snooper_mode", snooper_mode)
        self._init("params", params if params is not None else Params())
        self._init("processes", tuple(processes))
        self._init("containers", tuple(containers))
        self._init("pids", tuple(p.pid for p in self.processes))
        self._init("custom_labels", types.MappingProxyType(dict(custom_labels or {})))
        self._init("custom_subitems", tuple(custom_subitems))
        self._init("custom_params", types.MappingProxyType(dict(custom_params or {})))

    def has_subitem(self, name):
        """Whether sub-item `name` is enabled (built-in or custom)."""
        return name in self.subitems or name in self.custom_subitems

    def replace(self, **changes):
        """A copy with some attributes changed (``pids`` follows ``processes``)."""
        values = dict((n, getattr(self, n)) for n in self.__slots__ if n != "pids")
        values.update(changes)
        return Config(**values)

    def get(self, path):
        """One value by path as text, as ``get`` in the other SDKs: ``probe_name``, ``seq``,
        ``change_flags``, ``subitems``, ``subitem_mask``, ``snooper_mode``,
        ``params.<name>``, ``pids``, ``custom.params.<label>``, ``custom.subitems``,
        ``custom_labels.<key>``.  Lists are space-separated, booleans ``true``/``false``.
        Raises KeyError for an unknown path."""
        simple = ("probe_name", "seq", "change_flags", "subitems", "subitem_mask",
                  "snooper_mode", "pids")
        if path in simple:
            return _render(getattr(self, path))
        if path == "custom.subitems":
            return _render(self.custom_subitems)
        if path.startswith("params.") and path[7:] in _PARAMS_KINDS:
            return _render(getattr(self.params, path[7:]))
        if path.startswith("custom.params.") and path[14:] in self.custom_params:
            return self.custom_params[path[14:]]
        if path.startswith("custom_labels.") and path[14:] in self.custom_labels:
            return self.custom_labels[path[14:]]
        raise KeyError("unknown config path %r" % path)

    def as_dict(self):
        """The snapshot as plain Python data (snake_case names)."""
        return dict([
            ("probe_name", self.probe_name), ("seq", self.seq),
            ("change_flags", self.change_flags), ("subitems", list(self.subitems)),
            ("subitem_mask", self.subitem_mask), ("snooper_mode", self.snooper_mode),
            ("params", self.params.as_dict()),
            ("processes", [p._asdict() for p in self.processes]),
            ("containers", [c._asdict() for c in self.containers]),
            ("pids", list(self.pids)), ("custom_labels", dict(self.custom_labels)),
            ("custom_subitems", list(self.custom_subitems)),
            ("custom_params", dict(self.custom_params)),
        ])

    def __eq__(self, other):
        return isinstance(other, Config) and self.as_dict() == other.as_dict()

    def __ne__(self, other):
        return not self == other

    __hash__ = None

    def __repr__(self):
        return "Config(%s)" % ", ".join("%s=%r" % kv for kv in self.as_dict().items())


def _snooper_mode(value, where):
    if isinstance(value, bool):
        raise ConfigError("%s: bad snooper mode %r" % (where, value))
    names = {"SNOOPER_MODE_WHITELIST": "whitelist", "SNOOPER_MODE_BLACKLIST": "blacklist",
             "whitelist": "whitelist", "blacklist": "blacklist", 0: "whitelist",
             1: "blacklist"}
    if isinstance(value, str) and value.isdigit():
        value = int(value)
    try:
        return names[value]
    except (KeyError, TypeError):
        raise ConfigError("%s: bad snooper mode %r" % (where, value))


def _snoopers(value, where):
    if not isinstance(value, list):
        raise ConfigError("%s: expected a list, got %r" % (where, value))
    processes, containers = [], []
    for i, item in enumerate(value):
        here = "%s[%d]" % (where, i)
        item = _object(item, here)
        if item.get("process") is not None:
            fields = _fields_from(_object(item["process"], here), _PROCESS_FIELDS, here)
            processes.append(Process(**fields))
        elif item.get("container") is not None:
            fields = _fields_from(_object(item["container"], here), _CONTAINER_FIELDS, here)
            containers.append(Container(**fields))
        # An empty or unknown snooper object (a newer daemon) is skipped.
    return processes, containers


_CONFIG_FIELDS = ("probe_name", "seq", "change_flags", "subitems", "subitem_mask",
                  "snooper_mode", "params", "snoopers", "custom_labels", "custom")


def _check_fields(obj, names, where):
    """A field of `obj` not among `names` (either spelling) is an error."""
    known = set(names) | set(_camel(n) for n in names)
    for key in obj:
        if key not in known:
            raise ConfigError("%s: unknown field %r" % (where, key))


def _check_offline(obj):
    """Refuses fields the schema lacks in an offline configuration: a person wrote it, so an
    unknown field is a typo (``processes`` for ``snoopers``). The daemon's messages may carry
    newer fields and are not checked."""
    if isinstance(obj, dict) and set(obj) == {"config"}:
        obj = obj["config"]
    if not isinstance(obj, dict):
        return
    _check_fields(obj, _CONFIG_FIELDS, "config")
    params = _lookup(obj, "params")
    if isinstance(params, dict):
        _check_fields(params, [n for n, _ in _PARAMS_FIELDS], "params")
    snoopers = _lookup(obj, "snoopers")
    for i, item in enumerate(snoopers if isinstance(snoopers, list) else ()):
        if not isinstance(item, dict):
            continue
        here = "snoopers[%d]" % i
        _check_fields(item, ("process", "container"), here)
        for name, spec in (("process", _PROCESS_FIELDS), ("container", _CONTAINER_FIELDS)):
            if isinstance(item.get(name), dict):
                _check_fields(item[name], [n for n, _ in spec], "%s.%s" % (here, name))
    custom = _lookup(obj, "custom")
    if isinstance(custom, dict):
        _check_fields(custom, ("subitems", "params"), "custom")


def _build_config(obj, base=None):
    """Builds a Config from a decoded proto3-JSON ProbeConfig. Without `base`, absent fields
    take their proto3 zero values (the daemon omits defaults); with `base` (a Config), absent
    fields keep the base values and ``params`` is overlaid field by field (offline mode)."""
    obj = _object(obj, "config")
    if set(obj) == {"config"}:  # a whole DaemonMessage
        obj = _object(obj["config"], "config")
    values = {}
    if base is not None:
        values = dict((n, getattr(base, n)) for n in Config.__slots__ if n != "pids")
    for name, kind in (("probe_name", "str"), ("seq", "u64"), ("change_flags", "u32"),
                       ("subitems", "strs"), ("subitem_mask", "u32")):
        value = _lookup(obj, name)
        if value is not None:
            values[name] = _convert(value, kind, name)
        elif base is None:
            values[name] = _ZERO[kind]
    mode = _lookup(obj, "snooper_mode")
    if mode is not None:
        values["snooper_mode"] = _snooper_mode(mode, "snooper_mode")
    params = _lookup(obj, "params")
    if params is not None:
        base_params = base.params.as_dict() if base is not None else None
        values["params"] = Params(**_fields_from(_object(params, "params"), _PARAMS_FIELDS,
                                                 "params", base_params))
    snoopers = _lookup(obj, "snoopers")
    if snoopers is not None:
        values["processes"], values["containers"] = _snoopers(snoopers, "snoopers")
    labels = _lookup(obj, "custom_labels")
    if labels is not None:
        values["custom_labels"] = _to_map(labels, "custom_labels")
    custom = _lookup(obj, "custom")
    if custom is not None:
        custom = _object(custom, "custom")
        subitems = _lookup(custom, "subitems")
        values["custom_subitems"] = _to_strs(subitems, "custom.subitems") if subitems else ()
        cparams = _lookup(custom, "params")
        values["custom_params"] = _to_map(cparams, "custom.params") if cparams else {}
    return Config(**values)


def parse_config(source):
    """A Config from a ProbeConfig as the daemon sends it: proto3 JSON text (str or bytes) or
    the decoded object; camelCase or snake_case names, 64-bit integers as strings or numbers,
    enums by name or number, omitted fields = proto3 defaults.  Raises ConfigError."""
    if isinstance(source, (bytes, bytearray)):
        source = bytes(source).decode("utf-8")
    if isinstance(source, str):
        try:
            source = json.loads(source)
        except ValueError as e:
            raise ConfigError("configuration is not valid JSON: %s" % e)
    return _build_config(source)


def _program_name():
    argv0 = sys.argv[0] if sys.argv else ""
    if argv0 in ("", "-c", "-m", "-"):
        return "python"
    return os.path.splitext(os.path.basename(argv0))[0] or argv0


def _default_config():
    return Config(probe_name=os.environ.get(ENV_PROBE_NAME) or _program_name(), seq=1,
                  change_flags=SNOOPER_CHG | PARAMS_CHG, params=Params(**_OFFLINE_PARAMS))


def offline_config(text=None):
    """The offline configuration: the defaults of API.md overlaid with the ProbeConfig JSON in
    `text` (default: ``GALA_GOPHER_CONFIG``, the JSON itself or ``@path`` of a file)."""
    if text is None:
        text = os.environ.get(ENV_CONFIG, "")
    where = ENV_CONFIG
    if text.startswith("@"):
        where = text[1:]
        try:
            with open(text[1:], "rb") as f:
                text = f.read().decode("utf-8")
        except (OSError, UnicodeDecodeError) as e:
            raise ConfigError("%s: cannot read %s: %s" % (ENV_CONFIG, where, e))
    base = _default_config()
    if not text.strip():
        return base
    try:
        obj = json.loads(text)
    except ValueError as e:
        raise ConfigError("%s: not valid JSON: %s" % (where, e))
    try:
        _check_offline(obj)
        return _build_config(obj, base)
    except ConfigError as e:
        raise ConfigError("%s: %s" % (where, e))


# ---------------------------------------------------------------------------------------------
# Meta files (a libconfig subset)
# ---------------------------------------------------------------------------------------------

_MAX_DEPTH = 64


class _Node(object):
    __slots__ = ("value", "line")

    def __init__(self, value, line):
        self.value = value
        self.line = line


def _type_name(value):
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "float"
    if isinstance(value, str):
        return "string"
    if isinstance(value, dict):
        return "group"
    return "list"


def _is_name_start(c):
    return ("a" <= c <= "z") or ("A" <= c <= "Z") or c == "*"


def _is_hex2(text):
    return len(text) == 2 and all(c in "0123456789abcdefABCDEF" for c in text)


def _is_name_char(c):
    return _is_name_start(c) or ("0" <= c <= "9") or c in "-_"


class _Lexer(object):
    _PUNCT = {"=": "=", ":": "=", ",": ",", ";": ";", "{": "{", "}": "}", "(": "(", ")": ")",
              "[": "[", "]": "]"}

    def __init__(self, text, path):
        self.src = text
        self.pos = 0
        self.line = 1
        self.path = path
        self.peeked = None

    def error(self, line, message):
        return MetaError(self.path, line, message)

    def _skip(self):
        src, n = self.src, len(self.src)
        while self.pos < n:
            c = src[self.pos]
            if c == "\n":
                self.line += 1
                self.pos += 1
            elif c in " \t\r\f\v":
                self.pos += 1
            elif c == "#" or src.startswith("//", self.pos):
                end = src.find("\n", self.pos)
                self.pos = n if end < 0 else end
            elif src.startswith("/*", self.pos):
                end = src.find("*/", self.pos + 2)
                if end < 0:
                    raise self.error(self.line, "unterminated /* comment")
                self.line += src.count("\n", self.pos, end)
                self.pos = end + 2
            else:
                break

    def peek(self):
        if self.peeked is None:
            self.peeked = self._next()
        return self.peeked

    def next(self):
        tok = self.peek()
        self.peeked = None
        return tok

    def _next(self):
        """Returns (kind, value, line); kind is a punctuation mark, "name", "value" or "eof"."""
        self._skip()
        line = self.line
        if self.pos >= len(self.src):
            return ("eof", None, line)
        c = self.src[self.pos]
        if c in self._PUNCT:
            self.pos += 1
            return (self._PUNCT[c], c, line)
        if c == '"':
            parts = [self._string()]
            # Adjacent string literals are one string.
            while True:
                self._skip()
                if self.pos < len(self.src) and self.src[self.pos] == '"':
                    parts.append(self._string())
                else:
                    break
            return ("value", "".join(parts), line)
        if c == "@":
            if self.src.startswith("@include", self.pos):
                raise self.error(line, "@include is not supported")
            raise self.error(line, "unexpected character '@'")
        if c.isdigit() or c in "+-.":
            return ("value", self._number(line), line)
        if _is_name_start(c):
            start = self.pos
            while self.pos < len(self.src) and _is_name_char(self.src[self.pos]):
                self.pos += 1
            word = self.src[start:self.pos]
            if word.lower() == "true":
                return ("value", True, line)
            if word.lower() == "false":
                return ("value", False, line)
            return ("name", word, line)
        raise self.error(line, "unexpected character %r" % c)

    def _string(self):
        start_line = self.line
        src, n = self.src, len(self.src)
        self.pos += 1
        out = []
        while True:
            if self.pos >= n:
                raise self.error(start_line, "unterminated string")
            c = src[self.pos]
            if c == '"':
                self.pos += 1
                return "".join(out)
            if c == "\\":
                esc = src[self.pos + 1:self.pos + 2]
                simple = {"n": "\n", "r": "\r", "t": "\t", "f": "\f", "\\": "\\", '"': '"'}
                if esc in simple:
                    out.append(simple[esc])
                    self.pos += 2
                elif esc in ("x", "X") and _is_hex2(src[self.pos + 2:self.pos + 4]):
                    out.append(chr(int(src[self.pos + 2:self.pos + 4], 16)))
                    self.pos += 4
                else:
                    # An unknown escape keeps the backslash, as libconfig does.
                    out.append("\\")
                    self.pos += 1
                continue
            if c == "\n":
                self.line += 1
            out.append(c)
            self.pos += 1

    def _number(self, line):
        src, n = self.src, len(self.src)
        i = start = self.pos
        signed = src[i] in "+-"
        if signed:
            i += 1
        if not signed and src.startswith(("0x", "0X"), i):
            j = i + 2
            while j < n and src[j] in "0123456789abcdefABCDEF":
                j += 1
            if j == i + 2:
                raise self.error(line, "invalid hex number")
            value = int(src[i + 2:j], 16)
            if value >= 1 << 64:
                raise self.error(line, "hex integer out of range")
            self.pos = self._long_suffix(j)
            self._check_end(line)
            return value
        int_start = i
        while i < n and src[i].isdigit():
            i += 1
        digits = i - int_start
        is_float = False
        frac = 0
        if i < n and src[i] == ".":
            is_float = True
            i += 1
            f = i
            while i < n and src[i].isdigit():
                i += 1
            frac = i - f
        if digits + frac == 0:
            raise self.error(line, "invalid number")
        if i < n and src[i] in "eE":
            j = i + 1
            if j < n and src[j] in "+-":
                j += 1
            e = j
            while j < n and src[j].isdigit():
                j += 1
            if j == e:
                raise self.error(line, "invalid number exponent")
            is_float = True
            i = j
        text = src[start:i]
        if is_float:
            self.pos = i
            self._check_end(line)
            return float(text)
        self.pos = self._long_suffix(i)
        self._check_end(line)
        value = int(text)
        if not -(1 << 63) <= value < (1 << 63):
            raise self.error(line, "integer %s out of range" % text)
        return value

    def _long_suffix(self, i):
        if self.src.startswith("LL", i):
            return i + 2
        if self.src.startswith("L", i):
            return i + 1
        return i

    def _check_end(self, line):
        if self.pos < len(self.src):
            c = self.src[self.pos]
            if _is_name_char(c) or c == "." or c.isdigit():
                raise self.error(line, "invalid number")


def _describe(tok):
    kind, value, _ = tok
    if kind == "eof":
        return "end of file"
    if kind == "name":
        return 'name "%s"' % value
    if kind == "value":
        return _type_name(value) + (" %r" % value if not isinstance(value, str) else "")
    return "'%s'" % value


def _parse_settings(lx, depth, open_line):
    """Settings up to '}' (open_line set) or end of file; a dict name -> (line, _Node)."""
    group = collections.OrderedDict()
    while True:
        tok = lx.next()
        kind, name, line = tok
        if kind == "eof":
            if open_line is None:
                return group
            raise lx.error(line, "unexpected end of file: group opened on line %d is not closed"
                           % open_line)
        if kind == "}" and open_line is not None:
            return group
        if kind != "name":
            raise lx.error(line, "expected a setting name, found %s" % _describe(tok))
        eq = lx.next()
        if eq[0] != "=":
            raise lx.error(eq[2], "expected '=' or ':' after \"%s\", found %s"
                           % (name, _describe(eq)))
        node = _parse_value(lx, depth)
        if lx.peek()[0] in (";", ","):
            lx.next()
        if name in group:
            raise lx.error(line, 'duplicate setting "%s"' % name)
        group[name] = (line, node)


def _parse_value(lx, depth):
    tok = lx.next()
    kind, value, line = tok
    if kind == "value":
        return _Node(value, line)
    if kind in ("{", "(", "["):
        if depth >= _MAX_DEPTH:
            raise lx.error(line, "nesting deeper than %d levels" % _MAX_DEPTH)
        if kind == "{":
            return _Node(_parse_settings(lx, depth + 1, line), line)
        close = ")" if kind == "(" else "]"
        items = []
        while True:
            if lx.peek()[0] == close:
                lx.next()
                return _Node(items, line)
            if lx.peek()[0] == "eof":
                raise lx.error(lx.peek()[2], "unexpected end of file: %s opened on line %d is "
                               "not closed" % ("list" if kind == "(" else "array", line))
            item = _parse_value(lx, depth + 1)
            if kind == "[" and isinstance(item.value, (dict, list)):
                raise lx.error(item.line, "an array holds scalar values only")
            items.append(item)
            nxt = lx.peek()
            if nxt[0] == ",":
                lx.next()
            elif nxt[0] != close:
                raise lx.error(nxt[2], "expected ',' or '%s', found %s" % (close, _describe(nxt)))
    raise lx.error(line, "expected a value, found %s" % _describe(tok))


def parse_meta(text, path="<string>"):
    """Parses meta-file text; returns an ordered dict table_name -> number of fields.
    Raises MetaError (message ``path:line: ...``) on bad syntax or a missing setting."""
    lx = _Lexer(text, path)
    root = _parse_settings(lx, 0, None)

    def require(group, name, line, kind):
        if name not in group:
            raise MetaError(path, line, 'missing required setting "%s"' % name)
        node = group[name][1]
        ok = {"string": lambda v: isinstance(v, str),
              "list": lambda v: isinstance(v, list)}[kind]
        if not ok(node.value):
            raise MetaError(path, node.line, '"%s" must be a %s, not a %s'
                            % (name, kind, _type_name(node.value)))
        return node

    require(root, "version", 1, "string")
    measurements = require(root, "measurements", 1, "list")
    tables = collections.OrderedDict()
    for item in measurements.value:
        if not isinstance(item.value, dict):
            raise MetaError(path, item.line, "each measurement must be a group, not a %s"
                            % _type_name(item.value))
        table = require(item.value, "table_name", item.line, "string")
        name = table.value
        if not name:
            raise MetaError(path, table.line, "empty table_name")
        require(item.value, "entity_name", item.line, "string")
        fields = require(item.value, "fields", item.line, "list")
        if not fields.value:
            raise MetaError(path, fields.line, 'table "%s": "fields" is empty' % name)
        for field in fields.value:
            if not isinstance(field.value, dict):
                raise MetaError(path, field.line, 'table "%s": each field must be a group, '
                                'not a %s' % (name, _type_name(field.value)))
        if name in tables:
            raise MetaError(path, table.line, 'duplicate table "%s"' % name)
        tables[name] = len(fields.value)
    return tables


def load_meta(paths):
    """Reads one meta file or several (a list, or a ``:``-separated string); returns an
    ordered dict table_name -> number of fields.  Raises MetaError."""
    if isinstance(paths, str):
        paths = [p for p in paths.split(":") if p]
    tables = collections.OrderedDict()
    for path in paths:
        try:
            with open(path, "rb") as f:
                data = f.read()
        except OSError as e:
            raise MetaError(path, 0, "cannot read meta file: %s" % e.strerror)
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as e:
            line = data[:e.start].count(b"\n") + 1
            raise MetaError(path, line, "not valid UTF-8")
        for name, count in parse_meta(text, path).items():
            if name in tables:
                raise MetaError(path, 0, 'table "%s" is also defined in an earlier meta file'
                                % name)
            tables[name] = count
    return tables


def _meta_paths(meta):
    if meta is None:
        env = os.environ.get(ENV_META)
        if env:
            return [p for p in env.split(":") if p]
        argv0 = sys.argv[0] if sys.argv else ""
        if argv0 and argv0 not in ("-c", "-m", "-"):
            guess = os.path.splitext(argv0)[0] + ".meta"
            if os.path.isfile(guess):
                return [guess]
        return []
    if isinstance(meta, str):
        return [p for p in meta.split(":") if p]
    return list(meta)


# ---------------------------------------------------------------------------------------------
# Output lines
# ---------------------------------------------------------------------------------------------

def _text(value, what):
    if value is None:
        return ""
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, str):
        return value
    if isinstance(value, (bytes, bytearray)):
        try:
            return bytes(value).decode("utf-8")
        except UnicodeDecodeError:
            raise RecordError("%s is not valid UTF-8" % what)
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, int):
        return str(int(value))  # an IntEnum as its number
    return str(value)


def _check_clean(text, what):
    for bad in _FORBIDDEN:
        if bad in text:
            shown = text if len(text) <= 80 else text[:77] + "..."
            raise RecordError("%s contains %r (refused, never escaped): %r" % (what, bad, shown))


def record_line(table, values, tables=None):
    """The record line for `table` and `values` (a str ending in a newline), after the
    checks of emit(); raises RecordError.  `tables`: table_name -> field count, or None."""
    table = _text(table, "table name")
    if not table:
        raise RecordError("empty table name")
    _check_clean(table, "table name")
    if table in ("event", "log"):
        raise RecordError('table name "%s" is reserved (use event() for events)' % table)
    if len(table.encode("utf-8", "surrogateescape")) > 63:
        raise RecordError('table name "%s" is longer than 63 bytes: the daemon drops it' % table)
    if tables is not None:
        if table not in tables:
            raise RecordError('table "%s" is not in the meta file(s)' % table)
        if len(values) != tables[table]:
            raise RecordError('table "%s" has %d fields, got %d values'
                              % (table, tables[table], len(values)))
    if not values:
        raise RecordError('table "%s": no values' % table)
    texts = []
    for i, value in enumerate(values):
        what = 'table "%s" value %d' % (table, i + 1)
        text = _text(value, what)
        _check_clean(text, what)
        texts.append(text)
    if not texts[0]:
        raise RecordError('table "%s": the first value is empty (the daemon drops such records)'
                          % table)
    return "|%s|%s|\n" % (table, "|".join(texts))


def event_line(entity_name, entity_id, metric, message, severity="WARN", pid=0, comm="",
               ip="", container_id="", pod_id="", device="", now=None):
    """The event line of event() (a str ending in a newline); raises RecordError."""
    sev = severity
    if isinstance(sev, int) and not isinstance(sev, bool):
        names = dict((v, k) for k, v in _SEVERITIES.items())
        if sev not in names:
            raise RecordError("unknown severity %r (expected INFO, WARN, ERROR or FATAL)" % sev)
        sev = names[sev]
    elif isinstance(sev, str) and sev.upper() in _SEVERITIES:
        sev = sev.upper()
    else:
        raise RecordError("unknown severity %r (expected INFO, WARN, ERROR or FATAL)" % (sev,))
    if pid is None or pid == "":
        pid = 0
    try:
        pid_number = int(pid)
    except (TypeError, ValueError):
        raise RecordError("event pid %r is not an integer" % (pid,))
    if isinstance(pid, bool) or pid_number < 0 or pid_number >= 1 << 32:
        raise RecordError("event pid %r is out of range" % (pid,))
    fields = []
    for what, value in (("entity_name", entity_name), ("entity_id", entity_id),
                        ("metric", metric), ("comm", comm), ("ip", ip),
                        ("container_id", container_id), ("pod_id", pod_id),
                        ("device", device)):
        text = _text(value, "event " + what)
        _check_clean(text, "event " + what)
        fields.append(text)
    name, eid, metric, comm, ip, cid, pod, dev = fields
    for what, text in (("entity_name", name), ("entity_id", eid), ("metric", metric)):
        if not text:
            raise RecordError("event %s is empty" % what)
    text = _text(message, "event message")
    text = text.replace("|", "/").replace("\r", " ").replace("\n", " ")
    stamp = time.asctime(time.localtime(now))
    body = "%s %s Entity(%s) %s" % (stamp, sev, eid, text)
    return "|event|%s|%s|%s|%s|%s|%s|%s|%s|%s|%s|%d|%s|\n" % (
        name, eid, metric, str(pid_number) if pid_number else "", comm, ip, cid, pod, dev,
        sev, _SEVERITIES[sev], body)


# ---------------------------------------------------------------------------------------------
# The probe
# ---------------------------------------------------------------------------------------------

_fd_lock = threading.Lock()
_fd_taken = set()


def _adopt_fd(fd):
    """A socket object owning `fd` after checking it is an open Unix stream socket; marks it
    close-on-exec.  On error the descriptor is left as it was."""
    try:
        fcntl.fcntl(fd, fcntl.F_GETFD)
    except OSError as e:
        raise ProbeError("fd %d from %s is not open: %s" % (fd, ENV_IPC_FD, e.strerror))
    try:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM, 0, fileno=fd)
    except OSError as e:  # not a socket; nothing was taken over
        raise ProbeError("fd %d from %s is not a socket: %s" % (fd, ENV_IPC_FD, e.strerror))
    try:
        stype = sock.getsockopt(socket.SOL_SOCKET, socket.SO_TYPE)
        domain = sock.getsockopt(socket.SOL_SOCKET, getattr(socket, "SO_DOMAIN", 39))
    except OSError as e:
        sock.detach()
        raise ProbeError("fd %d from %s is not a socket: %s" % (fd, ENV_IPC_FD, e.strerror))
    if stype != socket.SOCK_STREAM or domain != socket.AF_UNIX:
        sock.detach()
        raise ProbeError("fd %d from %s is not a Unix stream socket" % (fd, ENV_IPC_FD))
    sock.set_inheritable(False)
    return sock


def connect(meta=None, channel=None, timeout=FIRST_CONFIG_TIMEOUT):
    """Connects to the daemon and returns a :class:`Probe`.

    `meta`: meta file(s) for the emit() checks (a path, a ``:``-separated string or a list;
    ``""`` for no checks); by default ``GALA_GOPHER_META``, else ``<program>.meta`` next to the
    program if it exists.  `channel`: a connected Unix stream socket to use instead of the one
    named by ``GALA_GOPHER_IPC_FD`` (for tests).  `timeout`: how long to wait for the first
    configuration (seconds).

    Without ``GALA_GOPHER_IPC_FD`` (and no `channel`) the probe runs offline.  Raises
    ProbeError (unusable channel, ``proto`` encoding), MetaError or ConfigError.
    """
    tables = None
    paths = _meta_paths(meta)
    if paths:
        tables = load_meta(paths)
    if channel is not None:
        return Probe(channel, tables, timeout)
    fd_text = os.environ.get(ENV_IPC_FD)
    if fd_text is None:
        return Probe(None, tables, timeout)
    try:
        fd = int(fd_text)
        if fd < 0:
            raise ValueError
    except ValueError:
        raise ProbeError("%s=%r is not a file descriptor number" % (ENV_IPC_FD, fd_text))
    encoding = os.environ.get(ENV_IPC_ENCODING)
    if encoding is None:
        raise ProbeError("%s is set but %s is not" % (ENV_IPC_FD, ENV_IPC_ENCODING))
    if encoding == "proto":
        raise ProbeError('the Python SDK speaks only the JSON encoding of the control channel, '
                         'but %s=proto: set "ipc_encoding": "json" for this probe in '
                         'gala-gopher-custom.json (json is the default)' % ENV_IPC_ENCODING)
    if encoding != "json":
        raise ProbeError('%s: unknown IPC encoding %r (expected "proto" or "json")'
                         % (ENV_IPC_ENCODING, encoding))
    with _fd_lock:
        if fd in _fd_taken:
            raise ProbeError("fd %d from %s was already taken by an earlier connect()"
                             % (fd, ENV_IPC_FD))
        sock = _adopt_fd(fd)
        _fd_taken.add(fd)
    try:
        return Probe(sock, tables, timeout)
    except BaseException:
        with _fd_lock:
            _fd_taken.discard(fd)
        sock.close()
        raise


class Probe(object):
    """The connection to the daemon (or the offline stand-in).  Create it with connect()."""

    def __init__(self, channel, tables, timeout=FIRST_CONFIG_TIMEOUT):
        self._sock = channel
        self._tables = tables
        self._out = []
        self._pending = 0
        self._inbuf = bytearray()
        self._discarding = False
        self._eof = False
        self._stopped = False
        self._signalled = None
        self._closed = False
        self._send_broken = False
        self._wake_r = self._wake_w = None
        self._old_wakeup = None
        self._old_handlers = {}
        self._queued = None  # (config, or-ed change_flags) read but not yet returned
        self._install_signals()
        try:
            if channel is None:
                self._config = offline_config()
                return
            self._config = None
            self._send({"hello": {"sdkVersion": SDK_VERSION,
                                  "probeName": os.environ.get(ENV_PROBE_NAME) or
                                  _program_name(),
                                  "pid": os.getpid()}})
            wake = self._wait_channel(timeout)
            if self._config is None:
                if wake == TIMEOUT:
                    _warn("no configuration from the daemon within %g s; starting with the "
                          "defaults" % timeout)
                base = _default_config()
                self._config = base.replace(seq=0)
        except BaseException:
            self._restore_signals()
            raise

    # -- public API ---------------------------------------------------------------------------

    @property
    def config(self):
        """The latest configuration snapshot (:class:`Config`)."""
        return self._config

    @property
    def running(self):
        """False once a stop was requested (SIGTERM/SIGINT, channel closed, close())."""
        return not (self._stopped or self._signalled is not None or self._closed)

    @property
    def offline(self):
        """True when not started by the daemon (no control channel)."""
        return self._sock is None

    @property
    def tables(self):
        """table_name -> field count from the meta file(s), or None (no meta checks)."""
        return self._tables

    def wait(self, seconds):
        """Flushes output, then sleeps until `seconds` elapse (None: no limit), a new
        configuration arrives or a stop is requested.  Returns ``"timeout"``, ``"config"``
        (``probe.config`` is the new snapshot) or ``"stop"``."""
        if not self._stopped:
            try:
                self.flush()
            except BrokenPipeError:
                # Nobody reads our records any more: the daemon is gone.
                self._out, self._pending = [], 0
                self._stopped = True
        if self._closed:
            self._stopped = True
        if self._stopped:
            return STOP
        if self._sock is None:
            return self._wait_offline(seconds)
        return self._wait_channel(seconds)

    def emit(self, table, *values):
        """Writes one record ``|table|v1|...|vN|`` (buffered).  Raises RecordError (nothing
        written) for a value containing ``|``, ``\\n`` or ``\\r``, an empty first value, or,
        with a meta file, an unknown table or a wrong number of values."""
        self._append(record_line(table, values, self._tables))

    def event(self, entity_name, entity_id, metric, message, severity="WARN", pid=0, comm="",
              ip="", container_id="", pod_id="", device=""):
        """Writes one event line (buffered).  In `message`, ``|`` becomes ``/`` and ``\\r``,
        ``\\n`` a space; other fields containing them, an empty entity_name, entity_id or
        metric, or an unknown severity raise RecordError (nothing written)."""
        self._append(event_line(entity_name, entity_id, metric, message, severity, pid, comm,
                                ip, container_id, pod_id, device))

    def status(self, level, text):
        """Sends a Status (``"info"``, ``"warn"`` or ``"error"``) with the seq of the current
        configuration.  Offline it is written to stderr."""
        key = str(level).lower()
        if key.startswith("level_"):
            key = key[6:]
        if key == "warning":
            key = "warn"
        if key not in _LEVELS:
            raise ValueError("unknown status level %r (expected info, warn or error)" % (level,))
        text = str(text)
        if self._sock is None:
            _warn("status %s: %s" % (key, text))
            return
        self._send({"status": {"level": _LEVELS[key], "text": text,
                               "configSeq": str(self._config.seq if self._config else 0)}})

    def flush(self):
        """Writes the buffered records and events to stdout."""
        if not self._out:
            return
        data = "".join(self._out).encode("utf-8", "surrogateescape")
        self._out, self._pending = [], 0
        try:
            if sys.stdout is not None:
                sys.stdout.flush()  # keep the order of anything print()ed before
        except Exception:
            pass
        view = memoryview(data)
        while view:
            try:
                written = os.write(1, view)
            except BlockingIOError:
                select.select([], [1], [])
                continue
            except InterruptedError:
                continue
            view = view[written:]

    def close(self):
        """Flushes output and ends the control channel; later wait() calls return "stop"."""
        if self._closed:
            return
        self._closed = True
        try:
            self.flush()
        except OSError:
            pass
        finally:
            self._restore_signals()
            if self._sock is not None:
                fd = self._sock.fileno()
                try:
                    self._sock.close()
                finally:
                    with _fd_lock:
                        _fd_taken.discard(fd)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    # -- internals ----------------------------------------------------------------------------

    def _append(self, line):
        if self._closed:
            raise ProbeError("the probe is closed")
        self._out.append(line)
        self._pending += len(line)
        if self._pending >= FLUSH_THRESHOLD:
            self.flush()

    def _send(self, message):
        if self._sock is None or self._send_broken:
            return
        data = (json.dumps(message, separators=(",", ":")) + "\n").encode("utf-8")
        try:
            self._sock.sendall(data)
        except OSError as e:
            # The daemon closed the channel; reading it will report the stop.
            self._send_broken = True
            if e.errno not in (errno.EPIPE, errno.ECONNRESET):
                _warn("control channel: %s" % e)

    def _on_signal(self, signum, frame):
        self._signalled = signum

    def _install_signals(self):
        if threading.current_thread() is not threading.main_thread():
            _warn("connect() not called from the main thread: no SIGTERM/SIGINT handlers")
            return
        r, w = os.pipe()
        os.set_blocking(r, False)
        os.set_blocking(w, False)
        try:
            try:
                self._old_wakeup = signal.set_wakeup_fd(w, warn_on_full_buffer=False)
            except TypeError:  # Python < 3.7
                self._old_wakeup = signal.set_wakeup_fd(w)
            for sig in (signal.SIGTERM, signal.SIGINT):
                self._old_handlers[sig] = signal.signal(sig, self._on_signal)
        except BaseException:
            os.close(r)
            os.close(w)
            raise
        self._wake_r, self._wake_w = r, w

    def _restore_signals(self):
        if self._wake_r is None:
            return
        for sig, handler in self._old_handlers.items():
            signal.signal(sig, handler if handler is not None else signal.SIG_DFL)
        self._old_handlers = {}
        try:
            signal.set_wakeup_fd(self._old_wakeup if self._old_wakeup is not None else -1)
        except (ValueError, OSError):
            signal.set_wakeup_fd(-1)
        os.close(self._wake_r)
        os.close(self._wake_w)
        self._wake_r = self._wake_w = None

    def _drain_wakeup(self):
        """Empties the self-pipe; True when it held SIGTERM or SIGINT."""
        hit = False
        while self._wake_r is not None:
            try:
                data = os.read(self._wake_r, 512)
            except (BlockingIOError, InterruptedError):
                break
            if not data:
                break
            for sig in (signal.SIGTERM, signal.SIGINT):
                # Only while our handler is in place: a probe may take the signal over.
                if sig in bytearray(data) and signal.getsignal(sig) == self._on_signal:
                    hit = True
        return hit

    def _stop_requested(self):
        if self._drain_wakeup() and self._signalled is None:
            self._signalled = signal.SIGTERM
        return self._signalled is not None

    def _poll(self, fds, deadline):
        """Waits until one of `fds` is readable or `deadline` (monotonic; None = never)
        passes; returns the readable fds."""
        poller = select.poll()
        for fd in fds:
            poller.register(fd, select.POLLIN)
        if deadline is None:
            ms = None
        else:
            ms = max(0, int((deadline - time.monotonic()) * 1000 + 0.999))
        return [fd for fd, _ in poller.poll(ms)]

    def _wait_offline(self, seconds):
        deadline = None if seconds is None else time.monotonic() + max(0.0, float(seconds))
        while True:
            if self._stop_requested():
                self._stopped = True
                return STOP
            if deadline is not None and time.monotonic() >= deadline:
                return TIMEOUT
            fds = [self._wake_r] if self._wake_r is not None else []
            if fds:
                self._poll(fds, deadline)
            else:
                remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
                time.sleep(remaining if remaining is not None else 3600)

    def _wait_channel(self, seconds):
        deadline = None if seconds is None else time.monotonic() + max(0.0, float(seconds))
        while True:
            if self._stop_requested():
                self._stopped = True
                return STOP
            if self._queued is not None:
                return self._apply_queued()
            if self._eof:
                self._stopped = True
                return STOP
            if deadline is not None and time.monotonic() >= deadline:
                return TIMEOUT
            fds = [self._sock.fileno()]
            if self._wake_r is not None:
                fds.append(self._wake_r)
            ready = self._poll(fds, deadline)
            if self._sock.fileno() in ready:
                self._read_available()

    def _read_available(self):
        """Reads everything the socket holds now (so queued configurations collapse into the
        newest) and decodes the complete lines."""
        for _ in range(1024):
            try:
                data = self._sock.recv(65536, socket.MSG_DONTWAIT)
            except (BlockingIOError, InterruptedError):
                break
            except OSError as e:
                if e.errno != errno.ECONNRESET:
                    _warn("control channel: %s" % e)
                data = b""
            if not data:
                self._eof = True
                break
            self._take(data)
        self._inbuf_lines()

    def _take(self, data):
        if self._discarding:
            nl = data.find(b"\n")
            if nl < 0:
                return
            self._discarding = False
            data = data[nl + 1:]
        self._inbuf += data
        if len(self._inbuf) > MAX_FRAME and self._inbuf.find(b"\n") < 0:
            _warn("control message longer than %d bytes dropped" % MAX_FRAME)
            del self._inbuf[:]
            self._discarding = True

    def _inbuf_lines(self):
        start = 0
        buf = self._inbuf
        while True:
            nl = buf.find(b"\n", start)
            if nl < 0:
                break
            line = bytes(buf[start:nl])
            start = nl + 1
            self._message(line)
        del buf[:start]

    def _message(self, line):
        line = line.strip()
        if not line:
            return
        try:
            msg = json.loads(line.decode("utf-8"))
        except ValueError as e:
            _warn("bad control message (%s): %r" % (e, line[:200]))
            return
        if not isinstance(msg, dict) or msg.get("config") is None:
            return  # a message type this SDK does not know (a newer daemon)
        try:
            config = _build_config(msg["config"])
        except ConfigError as e:
            _warn("bad configuration from the daemon: %s" % e)
            self.status("error", "configuration not applied: %s" % e)
            return
        if self._queued is None:
            self._queued = (config, config.change_flags)
        else:
            # Every snapshot is complete: keep the newest, remember what the others changed.
            self._queued = (config, self._queued[1] | config.change_flags)

    def _apply_queued(self):
        config, flags = self._queued
        self._queued = None
        if flags != config.change_flags:
            config = config.replace(change_flags=flags)
        self._config = config
        self.status("info", "applied config %d" % config.seq)
        return CONFIG
