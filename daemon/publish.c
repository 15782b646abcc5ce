/*
 * publish.c - what parksyncd sends on its publish socket: record
 * publications with their per-topic stream sequences, acks, heartbeats
 * (with the health while degraded), summaries republished; and the
 * subscriptions its peers send (server_int.h).
 */
#include "server_int.h"

/* ---------------------------------------------------------------- publishing */

/* Next stream_sequence of a topic: 1, 2, 3, ... from daemon start. */
static uint64_t next_sequence(server_t *s, const char *topic)
{
    uint64_t *seq = strmap_upsert(&s->topic_seq, topic);

    if (!seq) {
        log_error("out of memory tracking topic %s; sending stream sequence 0", topic);
        return 0;
    }
    return ++*seq;
}

/* Next stream_sequence of an ack topic. Acks are not counted in
 * topic_seq, which no heartbeat lists them from and which would keep
 * one entry for every producer ever acknowledged: they live in two
 * generations instead, and a topic acknowledged in neither of the last
 * two ACK_IDLE_MS periods is forgotten (its sequence starts again at 1,
 * as after a restart; the ack's last_sequence is what a producer reads). */
static uint64_t next_ack_sequence(server_t *s, const char *topic)
{
    uint64_t *seq = strmap_find(&s->ack_seq[0], topic), *old;

    if (seq)
        return ++*seq;
    old = strmap_find(&s->ack_seq[1], topic);
    seq = strmap_upsert(&s->ack_seq[0], topic);
    if (!seq) {
        log_error("out of memory tracking topic %s; sending stream sequence 0", topic);
        return 0;
    }
    *seq = old ? *old : 0;
    return ++*seq;
}

/* Once per ACK_IDLE_MS: the older generation of ack topics goes. */
void age_ack_topics(server_t *s, int64_t now)
{
    if (now < s->next_ack_age_ms)
        return;
    strmap_free(&s->ack_seq[1]);
    s->ack_seq[1] = s->ack_seq[0];
    s->ack_seq[0] = (strmap_t){0};
    s->next_ack_age_ms = now + ACK_IDLE_MS;
}

/* A trade flow concerns two countries: it goes out on the exporter's
 * topic and, with the same revision, on the importer's, so that a
 * country's subscriber needs nothing but prefix filtering. */
static void publish_importer_copy(server_t *s, uint64_t revision, const char *exporter,
                                  const uint8_t *record, size_t len)
{
    Parksync__V1__Record *r = parksync__v1__record__unpack(NULL, len, record);
    char topic[WIRE_MAX_TOPIC];

    if (!r || r->body_case != PARKSYNC__V1__RECORD__BODY_TRADE || !r->trade->importer) {
        log_error("revision %" PRIu64 " is a trade flow without an importer; published on "
                  "the exporter's topic only",
                  revision);
    } else if (exporter && strcmp(exporter, r->trade->importer) == 0) {
        /* one country: the one topic has it */
    } else if (wire_topic_record(topic, sizeof topic, PARKSYNC__V1__RECORD_KIND__RECORD_KIND_TRADE,
                                 r->trade->importer) < 0 ||
               wire_publication_record(&s->pubbuf, next_sequence(s, topic), record, len) < 0) {
        log_error("cannot publish revision %" PRIu64 " on the importer's topic; its "
                  "subscribers will see a gap",
                  revision);
    } else {
        server_publish(s, topic, s->pubbuf.data, s->pubbuf.len);
        s->n.published++;
    }
    if (r)
        parksync__v1__record__free_unpacked(r, NULL);
}

/* What publish_changes hands store_changes: the server, and the last
 * revision it may publish (with the syncer, the last one synced). */
typedef struct publishing {
    server_t *s;
    uint64_t upto;
} publishing_t;

static int on_change(void *arg, uint64_t revision, Parksync__V1__RecordKind kind,
                     const char *country, const uint8_t *record, size_t len)
{
    const publishing_t *pub = arg;
    server_t *s = pub->s;
    char topic[WIRE_MAX_TOPIC];

    if (revision > pub->upto)
        return 1; /* not synced yet (syncer.h) */
    if (wire_topic_record(topic, sizeof topic, kind, country) < 0) {
        log_error("revision %" PRIu64 " has no valid topic (kind %d, country %s); "
                  "not publishing it",
                  revision, (int)kind, country ? country : "-");
    } else if (wire_publication_record(&s->pubbuf, next_sequence(s, topic), record, len) < 0) {
        log_error("out of memory publishing revision %" PRIu64 "; subscribers will see "
                  "a gap",
                  revision);
    } else {
        server_publish(s, topic, s->pubbuf.data, s->pubbuf.len);
        s->n.published++;
        if (kind == PARKSYNC__V1__RECORD_KIND__RECORD_KIND_SUMMARY)
            s->summaries_published = true;
        if (kind == PARKSYNC__V1__RECORD_KIND__RECORD_KIND_TRADE)
            publish_importer_copy(s, revision, country, record, len);
    }
    s->published_rev = revision;
    return 0;
}

