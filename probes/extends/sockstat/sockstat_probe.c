/*
 * sockstat probe: the kernel's socket counters of /proc/net/sockstat and
 * /proc/net/sockstat6, every report_period, written with the C probe SDK (gala_probe.h).
 *
 * Tables (sockstat_probe.meta), entity "sockstat", key "family":
 *   sockstat_family  family ipv4|ipv6: tcp/udp/udplite/raw inuse, frag inuse and memory
 *   sockstat_all     family all: sockets used, TCP orphan/tw/alloc/mem, UDP mem
 *
 * Usage: sockstat_probe [--proc-root DIR] [--once]
 *   --proc-root DIR  read DIR/net/sockstat{,6} instead of /proc (fixtures, or /host/proc)
 *   --once           report once and exit (by hand, or offline with GALA_GOPHER_CONFIG)
 *
 * Parsing is lenient: unknown lines and keys are ignored, a counter the kernel does not
 * report is 0, and a missing file leaves its rows out with one [WARN] line (again only
 * after the file was back in between).
 */
#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "gala_probe.h"

/* The rows this probe reports. */
enum row { ROW_IPV4, ROW_IPV6, ROW_ALL, ROW_COUNT };

/* Columns of sockstat_family (rows ipv4, ipv6). */
enum family_col { TCP_INUSE, UDP_INUSE, UDPLITE_INUSE, RAW_INUSE, FRAG_INUSE, FRAG_MEMORY, FAMILY_COLS };

/* Columns of sockstat_all (row all). */
enum all_col { SOCKETS_USED, TCP_ORPHAN, TCP_TW, TCP_ALLOC, TCP_MEM, UDP_MEM, ALL_COLS };

#define MAX_COLS 6

/* How a value is scaled: the kernel gives socket buffer memory in pages. */
enum unit { UNIT_ONE, UNIT_PAGES };

/* One counter of a sockstat file: "<proto>: ... <key> <value> ..." goes to row/col. */
struct rule {
    const char *proto;
    const char *key;
    enum row row;
    int col;
    enum unit unit;
};

static const struct rule SOCKSTAT_RULES[] = {
    { "sockets", "used", ROW_ALL, SOCKETS_USED, UNIT_ONE },
    { "TCP", "inuse", ROW_IPV4, TCP_INUSE, UNIT_ONE },
    { "TCP", "orphan", ROW_ALL, TCP_ORPHAN, UNIT_ONE },
    { "TCP", "tw", ROW_ALL, TCP_TW, UNIT_ONE },
    { "TCP", "alloc", ROW_ALL, TCP_ALLOC, UNIT_ONE },
    { "TCP", "mem", ROW_ALL, TCP_MEM, UNIT_PAGES },
    { "UDP", "inuse", ROW_IPV4, UDP_INUSE, UNIT_ONE },
    { "UDP", "mem", ROW_ALL, UDP_MEM, UNIT_PAGES },
    { "UDPLITE", "inuse", ROW_IPV4, UDPLITE_INUSE, UNIT_ONE },
    { "RAW", "inuse", ROW_IPV4, RAW_INUSE, UNIT_ONE },
    { "FRAG", "inuse", ROW_IPV4, FRAG_INUSE, UNIT_ONE },
    { "FRAG", "memory", ROW_IPV4, FRAG_MEMORY, UNIT_ONE },
};

static const struct rule SOCKSTAT6_RULES[] = {
    { "TCP6", "inuse", ROW_IPV6, TCP_INUSE, UNIT_ONE },
    { "UDP6", "inuse", ROW_IPV6, UDP_INUSE, UNIT_ONE },
    { "UDPLITE6", "inuse", ROW_IPV6, UDPLITE_INUSE, UNIT_ONE },
    { "RAW6", "inuse", ROW_IPV6, RAW_INUSE, UNIT_ONE },
    { "FRAG6", "inuse", ROW_IPV6, FRAG_INUSE, UNIT_ONE },
    { "FRAG6", "memory", ROW_IPV6, FRAG_MEMORY, UNIT_ONE },
};

/* One sockstat file and the rows it feeds. */
struct source {
    const char *name; /* below <proc root>/net/ */
    const struct rule *rules;
    size_t n_rules;
    enum row rows[2];
    size_t n_rows;
    int warned; /* the file is missing and that was logged */
};

static struct source SOURCES[] = {
    { "sockstat", SOCKSTAT_RULES, sizeof SOCKSTAT_RULES / sizeof SOCKSTAT_RULES[0],
      { ROW_IPV4, ROW_ALL }, 2, 0 },
    { "sockstat6", SOCKSTAT6_RULES, sizeof SOCKSTAT6_RULES / sizeof SOCKSTAT6_RULES[0],
      { ROW_IPV6 }, 1, 0 },
};

#define N_SOURCES (sizeof SOURCES / sizeof SOURCES[0])

/* What one round read. */
struct snapshot {
    uint64_t values[ROW_COUNT][MAX_COLS];
    int present[ROW_COUNT];
};

static int is_space(char c)
{
    return c == ' ' || c == '\t';
}

/* Parses an unsigned decimal number spanning exactly [s, s + len); 0 if it is not one. */
static int parse_u64(const char *s, size_t len, uint64_t *out)
{
    if (len == 0 || len > 20)
        return 0;
    uint64_t v = 0;
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9')
            return 0;
        uint64_t digit = (uint64_t)(s[i] - '0');
        if (v > (UINT64_MAX - digit) / 10)
            return 0;
        v = v * 10 + digit;
    }
    *out = v;
    return 1;
}

