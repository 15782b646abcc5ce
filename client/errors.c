/*
 * errors.c - ps_strerror: the text of libparksync's result codes.
 */
#include "parksync.h"

const char *ps_strerror(ps_err_t err)
{
    switch (err) {
    case PS_OK:
        return "success";
    case PS_ERR_INVALID:
        return "invalid argument or update";
    case PS_ERR_NOMEM:
        return "out of memory";
    case PS_ERR_SOCKET:
        return "ZeroMQ socket failure";
    case PS_ERR_TIMEOUT:
        return "timed out waiting for parksyncd";
    case PS_ERR_PROTOCOL:
        return "parksyncd sent an unexpected or undecodable reply";
    case PS_ERR_REFUSED:
        return "parksyncd refused the request";
    case PS_ERR_OUTBOX:
        return "the producer's outbox database failed";
    case PS_ERR_CLOSED:
        return "the stream has ended";
    case PS_ERR_INTERRUPTED:
        return "interrupted by a signal";
    case PS_ERR_AHEAD:
        return "the producer is ahead of parksyncd's database (sequences are missing there)";
    }
    return "unknown error";
}
