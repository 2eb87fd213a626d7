/*
 * SDK conformance probe, C: the behaviour described in sdk_echo.meta, with lang "c".
 * Built by tests/e2e/sdk_c.rs against probe-sdk/c/include/gala_probe.h and libgala_probe.a.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gala_probe.h"

#define LANG "c"

static void fail(const char *what)
{
    fprintf(stderr, "sdk_echo.c: %s: %s\n", what, gala_probe_last_error());
    exit(1);
}

/* The configuration value at path, in a malloc'ed string. */
static char *get_text(const gala_probe *p, const char *path)
{
    long n = gala_probe_get(p, path, NULL, 0);
    if (n < 0)
        fail(path);
    char *text = malloc((size_t)n + 1);
    if (text == NULL)
        fail("out of memory");
    if (gala_probe_get(p, path, text, (size_t)n + 1) != n)
        fail(path);
    return text;
}

/* A malloc'ed copy of text (strdup is not C99). */
static char *copy_text(const char *text)
{
    char *copy = malloc(strlen(text) + 1);
    if (copy == NULL)
        fail("out of memory");
    return strcpy(copy, text);
}

/* The space-separated list at path joined by ",", or "none". */
static char *get_joined(const gala_probe *p, const char *path)
{
    char *text = get_text(p, path);
    if (text[0] == '\0') {
        free(text);
        return copy_text("none");
    }
    for (char *c = text; *c != '\0'; c++) {
        if (*c == ' ')
            *c = ',';
    }
    return text;
}

/* The custom param "level", or "0". */
static char *get_level(const gala_probe *p)
{
    char *level = get_text(p, "custom.params.level");
    if (level[0] == '\0') {
        free(level);
        return copy_text("0");
    }
    return level;
}

static uint64_t get_u64(const gala_probe *p, const char *path)
{
    uint64_t v = 0;
    if (gala_probe_get_u64(p, path, &v) != 0)
        fail(path);
    return v;
}

static void announce(gala_probe *p)
{
    uint64_t seq = get_u64(p, "seq");
    char *level = get_level(p);
    char id[32], message[128];
    snprintf(id, sizeof id, LANG "-%" PRIu64, seq);
    snprintf(message, sizeof message, "applied config %" PRIu64 " with level %s | ok", seq, level);
    struct gala_event ev = {
        .size = sizeof ev,
        .entity_name = "sdk_echo",
        .entity_id = id,
        .metric = "seq",
        .message = message,
        .severity = GALA_SEV_WARN,
    };
    if (gala_probe_event(p, &ev) != 0)
        fail("event");
    free(level);
}

static void report(gala_probe *p)
{
    char *probe = get_text(p, "probe_name");
    char *subitems = get_joined(p, "custom.subitems");
    char *pids = get_joined(p, "pids");
    char *period = get_text(p, "params.report_period");
    char *level = get_level(p);
    char *seq = get_text(p, "seq");
    const char *values[] = { LANG, probe, subitems, pids, period, level, seq };
    if (gala_probe_emit(p, "sdk_echo", sizeof values / sizeof values[0], values) != 0)
        fail("emit");
    free(probe);
    free(subitems);
    free(pids);
    free(period);
    free(level);
    free(seq);
}

int main(void)
{
    gala_probe *p = gala_probe_connect(NULL);
    if (p == NULL)
        fail("connect");
    announce(p);
    for (;;) {
        report(p);
        uint64_t period = get_u64(p, "params.report_period");
        /* A zero period (a config without params) must not spin. */
        if (period < 1)
            period = 1;
        int wake = gala_probe_wait(p, (unsigned int)(period * 1000));
        if (wake == GALA_WAKE_STOP)
            break;
        if (wake == GALA_WAKE_CONFIG)
            announce(p);
    }
    if (gala_probe_flush(p) != 0)
        fail("flush");
    gala_probe_close(p);
    return 0;
}
