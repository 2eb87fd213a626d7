/*
 * gala_probe.h - the C SDK for gala-gopher probes.
 *
 * A probe is a program the daemon starts; it receives its configuration on the control
 * channel (fd 3) and prints record lines `|table|v1|...|vN|` on stdout. This library does
 * both for you: it greets the daemon, keeps the latest configuration, tells you when it
 * changes or when to stop (SIGTERM/SIGINT), and checks every record against the probe's
 * meta file before it is written, so a record the SDK accepts is one the daemon accepts.
 * The concepts and names are those of every gala-gopher SDK: probe-sdk/API.md.
 *
 * Link with libgala_probe.a (add -lpthread -ldl -lm) or with libgala_probe.so.
 *
 *     #include <gala_probe.h>
 *
 *     int main(void)
 *     {
 *         gala_probe *p = gala_probe_connect(NULL);
 *         if (p == NULL) {
 *             fprintf(stderr, "connect: %s\n", gala_probe_last_error());
 *             return 1;
 *         }
 *         uint64_t period = 60;
 *         while (gala_probe_running(p)) {
 *             gala_probe_get_u64(p, "params.report_period", &period);
 *             const char *values[] = { "eth0", "42" };
 *             if (gala_probe_emit(p, "my_table", 2, values) != 0)
 *                 fprintf(stderr, "emit: %s\n", gala_probe_last_error());
 *             if (gala_probe_wait(p, (unsigned int)period * 1000) == GALA_WAKE_STOP)
 *                 break;
 *         }
 *         gala_probe_close(p);
 *         return 0;
 *     }
 *
 * Conventions of every function:
 * - Strings passed in are NUL-terminated UTF-8; a NULL pointer or a string that is not
 *   UTF-8 is an error (never a crash).
 * - A function that fails returns -1 (or what its comment says), writes nothing, and leaves
 *   the reason in gala_probe_last_error().
 * - A gala_probe is used by one thread at a time.
 */
#ifndef GALA_PROBE_H
#define GALA_PROBE_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Why gala_probe_wait() returned. */
/** The timeout elapsed. */
#define GALA_WAKE_TIMEOUT 0
/** A new configuration is in place (read it with gala_probe_get()). */
#define GALA_WAKE_CONFIG 1
/** Stop requested (SIGTERM/SIGINT, or the daemon closed the channel): flush and exit 0. */
#define GALA_WAKE_STOP 2

/* Severity of an event (struct gala_event), with the original's numbers. */
#define GALA_SEV_INFO 9
#define GALA_SEV_WARN 13
#define GALA_SEV_ERROR 17
#define GALA_SEV_FATAL 21

/* Level of a status report (gala_probe_status()), the numbers of the control channel. */
/** Normal progress. */
#define GALA_LEVEL_INFO 1
/** Degraded, still running. */
#define GALA_LEVEL_WARN 2
/** Something failed. */
#define GALA_LEVEL_ERROR 3

/** The connection of a probe to its daemon; opaque. */
typedef struct gala_probe gala_probe;

/**
 * Connects: picks up the control channel on fd 3 (or runs offline when the daemon did not
 * start this program, with the defaults of API.md and GALA_GOPHER_CONFIG), greets the
 * daemon, waits up to 5 s for the first configuration and installs SIGTERM/SIGINT
 * handlers. Call it once per process.
 *
 * meta_path: the meta file the records are checked against; NULL discovers it like every
 * SDK does (GALA_GOPHER_META, else <program>.meta beside the executable, else only the
 * structural checks apply).
 *
 * Returns the probe, to be released with gala_probe_close(); NULL on error.
 */
gala_probe *gala_probe_connect(const char *meta_path);

/**
 * Why the last failing call on this thread failed ("" if none has). Successful calls leave
 * it alone, like errno: read it right after a call that reported failure. The text belongs
 * to the library and stays valid until the next failing call on this thread.
 */
const char *gala_probe_last_error(void);

/**
 * Flushes buffered output, then sleeps until timeout_ms elapses, a new configuration
 * arrives, or a stop is requested. Returns GALA_WAKE_TIMEOUT, GALA_WAKE_CONFIG (the new
 * configuration is in place and the daemon was told) or GALA_WAKE_STOP (later calls return
 * it at once). A NULL probe returns GALA_WAKE_STOP.
 */
int gala_probe_wait(gala_probe *p, unsigned int timeout_ms);

