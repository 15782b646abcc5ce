/*
 * control_backup.c - `parksync backup` and `parksync check`: the copy is
 * made a few thousand pages per loop pass, then checked with quick_check
 * on the checkpoint thread before it takes its name; a check of the live
 * database runs on that thread too. Each is answered when it ends.
 */
#include "control_int.h"

static void check_done(control_t *c, bool ok, bool malformed, const char *findings);

/* ---------------------------------------------------------------- backup and reload */

void control_backup_error(control_t *c, const char *message)
{
    control_reply_error_to(c, &c->backup_for, message);
}

void control_handle_backup(control_t *c, const zmq_msg_t *id, uint64_t request_id,
                           const Parksync__V1__BackupRequest *q)
{
    char msg[CONTROL_BACKUP_PATH + 256];
    int err = 0;

    if (!q->path || q->path[0] != '/') {
        control_error(c, id, request_id, PARKSYNC__V1__ERROR_CODE__ERROR_CODE_BAD_REQUEST,
                      "the backup path must be absolute: the daemon writes it, as its own user");
        return;
    }
    if (strlen(q->path) >= CONTROL_BACKUP_PATH - 8) {
        control_error(c, id, request_id, PARKSYNC__V1__ERROR_CODE__ERROR_CODE_BAD_REQUEST,
                      "the backup path is too long");
        return;
    }
    if (c->backup) {
        snprintf(msg, sizeof msg, "a backup to %s is running; try again when it is done",
                 c->backup_path);
        control_error(c, id, request_id, PARKSYNC__V1__ERROR_CODE__ERROR_CODE_BUSY, msg);
        return;
    }
    c->backup = store_backup_start(c->store, q->path, &err);
    if (!c->backup) {
        snprintf(msg, sizeof msg, "cannot start a backup to %s: %s (%s)", q->path,
                 store_strerror(err), store_errmsg(c->store));
        log_warning("%s", msg);
        control_error(c, id, request_id, PARKSYNC__V1__ERROR_CODE__ERROR_CODE_INTERNAL, msg);
        return;
    }
    c->backup_sealed = false;
    snprintf(c->backup_path, sizeof c->backup_path, "%s", q->path);
    control_keep_waiter(&c->backup_for, id, request_id);
    log_info("backup to %s started", c->backup_path);
}

#define WHY_MAX 600 /* a failure's reason, with its NUL */

/* Ends the running backup without a file: its temporary copy goes. */
static void backup_failed(control_t *c, const char *why)
{
    char msg[CONTROL_BACKUP_PATH + WHY_MAX + 64]; /* the path, the reason, and the words */

    store_backup_abort(&c->backup);
    snprintf(msg, sizeof msg, "backup to %s failed: %s; nothing was written there", c->backup_path,
             why);
    log_error("%s", msg);
    control_backup_error(c, msg);
}

/* The copy is complete: the checkpoint thread checks it before it takes
 * its name, unless a live check runs (then control_check_done asks). */
static void check_copy(control_t *c)
{
    char why[WHY_MAX];
    int rc;

    if (c->checking != CHECK_NONE)
        return;
    rc = checkpoint_check(c->view.checkpoint, store_backup_copy_path(c->backup));
    if (rc < 0) {
        snprintf(why, sizeof why, "cannot check the copy: %s", strerror(-rc));
        backup_failed(c, why);
        return;
    }
    c->checking = CHECK_COPY;
}

/* Copies the next pages of the running backup; once the copy is whole,
 * seals it and has it checked. */
void control_step_backup(control_t *c)
{
    char why[WHY_MAX];
    int rc = store_backup_step(c->backup, CONTROL_BACKUP_PAGES);

    if (rc == 0)
        return;
    if (rc > 0)
        rc = store_backup_seal(c->backup);
    if (rc < 0) {
        snprintf(why, sizeof why, "%s (%s)", store_strerror(rc), store_errmsg(c->store));
        backup_failed(c, why);
        return;
    }
    c->backup_sealed = true;
    check_copy(c);
}

/* The copy's check answered: a sound copy takes its name, a malformed
 * one goes, and says what that means for the live database. */
