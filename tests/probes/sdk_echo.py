#!/usr/bin/env python3
"""SDK conformance probe, Python: the behaviour described in sdk_echo.meta, with lang "python".

gala_probe is found in $GALA_PROBE_PYTHONPATH if set, else in probe-sdk/python of the
repository this file is in (the daemon executes the file directly).
"""

import os
import sys

sys.path.insert(0, os.environ.get("GALA_PROBE_PYTHONPATH") or os.path.join(
    os.path.dirname(os.path.realpath(__file__)), "..", "..", "probe-sdk", "python"))

import gala_probe  # noqa: E402

LANG = "python"


def level(cfg):
    return cfg.custom_params.get("level", "0")


def announce(probe):
    cfg = probe.config
    probe.event("sdk_echo", "%s-%d" % (LANG, cfg.seq), "seq",
                "applied config %d with level %s | ok" % (cfg.seq, level(cfg)),
                severity="WARN")


def main():
    probe = gala_probe.connect()
    announce(probe)
    while True:
        cfg = probe.config
        probe.emit("sdk_echo", LANG, cfg.probe_name,
                   ",".join(cfg.custom_subitems) or "none",
                   ",".join(str(pid) for pid in cfg.pids) or "none",
                   cfg.params.report_period, level(cfg), cfg.seq)
        # A zero period (a config without params) must not spin.
        wake = probe.wait(max(cfg.params.report_period, 1))
        if wake == gala_probe.STOP:
            break
        if wake == gala_probe.CONFIG:
            announce(probe)
    probe.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