/* Applies one line "<proto>: <key> <value> <key> <value> ..." of src to snap. */
static void parse_line(const struct source *src, const char *line, size_t len, uint64_t page_size,
                       struct snapshot *snap)
{
    const char *colon = memchr(line, ':', len);
    if (colon == NULL)
        return;
    size_t proto_len = (size_t)(colon - line);
    const char *p = colon + 1;
    const char *end = line + len;
    for (;;) {
        while (p < end && is_space(*p))
            p++;
        const char *key = p;
        while (p < end && !is_space(*p))
            p++;
        size_t key_len = (size_t)(p - key);
        while (p < end && is_space(*p))
            p++;
        const char *value = p;
        while (p < end && !is_space(*p))
            p++;
        size_t value_len = (size_t)(p - value);
        if (key_len == 0 || value_len == 0)
            return;
        uint64_t v;
        if (!parse_u64(value, value_len, &v))
            continue;
        for (size_t i = 0; i < src->n_rules; i++) {
            const struct rule *r = &src->rules[i];
            if (strlen(r->proto) != proto_len || memcmp(r->proto, line, proto_len) != 0)
                continue;
            if (strlen(r->key) != key_len || memcmp(r->key, key, key_len) != 0)
                continue;
            if (r->unit == UNIT_PAGES)
                v = v > UINT64_MAX / page_size ? UINT64_MAX : v * page_size;
            snap->values[r->row][r->col] = v;
        }
    }
}

/* Reads <proc_root>/net/<src->name> into snap; 0 if it cannot be read. */
static int read_source(struct source *src, const char *proc_root, uint64_t page_size,
                       struct snapshot *snap)
{
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/net/%s", proc_root, src->name);
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        int err = errno;
        if (!src->warned) {
            /* Lines starting [WARN] go to the daemon's log. */
            printf("[WARN] sockstat: %s: %s; its counters are not reported\n", path, strerror(err));
            fflush(stdout);
            src->warned = 1;
        }
        return 0;
    }
    src->warned = 0;
    char line[512];
    while (fgets(line, sizeof line, f) != NULL) {
        size_t len = strcspn(line, "\r\n");
        parse_line(src, line, len, page_size, snap);
    }
    fclose(f);
    for (size_t i = 0; i < src->n_rows; i++)
        snap->present[src->rows[i]] = 1;
    return 1;
}

/* Writes the record of one row; returns 0, or -1 (the SDK says why). */
static int emit_row(gala_probe *p, const char *table, const char *family, const uint64_t *values,
                    size_t n)
{
    char text[MAX_COLS][21];
    const char *fields[1 + MAX_COLS] = { family };
    for (size_t i = 0; i < n; i++) {
        snprintf(text[i], sizeof text[i], "%" PRIu64, values[i]);
        fields[1 + i] = text[i];
    }
    return gala_probe_emit(p, table, 1 + n, fields);
}

static void report(gala_probe *p, const char *proc_root, uint64_t page_size)
{
    static const struct {
        enum row row;
        const char *table;
        const char *family;
        size_t cols;
    } ROWS[] = {
        { ROW_IPV4, "sockstat_family", "ipv4", FAMILY_COLS },
        { ROW_IPV6, "sockstat_family", "ipv6", FAMILY_COLS },
        { ROW_ALL, "sockstat_all", "all", ALL_COLS },
    };
    struct snapshot snap;
    memset(&snap, 0, sizeof snap);
    for (size_t i = 0; i < N_SOURCES; i++)
        read_source(&SOURCES[i], proc_root, page_size, &snap);
    for (size_t i = 0; i < sizeof ROWS / sizeof ROWS[0]; i++) {
        if (!snap.present[ROWS[i].row])
            continue;
        if (emit_row(p, ROWS[i].table, ROWS[i].family, snap.values[ROWS[i].row], ROWS[i].cols) != 0)
            fprintf(stderr, "sockstat: %s %s: %s\n", ROWS[i].table, ROWS[i].family,
                    gala_probe_last_error());
    }
}

static void usage(void)
{
    fprintf(stderr, "usage: sockstat_probe [--proc-root DIR] [--once]\n");
    exit(2);
}

int main(int argc, char **argv)
{
    const char *proc_root = "/proc";
    int once = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--proc-root") == 0 && i + 1 < argc)
            proc_root = argv[++i];
        else if (strcmp(argv[i], "--once") == 0)
            once = 1;
        else
            usage();
    }
    long page = sysconf(_SC_PAGESIZE);
    uint64_t page_size = page > 0 ? (uint64_t)page : 4096;

    gala_probe *p = gala_probe_connect(NULL);
    if (p == NULL) {
        fprintf(stderr, "sockstat: connect: %s\n", gala_probe_last_error());
        return 1;
    }
    for (;;) {
        report(p, proc_root, page_size);
        if (once)
            break;
        uint64_t period = 60;
        if (gala_probe_get_u64(p, "params.report_period", &period) != 0 || period < 1)
            period = 60;
        if (period > UINT_MAX / 1000)
            period = UINT_MAX / 1000;
        /* A new configuration (a new report_period) reports at once. */
        if (gala_probe_wait(p, (unsigned int)(period * 1000)) == GALA_WAKE_STOP)
            break;
    }
    int rc = gala_probe_flush(p) == 0 ? 0 : 1;
    gala_probe_close(p);
    return rc;
}