/** 1 until a stop was requested, then 0 (0 for NULL). */
int gala_probe_running(const gala_probe *p);

/**
 * Reads one configuration value by path, as text: probe_name, seq, change_flags, subitems
 * and pids (space-separated), subitem_mask, snooper_mode (whitelist/blacklist),
 * params.<name> (every field of the proto Params, named after its REST key; booleans
 * true/false),
 * custom.subitems (space-separated), custom.params.<label>, custom_labels.<key> (the last
 * three are empty when unset).
 *
 * Works like snprintf: writes at most len - 1 bytes of the value and a NUL into buf (buf
 * may be NULL when len is 0) and returns the value's full length in bytes, so a return
 * value >= len means the text was cut. Returns -1 for an unknown path.
 */
long gala_probe_get(const gala_probe *p, const char *path, char *buf, size_t len);

/**
 * Reads a numeric configuration value (see gala_probe_get(); true/false read as 1/0) into
 * *out. Returns 0, or -1 if the path is unknown or its value is not a number (*out is then
 * left alone).
 */
int gala_probe_get_u64(const gala_probe *p, const char *path, uint64_t *out);

/** 1 if sub-item name (built-in or custom) is enabled, else 0. */
int gala_probe_has_subitem(const gala_probe *p, const char *name);

/**
 * Copies the pids of the snooped processes into out, at most cap of them (out may be NULL
 * when cap is 0), and returns how many there are in total.
 */
size_t gala_probe_pids(const gala_probe *p, uint32_t *out, size_t cap);

/**
 * Writes the record |table|values[0]|...|values[n-1]|. Refused (-1, nothing written): a
 * value holding '|', '\n' or '\r' (never escaped: a changed value would be another series),
 * an empty first value (the primary key), a NULL value, and, when the meta file is known, an
 * unknown table or a count of values other than the table's field count or a value the
 * field's type does not take. Output is buffered; gala_probe_wait() and gala_probe_flush()
 * write it.
 */
int gala_probe_emit(gala_probe *p, const char *table, size_t n, const char *const *values);

/**
 * An event (docs/reference/meta-and-records.md §5.2). entity_name, entity_id and metric are required and
 * non-empty; NULL optional strings count as empty; pid 0 means none (for a pid, comm and
 * container_id are looked up in /proc unless given). The message is escaped ('|' becomes
 * '/', CR and LF a space); any other field holding '|', '\n' or '\r' is refused.
 *
 * size is the ABI version: set it to sizeof(struct gala_event) (GALA_EVENT_INIT does). Later
 * versions of this header only append fields, so a library reads the fields a program was
 * built with and takes the ones it does not know only when they are zero (an older library
 * than the header refuses a set newer field rather than drop it); a size smaller than the
 * first version's, such as the 0 of a forgotten initialiser, is refused.
 */
struct gala_event {
    uint32_t size; /* sizeof(struct gala_event) of the header the program was built with */
    const char *entity_name;
    const char *entity_id;
    const char *metric;
    const char *message;
    int severity; /* GALA_SEV_INFO, GALA_SEV_WARN, GALA_SEV_ERROR or GALA_SEV_FATAL */
    uint32_t pid;
    const char *comm;
    const char *ip;
    const char *container_id;
    const char *pod_id;
    const char *device;
};

/** Initialiser setting the size: `struct gala_event ev = GALA_EVENT_INIT; ev.metric = ...;` */
#define GALA_EVENT_INIT { .size = (uint32_t)sizeof(struct gala_event) }

/** Writes the event line of *ev. Returns 0, or -1 (nothing written). */
int gala_probe_event(gala_probe *p, const struct gala_event *ev);

/**
 * Sends a status report (GALA_LEVEL_INFO, GALA_LEVEL_WARN or GALA_LEVEL_ERROR) with the seq
 * of the current configuration to the daemon, which logs it. Best effort: nothing happens
 * offline; a bad argument only sets gala_probe_last_error().
 */
void gala_probe_status(gala_probe *p, int level, const char *text);

/** Writes buffered output to stdout now. Returns 0, or -1 if stdout is gone. */
int gala_probe_flush(gala_probe *p);

/** Flushes, ends the connection and frees p. NULL is ignored. */
void gala_probe_close(gala_probe *p);

#ifdef __cplusplus
}
#endif

#endif /* GALA_PROBE_H */
