/*
 * control.c - see control.h.
 *
 * Sections: the socket; replies; reload; the drain loop (one handler per
 * request body, in control_status.c and control_backup.c); deferred work
 * (STATUS, metrics over HTTP).
 */
#include "control_int.h"

/* ---------------------------------------------------------------- the socket */

/* Binds the control socket into its directory as checked through a
 * descriptor (rundir.h), not merely into whatever the path names by then. */
static int bind_private(control_t *c, const char *endpoint)
{
    char dir[CONTROL_PATH_MAX], why[1024];
    struct stat st;

    if (rundir_split(endpoint, dir, sizeof dir, c->name, sizeof c->name) < 0) {
        log_error("[endpoints] control = %s: expected ipc://DIRECTORY/NAME; exiting", endpoint);
        return -EINVAL;
    }
    c->dirfd = rundir_open_private(dir, why, sizeof why);
    if (c->dirfd < 0) {
        log_error("refusing to start: the control socket %s: %s", endpoint, why);
        return c->dirfd;
    }
    /* A socket a crash left behind goes first: libzmq unlinks it too, but by
     * path, and then the check after binding would find the old one. */
    if (unlinkat(c->dirfd, c->name, 0) < 0 && errno != ENOENT) {
        log_error("cannot remove the old control socket %s/%s: %s; exiting", dir, c->name,
                  strerror(errno));
        return -errno;
    }
    if (zmq_bind(c->sock, endpoint) < 0) {
        int err = zmq_errno();
        log_error("cannot bind the control socket to %s: %s; exiting", endpoint, zmq_strerror(err));
        c->name[0] = '\0'; /* not ours to remove */
        return -err;
    }
    /* Only this user (and root) can make an entry in the directory: if the
     * socket is not there, the path led elsewhere while binding. */
    if (fstatat(c->dirfd, c->name, &st, AT_SYMLINK_NOFOLLOW) < 0 || !S_ISSOCK(st.st_mode) ||
        st.st_uid != geteuid()) {
        log_error("refusing to start: the control socket %s did not appear in the directory "
                  "%s that was checked (was the path changed while binding?)",
                  endpoint, dir);
        c->name[0] = '\0';
        return -EPERM;
    }
    /* The daemon's user and its group, the operators': the directory
     * decides whether the group reaches it at all (0700 or 0750, rundir.h). */
    if (fchmodat(c->dirfd, c->name, 0660, 0) < 0)
        log_warning("cannot set the control socket %s to mode 0660: %s", endpoint, strerror(errno));
    return 0;
}

control_t *control_new(void *zctx, const char *endpoint, store_t *store, const control_view_t *view)
{
    control_t *c = calloc(1, sizeof *c);
    int64_t maxmsg = WIRE_MAX_MSG; /* as every socket; the decoder caps requests lower */
    int linger = CONTROL_LINGER_MS, zero = 0;
    const config_t *cfg = view->cfg;

    if (!c) {
        log_error("out of memory for the control socket; exiting");
        return NULL;
    }
    c->store = store;
    c->view = *view;
    c->started_us = wire_now_us();
    c->next_status_ms = wire_monotonic_ms() + 1000; /* the first live STATUS soon after READY */
    c->dirfd = -1;
    c->sock = zmq_socket(zctx, ZMQ_ROUTER);
    if (!c->sock) {
        log_error("cannot create the control socket: %s; exiting", zmq_strerror(errno));
        goto fail;
    }
    zmq_setsockopt(c->sock, ZMQ_MAXMSGSIZE, &maxmsg, sizeof maxmsg);
    zmq_setsockopt(c->sock, ZMQ_LINGER, &linger, sizeof linger);
    zmq_setsockopt(c->sock, ZMQ_SNDTIMEO, &zero, sizeof zero);
    if (bind_private(c, endpoint) < 0)
        goto fail;
    if (strcmp(cfg->metrics_http, "off") != 0) {
        c->http = metrics_http_new(cfg->metrics_http);
        if (!c->http)
            goto fail;
    }
    if (strcmp(cfg->http_listen, "off") != 0) {
        c->page = page_new(cfg->http_listen, cfg->threshold_pct, cfg->cif_fob_factor);
        if (!c->page)
            goto fail;
        if (cfg->http_allow_remote)
            log_warning("[http] allow_remote = yes: the web page on %s shows the whole "
                        "consolidated picture to whoever reaches it, without authentication",
                        cfg->http_listen);
        page_summaries(c->page, store, UINT64_MAX); /* what the database holds, before any commit */
    }
    return c;
fail:
    control_destroy(&c);
    return NULL;
}

