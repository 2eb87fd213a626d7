/* The errno values libbpf's <bpf/usdt.bpf.h> returns. It includes <linux/errno.h>, which
 * pulls in the host's <asm/errno.h>; a BPF compile has no multiarch include path, and the
 * numbers are the same on every Linux architecture. */
#ifndef GALA_LINUX_ERRNO_H
#define GALA_LINUX_ERRNO_H

#define ENOENT 2
#define ESRCH 3
#define EINVAL 22

#endif
