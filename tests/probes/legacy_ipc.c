/*
 * A custom probe written against the original gala-gopher's control channel, as
 * docs/reference/ipc-and-lifecycle.md §6.6 documents it: it opens the System V message queue
 * of ftok(<key file>, 'g') and polls it with msgrcv(100 + CUSTOM_INDEX, IPC_NOWAIT), keeping
 * the last message and OR-ing the change flags of every message drained, as the original's
 * recv_custom_ipc_msg. It knows nothing of the daemon's socket at fd 3.
 *
 * Build: cc -std=c99 -DCUSTOM_INDEX=<position in gala-gopher-custom.json> legacy_ipc.c
 * Key file: $GALA_GOPHER_LEGACY_IPC_PATH, else /usr/bin/gala-gopher.
 *
 * Every 200 ms once a message has arrived it prints (legacy_ipc.meta beside it):
 * |legacy_ipc|<index>|<enabled sub-items joined by ",", or "none">|<period>|
 *   <custom param "threshold" or 0>|<flags of the last batch>|<snooper objects>|
 *   <messages received>|<snooper_state>|<first pid or 0>|<malformed messages>|
 * The tests (tests/e2e/legacy_ipc.rs) compile it with the system cc.
 */
#define _DEFAULT_SOURCE
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ipc.h>
#include <sys/msg.h>
#include <time.h>

#ifndef CUSTOM_INDEX
#error "define CUSTOM_INDEX"
#endif

/* The documented layout, written out here (not shared with the daemon's source). */
struct probe_params {
    uint32_t period, sample_period, latency_thr, offline_thr, drops_count_thr, kafka_port;
    char logs;
    unsigned char ringbuf_map_size;
    char report_cport, metrics_flags, env_flags, support_ssl, res_percent_upper,
        res_percent_lower, continuous_sampling_flag, multi_instance_flag, native_stack_flag,
        cluster_ip_backend;
    char target_dev[32];
    char elf_path[512];
    uint32_t l7_probe_proto_flags, svg_period, perf_sample_period;
    char pyroscope_server[64];
    char output_dir[256];
    char flame_dir[256];
    uint32_t cadvisor_port, profiling_chan, min_exec_dur, min_aggr_dur;
};
_Static_assert(sizeof(struct probe_params) == 1184, "struct probe_params is 1184 bytes");

struct custom_ipc {
    char subprobe[8][64];
    uint32_t subprobe_num;
    struct {
        char label[64];
        char value[64];
    } custom_param[9];
    uint32_t params_num;
};
_Static_assert(sizeof(struct custom_ipc) == 1672, "struct custom_ipc is 1672 bytes");

struct tlv {
    uint16_t type;
    uint16_t len;
};

#define TEXT_MAX (4 * 1024 * 1024)
struct msg {
    long mtype;
    uint16_t msg_flag;
    uint16_t snooper_state;
    uint32_t msg_len;
    char body[TEXT_MAX];
};

static struct msg rcv;

/* What the last good message said. */
static struct probe_params params;
static struct custom_ipc custom;
static uint32_t snooper_num, first_pid, snooper_state;
static unsigned flags, messages, malformed;

/* Parses rcv (n bytes of text); 0 when it follows the documented format. */
static int parse(size_t n)
{
    const char *p = rcv.body, *end;
    struct tlv t;
    uint32_t count = 0, pid0 = 0;

    if (n < 8 || rcv.msg_len != n - 8)
        return -1;
    end = p + rcv.msg_len;
    static const uint16_t fixed_type[4] = {100, 101, 102, 103};
    static const uint16_t fixed_len[4] = {4, sizeof(struct probe_params), 4,
                                          sizeof(struct custom_ipc)};
    struct probe_params pp;
    struct custom_ipc ci;
    for (int i = 0; i < 4; i++) {
        if (end - p < (long)sizeof t)
            return -1;
        memcpy(&t, p, sizeof t);
        p += sizeof t;
        if (t.type != fixed_type[i] || t.len != fixed_len[i] || end - p < t.len)
            return -1;
        if (i == 1)
            memcpy(&pp, p, sizeof pp);
        if (i == 2)
            memcpy(&count, p, 4);
        if (i == 3)
            memcpy(&ci, p, sizeof ci);
        p += t.len;
    }
    for (uint32_t i = 0; i < count; i++) {
        if (end - p < (long)sizeof t)
            return -1;
        memcpy(&t, p, sizeof t);
        p += sizeof t;
        if (end - p < t.len)
            return -1;
        if (t.type == 0 && t.len == 4) {
            if (i == 0)
                memcpy(&pid0, p, 4);
        } else if (t.type != 1 || t.len < 4) {
            return -1;
        }
        p += t.len;
    }
    if (p != end || ci.subprobe_num > 8 || ci.params_num > 9)
        return -1;
    params = pp;
    custom = ci;
    snooper_num = count;
    first_pid = pid0;
    snooper_state = rcv.snooper_state;
    return 0;
}

static const char *custom_param(const char *label)
{
    for (uint32_t i = 0; i < custom.params_num; i++)
        if (strncmp(custom.custom_param[i].label, label, 64) == 0)
            return custom.custom_param[i].value;
    return "";
}

int main(void)
{
    const char *path = getenv("GALA_GOPHER_LEGACY_IPC_PATH");
    long mtype = 100 + CUSTOM_INDEX;
    struct timespec tick = {0, 200 * 1000 * 1000};
    int msqid = -1;
    key_t key;

    if (path == NULL || *path == '\0')
        path = "/usr/bin/gala-gopher";
    key = ftok(path, 'g');
    if (key == -1) {
        fprintf(stderr, "legacy_ipc: ftok(%s): %s\n", path, strerror(errno));
        return 1;
    }
    for (;;) {
        if (msqid < 0)
            msqid = msgget(key, 0600 | IPC_EXCL);
        if (msqid >= 0) {
            unsigned batch = 0;
            int got = 0;
            ssize_t n;
            while ((n = msgrcv(msqid, &rcv, sizeof rcv - sizeof rcv.mtype, mtype, IPC_NOWAIT)) >= 0) {
                got = 1;
                messages++;
                batch |= rcv.msg_flag;
                if (parse((size_t)n) != 0)
                    malformed++;
            }
            if (errno == EIDRM || errno == EINVAL)
                msqid = -1;
            if (got)
                flags = batch;
        }
        if (messages > 0) {
            char subitems[8 * 64 + 8] = "";
            for (uint32_t i = 0; i < custom.subprobe_num; i++) {
                if (i > 0)
                    strcat(subitems, ",");
                strncat(subitems, custom.subprobe[i], 63);
            }
            printf("|legacy_ipc|%d|%s|%u|%ld|%u|%u|%u|%u|%u|%u|\n", CUSTOM_INDEX,
                   subitems[0] ? subitems : "none", params.period,
                   strtol(custom_param("threshold"), NULL, 10), flags, snooper_num, messages,
                   snooper_state, first_pid, malformed);
            fflush(stdout);
        }
        nanosleep(&tick, NULL);
    }
}