static void copy_checked(control_t *c, const check_result_t *r)
{
    Parksync__V1__ControlReply reply = PARKSYNC__V1__CONTROL_REPLY__INIT;
    Parksync__V1__Backup b = PARKSYNC__V1__BACKUP__INIT;
    char why[WHY_MAX];
    uint64_t bytes = 0, revision = 0;
    int rc;

    if (r->rc == -EUCLEAN) {
        check_done(c, false, true, r->message);
        snprintf(why, sizeof why,
                 "the copy is malformed (quick_check: %.400s), and so is the live database, "
                 "most likely: run `parksync check`",
                 r->message);
        backup_failed(c, why);
        return;
    }
    if (r->rc < 0) {
        snprintf(why, sizeof why, "cannot check the copy: %s (%.400s)", strerror(-r->rc),
                 r->message);
        backup_failed(c, why);
        return;
    }
    rc = store_backup_finish(&c->backup, &bytes, &revision);
    if (rc < 0) {
        snprintf(why, sizeof why, "%s (%s)", store_strerror(rc), store_errmsg(c->store));
        backup_failed(c, why);
        return;
    }
    log_info("backup to %s done: %" PRIu64 " bytes at revision %" PRIu64 ", quick_check ok",
             c->backup_path, bytes, revision);
    b.path = c->backup_path;
    b.has_bytes = b.has_revision = true;
    b.bytes = bytes;
    b.revision = revision;
    reply.body_case = PARKSYNC__V1__CONTROL_REPLY__BODY_BACKUP;
    reply.backup = &b;
    control_reply_to(c, c->backup_for.id, c->backup_for.len, c->backup_for.request_id, &reply);
}

/* ---------------------------------------------------------------- check */

/* A quick_check ended: a pass clears a malformed database's condition, a
 * finding raises it. */
static void check_done(control_t *c, bool ok, bool malformed, const char *findings)
{
    if (ok)
        health_clear(c->view.health, HEALTH_MALFORMED);
    else if (malformed)
        health_raise(c->view.health, HEALTH_MALFORMED, "quick_check: %s", findings);
}

void control_handle_check(control_t *c, const zmq_msg_t *id, uint64_t request_id)
{
    int rc;

    if (c->checking != CHECK_NONE) {
        control_error(c, id, request_id, PARKSYNC__V1__ERROR_CODE__ERROR_CODE_BUSY,
                      c->checking == CHECK_LIVE ? "a check of the database is running; try again "
                                                  "when it is done"
                                                : "a backup's copy is being checked; try again in "
                                                  "a moment");
        return;
    }
    rc = checkpoint_check(c->view.checkpoint, NULL);
    if (rc < 0) {
        control_error(c, id, request_id, PARKSYNC__V1__ERROR_CODE__ERROR_CODE_INTERNAL,
                      "cannot start the check; see the daemon's log");
        log_error("cannot start a check of the database: %s", strerror(-rc));
        return;
    }
    c->checking = CHECK_LIVE;
    c->check_started_ms = wire_monotonic_ms();
    control_keep_waiter(&c->check_for, id, request_id);
    log_info("check of the database started (quick_check, on the checkpoint thread)");
}

static void live_checked(control_t *c, const check_result_t *r)
{
    Parksync__V1__ControlReply reply = PARKSYNC__V1__CONTROL_REPLY__INIT;
    Parksync__V1__Check k = PARKSYNC__V1__CHECK__INIT;
    const config_t *cfg = c->view.cfg;
    int64_t took_ms = wire_monotonic_ms() - c->check_started_ms;
    char msg[sizeof r->message + 64];
    struct stat sb;

    if (r->rc < 0 && r->rc != -EUCLEAN) {
        snprintf(msg, sizeof msg, "cannot check the database: %s", r->message);
        log_error("%s", msg);
        control_reply_error_to(c, &c->check_for, msg);
        return;
    }
    check_done(c, r->rc == 0, r->rc == -EUCLEAN, r->message);
    if (r->rc == 0)
        log_notice("check of the database: quick_check found nothing wrong in %.1f s",
                   (double)took_ms / 1000);
    k.has_ok = k.has_took_us = true;
    k.ok = r->rc == 0;
    k.took_us = took_ms * 1000;
    if (r->rc != 0)
        k.findings = (char *)r->message;
    if (stat(cfg->database, &sb) == 0) {
        k.has_bytes = true;
        k.bytes = (uint64_t)sb.st_size;
    }
    reply.body_case = PARKSYNC__V1__CONTROL_REPLY__BODY_CHECK;
    reply.check = &k;
    control_reply_to(c, c->check_for.id, c->check_for.len, c->check_for.request_id, &reply);
}

void control_check_done(control_t *c)
{
    check_result_t r;
    int what = c->checking;

    if (!checkpoint_check_result(c->view.checkpoint, &r))
        return;
    c->checking = CHECK_NONE;
    if (what == CHECK_COPY && c->backup)
        copy_checked(c, &r);
    else if (what == CHECK_LIVE)
        live_checked(c, &r);
    if (c->backup && c->backup_sealed)
        check_copy(c); /* it waited for the live check */
}