page_t *control_page(const control_t *c)
{
    return c->page;
}

void *control_socket(const control_t *c)
{
    return c->sock;
}

void control_destroy(control_t **cp)
{
    control_t *c;

    if (!cp || !*cp)
        return;
    c = *cp;
    if (c->backup) {
        store_backup_abort(&c->backup);
        log_warning("backup to %s abandoned: the daemon is stopping", c->backup_path);
        control_backup_error(c, "the daemon stopped before the backup was complete");
    }
    if (c->checking == CHECK_LIVE)
        control_reply_error_to(c, &c->check_for,
                               "the daemon stopped before the check was complete");
    metrics_http_destroy(&c->http);
    page_destroy(&c->page);
    if (c->sock)
        zmq_close(c->sock);
    if (c->dirfd >= 0) {
        if (c->name[0])
            unlinkat(c->dirfd, c->name, 0);
        close(c->dirfd);
    }
    free(c);
    *cp = NULL;
}

/* ---------------------------------------------------------------- replies */

void control_reply_to(control_t *c, const void *id, size_t id_len, uint64_t request_id,
                      Parksync__V1__ControlReply *r)
{
    size_t len;
    uint8_t *buf;

    r->has_version = true;
    r->version = WIRE_VERSION;
    r->has_request_id = true;
    r->request_id = request_id;
    buf = wire_pack(&r->base, &len);
    if (!buf) {
        log_error("out of memory packing a control reply; dropping it");
        return;
    }
    if (zmq_send(c->sock, id, id_len, ZMQ_SNDMORE | ZMQ_DONTWAIT) < 0 ||
        zmq_send(c->sock, buf, len, ZMQ_DONTWAIT) < 0)
        log_warning("cannot send a control reply: %s; dropping it", zmq_strerror(errno));
    free(buf);
}

void control_reply(control_t *c, const zmq_msg_t *id, uint64_t request_id,
                   Parksync__V1__ControlReply *r)
{
    control_reply_to(c, zmq_msg_data((zmq_msg_t *)id), zmq_msg_size((zmq_msg_t *)id), request_id,
                     r);
}

void control_error(control_t *c, const zmq_msg_t *id, uint64_t request_id,
                   Parksync__V1__ErrorCode code, const char *message)
{
    Parksync__V1__ControlReply r = PARKSYNC__V1__CONTROL_REPLY__INIT;
    Parksync__V1__Error e = PARKSYNC__V1__ERROR__INIT;

    e.has_code = true;
    e.code = code;
    e.message = (char *)message;
    r.body_case = PARKSYNC__V1__CONTROL_REPLY__BODY_ERROR;
    r.error = &e;
    control_reply(c, id, request_id, &r);
}

void control_keep_waiter(waiter_t *w, const zmq_msg_t *id, uint64_t request_id)
{
    size_t len = zmq_msg_size((zmq_msg_t *)id);

    w->len = len < sizeof w->id ? len : sizeof w->id;
    memcpy(w->id, zmq_msg_data((zmq_msg_t *)id), w->len);
    w->request_id = request_id;
}

