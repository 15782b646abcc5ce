/*
 * listen_addr.h - the HOST:PORT of parksyncd's HTTP listeners ([metrics]
 * http, [http] listen): an IP address, never a name (what resolves today
 * may not tomorrow, and a bind must not wait on DNS), and whether it is
 * loopback, which decides who can reach what is served there.
 */
#ifndef PARKSYNCD_LISTEN_ADDR_H
#define PARKSYNCD_LISTEN_ADDR_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>

/* A parsed HOST:PORT. */
typedef struct listen_addr {
    struct sockaddr_storage sa; /* address and port, AF_INET or AF_INET6 */
    bool v6;                    /* sa is AF_INET6 */
    bool loopback;              /* 127.0.0.0/8 or ::1 */
} listen_addr_t;

/* Parses IPV4:PORT, [IPV6]:PORT or localhost:PORT (127.0.0.1), PORT
 * 0..65535 (0: the kernel picks one). Returns 0, or -EINVAL with a reason
 * naming text in why. */
int listen_addr_parse(const char *text, listen_addr_t *out, char *why, size_t whylen);

#endif /* PARKSYNCD_LISTEN_ADDR_H */