/* Revisions that can no longer be published must not pass silently:
 * every record topic skips one stream sequence, so each subscriber sees a
 * loss at its next record or heartbeat and recovers from the change log
 * (TOO_OLD when it no longer reaches back). */
static void announce_loss(server_t *s)
{
    size_t rec = strlen(WIRE_TOPIC_RECORDS);

    for (size_t i = 0; i < s->topic_seq.cap; i++)
        if (strncmp(s->topic_seq.slots[i].key, WIRE_TOPIC_RECORDS, rec) == 0)
            s->topic_seq.slots[i].value++;
}

/* Publishes every committed change not yet published, up to upto. */
void publish_changes(server_t *s, uint64_t upto)
{
    publishing_t pub = {s, upto < store_head(s->store) ? upto : store_head(s->store)};
    int rc = store_changes(s->store, s->published_rev, on_change, &pub);

    if (rc == -ERANGE) {
        log_warning("changes after revision %" PRIu64 " left the change log before they "
                    "were published; skipping to revision %" PRIu64 " and announcing a "
                    "loss on every topic",
                    s->published_rev, pub.upto);
        s->published_rev = pub.upto;
        announce_loss(s);
    } else if (rc < 0) {
        char what[96];
        snprintf(what, sizeof what,
                 "cannot read the change log after revision %" PRIu64 " to publish it",
                 s->published_rev);
        server_store_failed(s, rc, false, what, store_errmsg(s->store));
    }
    /* what is not published yet stays in the change log */
    store_pin_changes(s->store, s->published_rev);
    /* the web page gets what subscribers got, in the same pass (with the
     * syncer, once no summary the store holds is newer) */
    if (s->summaries_published && control_page(s->control))
        s->summaries_published =
            !page_summaries(control_page(s->control), s->store, s->published_rev);
}

static void publish_small(server_t *s, const char *topic, uint64_t sequence,
                          Parksync__V1__Publication *p)
{
    uint8_t buf[REPLY_MAX];
    size_t len;

    p->has_version = true;
    p->version = WIRE_VERSION;
    p->has_stream_sequence = true;
    p->stream_sequence = sequence;
    if (protobuf_c_message_get_packed_size(&p->base) > sizeof buf)
        return; /* cannot happen: ids are at most WIRE_MAX_ID bytes */
    len = protobuf_c_message_pack(&p->base, buf);
    server_publish(s, topic, buf, len);
}

uint64_t ack_value(server_t *s, const char *producer_id)
{
    return s->acks ? acks_safe(s->acks, producer_id) : store_producer_last(s->store, producer_id);
}

void publish_ack(server_t *s, const char *producer_id)
{
    uint64_t last = ack_value(s, producer_id);

    if (s->acks && last == 0)
        return; /* with peers:N, nothing of it is safe yet */
    publish_ack_at(s, producer_id, last);
}

void publish_ack_at(server_t *s, const char *producer_id, uint64_t last)
{
    Parksync__V1__Publication p = PARKSYNC__V1__PUBLICATION__INIT;
    Parksync__V1__Ack ack = PARKSYNC__V1__ACK__INIT;
    char topic[WIRE_MAX_TOPIC];

    if (wire_topic_ack(topic, sizeof topic, producer_id) < 0)
        return;
    ack.producer_id = (char *)producer_id;
    ack.has_last_sequence = true;
    ack.last_sequence = last;
    p.body_case = PARKSYNC__V1__PUBLICATION__BODY_ACK;
    p.ack = &ack;
    publish_small(s, topic, next_ack_sequence(s, topic), &p);
    s->n.acks++;
    log_debug("acknowledged %s through sequence %" PRIu64, producer_id, last);
}

static void on_safe(void *arg, const char *producer_id, uint64_t seq)
{
    (void)seq;
    publish_ack(arg, producer_id);
}

/* The countries a producer's updates may be for: its ministry's and its
 * grants'; n = 0 when no [ministry] lists it (authority off: any). */