void control_reply_error_to(control_t *c, const waiter_t *w, const char *message)
{
    Parksync__V1__ControlReply r = PARKSYNC__V1__CONTROL_REPLY__INIT;
    Parksync__V1__Error e = PARKSYNC__V1__ERROR__INIT;

    e.has_code = true;
    e.code = PARKSYNC__V1__ERROR_CODE__ERROR_CODE_INTERNAL;
    e.message = (char *)message;
    r.body_case = PARKSYNC__V1__CONTROL_REPLY__BODY_ERROR;
    r.error = &e;
    control_reply_to(c, w->id, w->len, w->request_id, &r);
}

static void handle_reload(control_t *c, const zmq_msg_t *id, uint64_t request_id)
{
    if (c->n_reloaders == CONTROL_WAITERS) {
        control_error(c, id, request_id, PARKSYNC__V1__ERROR_CODE__ERROR_CODE_BUSY,
                      "too many reload requests waiting");
        return;
    }
    control_keep_waiter(&c->reloaders[c->n_reloaders++], id, request_id);
    c->reload_pending = true;
    log_info("reload requested on the control socket");
}

bool control_reload_pending(const control_t *c)
{
    return c->reload_pending;
}

void control_reload_done(control_t *c, bool ok, const char *message)
{
    Parksync__V1__ControlReply r = PARKSYNC__V1__CONTROL_REPLY__INIT;
    Parksync__V1__Reload rl = PARKSYNC__V1__RELOAD__INIT;

    if (ok)
        c->reload_error[0] = '\0';
    else
        snprintf(c->reload_error, sizeof c->reload_error, "%s", message);
    rl.has_ok = true;
    rl.ok = ok;
    rl.message = (char *)message;
    r.body_case = PARKSYNC__V1__CONTROL_REPLY__BODY_RELOAD;
    r.reload = &rl;
    for (size_t i = 0; i < c->n_reloaders; i++)
        control_reply_to(c, c->reloaders[i].id, c->reloaders[i].len, c->reloaders[i].request_id,
                         &r);
    c->n_reloaders = 0;
    c->reload_pending = false;
    c->next_status_ms = 0; /* say it in STATUS at once */
}

/* ---------------------------------------------------------------- the drain loop */

static void handle(control_t *c, const zmq_msg_t *id, const zmq_msg_t *body)
{
    Parksync__V1__ControlRequest *q = NULL;
    const char *why = NULL;
    int rc = wire_control_request_decode(zmq_msg_data((zmq_msg_t *)body),
                                         zmq_msg_size((zmq_msg_t *)body), &q, &why);

    if (rc < 0) {
        c->bad_requests++;
        log_ratelimited(&c->rl, LOG_LEVEL_WARNING, "dropping a control request (%zu bytes): %s",
                        zmq_msg_size((zmq_msg_t *)body), why ? why : strerror(-rc));
        return;
    }
    switch (q->body_case) {
    case PARKSYNC__V1__CONTROL_REQUEST__BODY_CONFLICTS:
        control_handle_conflicts(c, id, q->request_id, q->conflicts);
        break;
    case PARKSYNC__V1__CONTROL_REQUEST__BODY_STATUS:
        control_handle_status(c, id, q->request_id, q->status);
        break;
    case PARKSYNC__V1__CONTROL_REQUEST__BODY_METRICS:
        control_handle_metrics(c, id, q->request_id);
        break;
    case PARKSYNC__V1__CONTROL_REQUEST__BODY_BACKUP:
        control_handle_backup(c, id, q->request_id, q->backup);
        break;
    case PARKSYNC__V1__CONTROL_REQUEST__BODY_RELOAD:
        handle_reload(c, id, q->request_id);
        break;
    case PARKSYNC__V1__CONTROL_REQUEST__BODY_CHECK:
        control_handle_check(c, id, q->request_id);
        break;
    case PARKSYNC__V1__CONTROL_REQUEST__BODY_DIGEST:
        control_handle_digest(c, id, q->request_id);
        break;
    default:
        c->bad_requests++;
        control_error(c, id, q->request_id, PARKSYNC__V1__ERROR_CODE__ERROR_CODE_BAD_REQUEST,
                      "this daemon does not answer that control request yet");
        break;
    }
    parksync__v1__control_request__free_unpacked(q, NULL);
}

