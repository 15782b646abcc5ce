/*
 * be_redis.c - Redis 7 with its append-only file: appendfsync always (an
 * update is acknowledged after the fsync of the event-loop pass that read
 * it, so a pipeline commits as a group) paired with parksync FULL, and
 * everysec paired with NORMAL. The client is hiredis, pipelining SETs.
 */
#define _GNU_SOURCE /* ppoll */
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <hiredis/hiredis.h>

#include "peers.h"

#define PIPE_BATCH 128  /* SETs buffered before they are written */
#define SCAN_COUNT 1000 /* keys per SCAN step of a snapshot */

/* One pipelining client. */
typedef struct redis_conn {
    redisContext *ctx; /* blocking context, written and read by hand */
    unsigned buffered; /* SETs appended but not yet written */
    uint64_t reported; /* replies seen: tags 0 .. reported-1 */
} redis_conn_t;

static int redis_start(peer_server_t *s)
{
    char port[16], log[300];

    if ((s->port = peer_free_port()) < 0)
        return -1;
    snprintf(port, sizeof port, "%d", s->port);
    snprintf(log, sizeof log, "%s/redis.log", s->dir);
    char *argv[] = {"/usr/bin/redis-server",
                    "--bind",
                    "127.0.0.1",
                    "--port",
                    port,
                    "--dir",
                    s->dir,
                    "--appendonly",
                    "yes",
                    "--appendfsync",
                    s->durability == PEER_FSYNC ? "always" : "everysec",
                    "--save",
                    "",
                    "--protected-mode",
                    "no",
                    "--daemonize",
                    "no",
                    NULL};
    return peer_server_spawn(s, argv, log);
}

static redisContext *redis_open(const peer_server_t *s)
{
    redisContext *ctx = redisConnect("127.0.0.1", s->port);

    if (ctx == NULL || ctx->err) {
        fprintf(stderr, "peers: redis connect: %s\n", ctx != NULL ? ctx->errstr : "no memory");
        redisFree(ctx);
        return NULL;
    }
    return ctx;
}

static void *redis_connect(peer_server_t *s, unsigned window)
{
    redis_conn_t *c = calloc(1, sizeof *c);

    (void)window; /* the cell keeps the window */
    if (c == NULL || (c->ctx = redis_open(s)) == NULL) {
        free(c);
        return NULL;
    }
    return c;
}

static int redis_kick(void *cv)
{
    redis_conn_t *c = cv;
    int done = 0;

    /* The window keeps the replies in flight far below the socket buffer,
     * so writing all of a pipeline before reading cannot deadlock. */
    while (!done)
        if (redisBufferWrite(c->ctx, &done) != REDIS_OK) {
            fprintf(stderr, "peers: redis write: %s\n", c->ctx->errstr);
            return -1;
        }
    c->buffered = 0;
    return 0;
}

static int redis_put(void *cv, const peer_record_t *r, uint64_t tag)
{
    redis_conn_t *c = cv;

    (void)tag;
    if (redisAppendCommand(c->ctx, "SET %s %b", r->key, r->bytes, r->len) != REDIS_OK)
        return -1;
    return ++c->buffered >= PIPE_BATCH ? redis_kick(c) : 0;
}

/* Takes the replies already read: their count, or -1 on an error reply. */
static long take_replies(redis_conn_t *c, peer_ack_fn *fn, void *arg)
{
    void *reply;
    long n = 0;

    while (redisReaderGetReply(c->ctx->reader, &reply) == REDIS_OK && reply != NULL) {
        bool bad = ((redisReply *)reply)->type == REDIS_REPLY_ERROR;
        if (bad)
            fprintf(stderr, "peers: redis: %s\n", ((redisReply *)reply)->str);
        freeReplyObject(reply);
        if (bad)
            return -1;
        n++;
    }
    if (n > 0)
        fn(arg, c->reported, (uint64_t)n);
    c->reported += (uint64_t)n;
    return n;
}

static long redis_poll(void *cv, int64_t timeout_us, peer_ack_fn *fn, void *arg)
{
    redis_conn_t *c = cv;
    struct pollfd p = {.fd = c->ctx->fd, .events = POLLIN};
    long n = take_replies(c, fn, arg);

    if (n != 0)
        return n;
    /* Microseconds: at 20,000 updates/s the next send is 50 us away. */
    struct timespec ts = {.tv_sec = timeout_us / 1000000, .tv_nsec = timeout_us % 1000000 * 1000};
    if (ppoll(&p, 1, &ts, NULL) > 0) {
        if (redisBufferRead(c->ctx) != REDIS_OK) {
            fprintf(stderr, "peers: redis read: %s\n", c->ctx->errstr);
            return -1;
        }
        return take_replies(c, fn, arg);
    }
    return 0;
}

/* Values delivered by one MGET reply. */
static long count_values(const redisReply *mget)
{
    long n = 0;

    for (size_t i = 0; mget != NULL && i < mget->elements; i++)
        n += mget->element[i]->type == REDIS_REPLY_STRING;
    return n;
}

/* SCAN, and an MGET of each step's keys pipelined with the next SCAN. */
static long redis_snapshot(peer_server_t *s, uint64_t expect)
{
    redisContext *ctx = redis_open(s);
    redisReply *scan = NULL, *mget = NULL;
    long n = 0;

    (void)expect;
    if (ctx == NULL)
        return -1;
    redisAppendCommand(ctx, "SCAN 0 COUNT %d", SCAN_COUNT);
    for (;;) {
        if (redisGetReply(ctx, (void **)&scan) != REDIS_OK || scan->type != REDIS_REPLY_ARRAY ||
            scan->elements != 2)
            goto fail;
        const redisReply *keys = scan->element[1];
        bool last = strcmp(scan->element[0]->str, "0") == 0;
        if (keys->elements > 0) {
            const char **argv = malloc((keys->elements + 1) * sizeof *argv);
            size_t *lens = malloc((keys->elements + 1) * sizeof *lens);
            argv[0] = "MGET";
            lens[0] = 4;
            for (size_t i = 0; i < keys->elements; i++) {
                argv[i + 1] = keys->element[i]->str;
                lens[i + 1] = keys->element[i]->len;
            }
            redisAppendCommandArgv(ctx, (int)keys->elements + 1, argv, lens);
            free(argv);
            free(lens);
        }
        if (!last)
            redisAppendCommand(ctx, "SCAN %s COUNT %d", scan->element[0]->str, SCAN_COUNT);
        if (keys->elements > 0) {
            if (redisGetReply(ctx, (void **)&mget) != REDIS_OK)
                goto fail;
            n += count_values(mget);
            freeReplyObject(mget);
            mget = NULL;
        }
        freeReplyObject(scan);
        scan = NULL;
        if (last)
            break;
    }
    redisFree(ctx);
    return n;
fail:
    fprintf(stderr, "peers: redis snapshot: %s\n", ctx->err ? ctx->errstr : "unexpected reply");
    if (scan != NULL)
        freeReplyObject(scan);
    redisFree(ctx);
    return -1;
}

static void redis_close(void *cv)
{
    redis_conn_t *c = cv;

    if (c == NULL)
        return;
    redisFree(c->ctx);
    free(c);
}

const peer_ops_t peer_redis = {
    .name = "redis",
    .start = redis_start,
    .connect = redis_connect,
    .put = redis_put,
    .kick = redis_kick,
    .poll = redis_poll,
    .snapshot = redis_snapshot,
    .close = redis_close,
};
