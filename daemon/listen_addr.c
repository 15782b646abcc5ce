/*
 * listen_addr.c - see listen_addr.h.
 */
#include "listen_addr.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Splits text into its host (brackets removed) and its port text. */
static int split(const char *text, char *host, size_t hostlen, const char **port, char *why,
                 size_t whylen)
{
    const char *end;
    size_t hlen;

    if (text[0] == '[') {
        end = strchr(text, ']');
        if (!end || end[1] != ':') {
            snprintf(why, whylen, "'%s' is not [IPV6]:PORT", text);
            return -EINVAL;
        }
        hlen = (size_t)(end - text - 1);
        text++;
        *port = end + 2;
    } else {
        end = strrchr(text, ':');
        if (!end) {
            snprintf(why, whylen, "'%s' is not HOST:PORT (or off)", text);
            return -EINVAL;
        }
        hlen = (size_t)(end - text);
        *port = end + 1;
    }
    if (hlen >= hostlen) {
        snprintf(why, whylen, "'%s': the host is too long for an IP address", text);
        return -EINVAL;
    }
    memcpy(host, text, hlen);
    host[hlen] = '\0';
    return 0;
}

int listen_addr_parse(const char *text, listen_addr_t *out, char *why, size_t whylen)
{
    struct sockaddr_in *in4 = (struct sockaddr_in *)&out->sa;
    struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&out->sa;
    char host[64];
    const char *port_text;
    char *end = NULL;
    unsigned long port;
    int rc;

    memset(out, 0, sizeof *out);
    if ((rc = split(text, host, sizeof host, &port_text, why, whylen)) < 0)
        return rc;
    errno = 0;
    port = strtoul(port_text, &end, 10);
    if (errno != 0 || end == port_text || *end != '\0' || port_text[0] == '-' || port > 65535) {
        snprintf(why, whylen, "port '%s' is not 0..65535", port_text);
        return -EINVAL;
    }
    if (strcmp(host, "localhost") == 0)
        snprintf(host, sizeof host, "127.0.0.1");
    if (inet_pton(AF_INET, host, &in4->sin_addr) == 1) {
        in4->sin_family = AF_INET;
        in4->sin_port = htons((uint16_t)port);
        out->loopback = (ntohl(in4->sin_addr.s_addr) >> 24) == 127;
        return 0;
    }
    if (inet_pton(AF_INET6, host, &in6->sin6_addr) == 1) {
        in6->sin6_family = AF_INET6;
        in6->sin6_port = htons((uint16_t)port);
        out->v6 = true;
        out->loopback = IN6_IS_ADDR_LOOPBACK(&in6->sin6_addr);
        return 0;
    }
    snprintf(why, whylen,
             "'%s': the host must be an IP address (127.0.0.1, [::1], localhost, ...), "
             "not a name",
             text);
    return -EINVAL;
}