void control_drain(control_t *c)
{
    for (int i = 0; i < CONTROL_BUDGET; i++) {
        zmq_msg_t id, body;
        int more = 0;
        size_t more_len = sizeof more;

        zmq_msg_init(&id);
        if (zmq_msg_recv(&id, c->sock, ZMQ_DONTWAIT) < 0) {
            zmq_msg_close(&id);
            return;
        }
        zmq_getsockopt(c->sock, ZMQ_RCVMORE, &more, &more_len);
        if (!more) {
            c->bad_requests++; /* a routing id with no request */
            zmq_msg_close(&id);
            continue;
        }
        zmq_msg_init(&body);
        zmq_msg_recv(&body, c->sock, 0);
        zmq_getsockopt(c->sock, ZMQ_RCVMORE, &more, &more_len);
        if (more) {
            /* [id][request] only; drain and drop anything longer */
            while (more) {
                zmq_msg_t rest;
                zmq_msg_init(&rest);
                zmq_msg_recv(&rest, c->sock, 0);
                zmq_msg_close(&rest);
                zmq_getsockopt(c->sock, ZMQ_RCVMORE, &more, &more_len);
            }
            c->bad_requests++;
            log_ratelimited(&c->rl, LOG_LEVEL_WARNING,
                            "control message has more than one frame, dropping");
        } else {
            handle(c, &id, &body);
        }
        zmq_msg_close(&body);
        zmq_msg_close(&id);
    }
}

/* ---------------------------------------------------------------- deferred work */

static void send_status_line(control_t *c)
{
    metrics_snapshot_t m;
    const server_counters_t *n = &m.n;
    char health[HEALTH_REASON * HEALTH_CONDITIONS], since[32] = "";
    int64_t since_us = health_report(c->view.health, health, sizeof health);

    if (since_us != 0) {
        time_t t = (time_t)(since_us / 1000000);
        struct tm tm;
        strftime(since, sizeof since, " since %Y-%m-%d %H:%M:%S UTC", gmtime_r(&t, &tm));
    }
    if (control_collect(c, &m, true, NULL) == 0)
        sd_notifyf(0,
                   "STATUS=%s%s%s%s%s%s%s%srevision %" PRIu64 ", %" PRIu64 " producers, %" PRIu64
                   " subscribers, %" PRIu64 " updates applied, %" PRIu64 " rejected",
                   since_us ? "DEGRADED" : "", since, since_us ? ": " : "", since_us ? health : "",
                   since_us ? "; " : "", c->reload_error[0] ? "reload failed: " : "",
                   c->reload_error,
                   c->reload_error[0] ? "; running the previous configuration; " : "",
                   m.head_revision, m.producers_total, m.subscribers, n->applied,
                   n->refused + n->invalid + n->undecodable + n->too_large + n->bad_frames +
                       n->wrong_topic);
    metrics_snapshot_free(&m);
}

bool control_tick(control_t *c, int64_t now)
{
    if (c->backup && !c->backup_sealed)
        control_step_backup(c);
    if (now >= c->next_status_ms) {
        send_status_line(c);
        c->next_status_ms = now + CONTROL_STATUS_MS;
    }
    if (c->http && now >= c->next_http_ms) {
        size_t len = 0;
        char *text = control_render(c, &len);
        if (text)
            metrics_http_update(c->http, text, len);
        free(text);
        uint64_t dropped = metrics_http_dropped(c->http);
        if (dropped > c->http_dropped)
            log_ratelimited(&c->http_rl, LOG_LEVEL_WARNING,
                            "metrics HTTP: closed %" PRIu64 " connections before a whole "
                            "request (silent too long, or malformed); %" PRIu64 " since start",
                            dropped - c->http_dropped, dropped);
        c->http_dropped = dropped;
        c->next_http_ms = now + CONTROL_HTTP_MS;
    }
    page_tick(c->page, *c->view.published, now);
    return c->backup != NULL && !c->backup_sealed; /* copying: no sleep between steps */
}