static size_t producer_countries(const config_t *cfg, const char *id, char out[][3], size_t max)
{
    for (size_t m = 0; m < cfg->n_ministries; m++) {
        const config_ministry_t *mi = &cfg->ministries[m];
        bool listed = mi->n_producers == 0 && strcmp(mi->name, id) == 0;
        for (size_t k = 0; !listed && k < mi->n_producers; k++)
            listed = strcmp(mi->producers[k], id) == 0;
        if (!listed)
            continue;
        size_t n = 0;
        memcpy(out[n++], mi->country, 3);
        for (size_t g = 0; g < mi->n_grants && n < max; g++)
            memcpy(out[n++], mi->grants[g].country, 3);
        return n;
    }
    return 0;
}

/* True when puller p keeps every write of a producer of countries cc. */
static bool puller_covers(const puller_stats_t *p, char cc[][3], size_t n)
{
    if (p->all_countries)
        return true;
    if (n == 0)
        return false; /* it may write any country */
    for (size_t i = 0; i < n; i++) {
        bool kept = false;
        for (size_t k = 0; !kept && k < p->n_countries; k++)
            kept = strcmp(p->countries[k], cc[i]) == 0;
        if (!kept)
            return false;
    }
    return true;
}

/* acks_safe_fn: the commit N sites that keep this producer's writes have
 * stored. */
static uint64_t safe_for(void *arg, const char *producer_id)
{
    server_t *s = arg;
    char cc[1 + CONFIG_MAX_GRANTS][3];
    uint64_t commits[PEERS_MAX_PULLERS];
    size_t nc = producer_countries(&s->cfg, producer_id, cc, sizeof cc / sizeof cc[0]), n = 0;

    for (size_t i = 0; i < s->n_pullers; i++)
        if (s->pullers[i].counts && puller_covers(&s->pullers[i], cc, nc))
            commits[n++] = s->pullers[i].commit;
    return acks_nth_highest(commits, n, acks_peers(s->acks));
}

void acks_after_commit(server_t *s)
{
    acks_release(s->acks, safe_for, s, NULL, NULL); /* its producers' acks follow */
}

void acks_after_pull(server_t *s)
{
    acks_release(s->acks, safe_for, s, on_safe, s);
}

/* The checkpoint thread's failures, as a condition of the health. */
void health_of_checkpoints(server_t *s)
{
    int err = 0;

    if (checkpoint_failing(s->checkpoint, &err) == 0)
        health_clear(&s->health, HEALTH_CHECKPOINT);
    else if (s->health.cond[HEALTH_CHECKPOINT].since_us == 0)
        health_raise(&s->health, HEALTH_CHECKPOINT, "%s; the WAL grows until one works",
                     store_strerror(-err));
}

/* The heartbeat carries the epoch, the head, this start's instance id and
 * the last stream sequence of every record topic, so a subscriber can
 * tell a lost record even on a topic that has gone quiet. */
void publish_heartbeat(server_t *s)
{
    Parksync__V1__Publication p = PARKSYNC__V1__PUBLICATION__INIT;
    Parksync__V1__Heartbeat hb = PARKSYNC__V1__HEARTBEAT__INIT;
    Parksync__V1__Health health;
    char reason[HEALTH_REASON * HEALTH_CONDITIONS];
    Parksync__V1__TopicSequence *ts = NULL, **tsp = NULL;
    size_t n = 0, len;
    uint8_t *buf;

    /* The heartbeat's own sequence first: taking it may insert "hb/" and
     * move the table, and the topic list below points into that table. */
    p.has_stream_sequence = true;
    p.stream_sequence = next_sequence(s, WIRE_TOPIC_HEARTBEAT);
    if (s->topic_seq.count > 0) {
        ts = calloc(s->topic_seq.count, sizeof *ts);
        tsp = calloc(s->topic_seq.count, sizeof *tsp);
    }
    for (size_t i = 0; ts && tsp && i < s->topic_seq.cap && n < WIRE_MAX_HB_TOPICS; i++) {
        const strmap_entry_t *e = &s->topic_seq.slots[i];
        if (strncmp(e->key, WIRE_TOPIC_RECORDS, strlen(WIRE_TOPIC_RECORDS)) != 0)
            continue; /* acks and heartbeats: nobody checks their sequence */
        parksync__v1__topic_sequence__init(&ts[n]);
        ts[n].topic = (char *)e->key;
        ts[n].has_sequence = true;
        ts[n].sequence = e->value;
        tsp[n] = &ts[n];
        n++;
    }
    hb.n_topics = n;
    hb.topics = tsp;
    hb.has_instance = true;
    hb.instance.data = s->instance;
    hb.instance.len = WIRE_INSTANCE_BYTES;
    hb.has_epoch = true;
    hb.epoch.data = (uint8_t *)store_epoch(s->store);
    hb.epoch.len = WIRE_EPOCH_BYTES;
    /* What was published, not what was committed: a subscriber whose
     * topics are all complete at this heartbeat has every revision up to
     * head_revision (proto/README.md, Subscribers, rule 3). */
    hb.has_head_revision = true;
    hb.head_revision = s->published_rev;
    hb.has_time_us = true;
    hb.time_us = wire_now_us();
    if (health_degraded(&s->health)) { /* producers waiting for acks learn why */
        health_to_proto(&s->health, &health, reason, sizeof reason);
        hb.health = &health;
    }
    hb.has_pulls = hb.pulls = peers_pulling(s);
    p.body_case = PARKSYNC__V1__PUBLICATION__BODY_HEARTBEAT;
    p.heartbeat = &hb;
    p.has_version = true;
    p.version = WIRE_VERSION;
    len = protobuf_c_message_get_packed_size(&p.base);
    if (len <= WIRE_MAX_MSG && (buf = malloc(len)) != NULL) {
        protobuf_c_message_pack(&p.base, buf);
        server_publish(s, WIRE_TOPIC_HEARTBEAT, buf, len);
        free(buf);
        s->n.heartbeats++;
    } else {
        log_error("cannot build a heartbeat of %zu bytes; skipping it", len);
    }
    free(ts);
    free(tsp);
}

static int on_summary(void *arg, uint64_t revision, Parksync__V1__RecordKind kind,
                      const char *country, const uint8_t *record, size_t len);

/* Publishes every live country summary again, marked as a repeat (same
 * revision): a dashboard that only listens gets the whole picture within
 * summary_republish_s, and subscribers that track revisions drop it. */
void republish_summaries(server_t *s)
{
    store_filter_t f = {.kind = PARKSYNC__V1__RECORD_KIND__RECORD_KIND_SUMMARY};
    store_cursor_t *c;
    const uint8_t *rec;
    size_t len;
    int err = 0, rc;

    c = store_snapshot_open(s->store, &f, &err);
    if (!c) {
        log_warning("cannot read the summaries to publish them again: %s (%s); retrying at the "
                    "next interval",
                    strerror(err < 0 ? -err : EIO), store_errmsg(s->store));
        return;
    }
    while ((rc = store_cursor_next(c, &rec, &len)) == 1)
        on_summary(s, 0, PARKSYNC__V1__RECORD_KIND__RECORD_KIND_SUMMARY, NULL, rec, len);
    if (rc < 0)
        log_warning("reading the summaries failed: %s (%s)", strerror(-rc), store_cursor_errmsg(c));
    store_cursor_close(&c);
}

static int on_summary(void *arg, uint64_t revision, Parksync__V1__RecordKind kind,
                      const char *country, const uint8_t *record, size_t len)
{
    server_t *s = arg;
    Parksync__V1__Record *r = parksync__v1__record__unpack(NULL, len, record);
    char topic[WIRE_MAX_TOPIC];

    (void)revision;
    (void)country;
    if (r && r->body_case == PARKSYNC__V1__RECORD__BODY_SUMMARY &&
        wire_topic_record(topic, sizeof topic, kind, r->summary->country) >= 0 &&
        wire_publication_repeat(&s->pubbuf, next_sequence(s, topic), record, len) == 0) {
        server_publish(s, topic, s->pubbuf.data, s->pubbuf.len);
        s->n.published++;
    }
    if (r)
        parksync__v1__record__free_unpacked(r, NULL);
    return 0;
}

/* Applies (or refuses) the subscriptions waiting on the publish XPUB. A
 * subscription that covers "hb/" asks for a welcome heartbeat: ZeroMQ
 * hands over one peer's subscriptions in order, so a client that
 * subscribes to "hb/" last knows, when a heartbeat arrives after it, that
 * all its earlier subscriptions are active (no slow joiner). Any
 * heartbeat sent once the drain has caught up will do, so welcomes are
 * coalesced: at most one per WELCOME_MIN_MS however many subscriptions
 * ask (each is a broadcast of every record topic's sequence). A SUB that
 * subscribed before connecting sends its subscriptions in byte order,
 * "hb/" before "rec/...", all at once: waiting until nothing is left
 * waiting covers those too. */
void drain_subscriptions(server_t *s)
{
    const subscriptions_stats_t *st;
    bool welcome = false;

    s->subs_backlog = subscriptions_drain(s->subs, SUBSCRIPTION_BUDGET, &welcome) == 0;
    s->welcome_wanted |= welcome;
    st = subscriptions_stats(s->subs);
    s->n.subscriptions_refused = st->refused;
    s->n.subscribers_dropped = st->cut;
}

bool welcome_due(const server_t *s, int64_t now)
{
    return s->welcome_wanted && !s->subs_backlog && now >= s->last_heartbeat_ms + WELCOME_MIN_MS;
}
