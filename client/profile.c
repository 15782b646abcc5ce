/*
 * profile.c - ps_profile_*: the user's and the machine's client.conf and
 * the PARKSYNC_* environment merged into one ps_profile_t, with the
 * precedence parksync.h states (the caller's own options come first and
 * are the caller's to apply). Reading and rewriting one file is
 * profile_file.c's.
 */
#include "parksync.h"

#include <errno.h>
#include <pwd.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "keys.h"
#include "profile_int.h"
#include "wire.h"

const profile_key_t PROFILE_KEYS[PROFILE_N_KEYS] = {
    {"ingest", "PARKSYNC_INGEST", offsetof(ps_profile_t, ingest), false, true},
    {"publish", "PARKSYNC_PUBLISH", offsetof(ps_profile_t, publish), false, true},
    {"query", "PARKSYNC_QUERY", offsetof(ps_profile_t, query), false, true},
    {"control", "PARKSYNC_CONTROL", offsetof(ps_profile_t, control), false, true},
    {"server_key", "PARKSYNC_SERVER_KEY", offsetof(ps_profile_t, server_key), true, false},
    {"key", "PARKSYNC_KEY", offsetof(ps_profile_t, key), true, false},
    {"producer", "PARKSYNC_PRODUCER", offsetof(ps_profile_t, producer), false, false},
};

static ps_profile_value_t *value_of(ps_profile_t *p, size_t i)
{
    return (ps_profile_value_t *)((char *)p + PROFILE_KEYS[i].offset);
}

void profile_default_paths(profile_paths_t *paths)
{
    const char *xdg = getenv("XDG_CONFIG_HOME");
    const char *home = getenv("HOME");

    memset(paths, 0, sizeof *paths);
    snprintf(paths->system, sizeof paths->system, "%s", PROFILE_SYSTEM_FILE);
    /* The XDG base directory spec ignores a relative XDG_CONFIG_HOME. */
    if (xdg != NULL && xdg[0] == '/') {
        snprintf(paths->user, sizeof paths->user, "%s/parksync/client.conf", xdg);
        return;
    }
    if (home == NULL || home[0] != '/') {
        struct passwd *pw = getpwuid(getuid());
        home = pw != NULL ? pw->pw_dir : NULL;
    }
    if (home != NULL && home[0] == '/')
        snprintf(paths->user, sizeof paths->user, "%s/.config/parksync/client.conf", home);
}

/* "FILE (absent)" or "FILE (contexts: a, b)" or "FILE (no contexts)". */
static void describe_file(const profile_file_t *f, const char *path, char *buf, size_t size)
{
    size_t used;

    if (path[0] == '\0') {
        snprintf(buf, size, "(no user file: neither XDG_CONFIG_HOME nor a home folder)");
        return;
    }
    if (!f->present) {
        snprintf(buf, size, "%s (%s%s)", path, f->hidden_errno ? "out of reach: " : "absent",
                 f->hidden_errno ? strerror(f->hidden_errno) : "");
        return;
    }
    if (f->n_sections == 0) {
        snprintf(buf, size, "%s (no contexts)", path);
        return;
    }
    used = (size_t)snprintf(buf, size, "%s (contexts:", path);
    for (size_t i = 0; i < f->n_sections && used < size; i++)
        used +=
            (size_t)snprintf(buf + used, size - used, "%s %s", i ? "," : "", f->sections[i].name);
    if (used < size)
        snprintf(buf + used, size - used, ")");
}

/* Both files; on failure err says which line of which. */
static ps_err_t read_both(const profile_paths_t *paths, profile_file_t *user, profile_file_t *sys,
                          char *err, size_t errlen)
{
    int rc;

    memset(sys, 0, sizeof *sys); /* freed below whether or not it was read */
    rc = profile_file_read(user, paths->user, err, errlen);
    if (rc == 0)
        rc = profile_file_read(sys, paths->system, err, errlen);
    if (rc == 0)
        return PS_OK;
    profile_file_free(user);
    profile_file_free(sys);
    return rc == -ENOMEM ? PS_ERR_NOMEM : PS_ERR_INVALID;
}

/* The default context's name and why it is the one, or NULL. */
static const char *default_context(const profile_file_t *user, const profile_file_t *sys, char *why,
                                   size_t whylen)
{
    const char *env = getenv("PARKSYNC_CONTEXT");

    if (env != NULL && env[0] != '\0') {
        snprintf(why, whylen, "PARKSYNC_CONTEXT");
        return env;
    }
    if (user->current[0] != '\0') {
        snprintf(why, whylen, "current in %s:%d", user->path, user->current_line);
        return user->current;
    }
    if (sys->current[0] != '\0') {
        snprintf(why, whylen, "current in %s:%d", sys->path, sys->current_line);
        return sys->current;
    }
    return NULL;
}

/* A context's value as the profile holds it: relative file names taken
 * from the folder of the file that names them, so a context means the
 * same whatever the working directory. */
static void set_from_file(ps_profile_value_t *v, const profile_key_t *k, const char *value,
                          int line, const char *file)
{
    const char *slash = strrchr(file, '/');

    if (k->path && value[0] != '/' && slash != NULL)
        snprintf(v->value, sizeof v->value, "%.*s/%s", (int)(slash - file), file, value);
    else
        snprintf(v->value, sizeof v->value, "%s", value);
    v->origin = PS_ORIGIN_CONTEXT;
    v->line = line;
}

ps_err_t profile_resolve_in(const profile_paths_t *paths, const char *context, ps_profile_t *out,
                            char *err, size_t errlen)
{
    profile_file_t user, sys;
    const profile_file_t *owner = NULL;
    const profile_section_t *s = NULL;
    char why[PS_PROFILE_VALUE_MAX + 64], a[1024], b[1024];
    const char *name = context;
    ps_err_t rc;

    memset(out, 0, sizeof *out);
    if ((rc = read_both(paths, &user, &sys, err, errlen)) != PS_OK)
        return rc;
    rc = PS_ERR_INVALID;
    if (name != NULL && name[0] != '\0')
        snprintf(why, sizeof why, "as asked");
    else
        name = default_context(&user, &sys, why, sizeof why);
    if (name != NULL) {
        if (!wire_id_valid(name)) {
            snprintf(err, errlen,
                     "context '%.80s' (%s): a context name is 1..64 characters of "
                     "[A-Za-z0-9._-]",
                     name, why);
            goto out;
        }
        if ((s = profile_file_find(&user, name)) != NULL)
            owner = &user;
        else if ((s = profile_file_find(&sys, name)) != NULL)
            owner = &sys;
        if (s == NULL) {
            describe_file(&user, paths->user, a, sizeof a);
            describe_file(&sys, paths->system, b, sizeof b);
            snprintf(err, errlen, "unknown context '%s' (%s); searched %s and %s", name, why, a, b);
            goto out;
        }
        snprintf(out->context, sizeof out->context, "%s", name);
        snprintf(out->file, sizeof out->file, "%s", owner->path);
        for (size_t i = 0; i < PROFILE_N_KEYS; i++)
            if (s->values[i] != NULL)
                set_from_file(value_of(out, i), &PROFILE_KEYS[i], s->values[i], s->lines[i],
                              owner->path);
    }
    for (size_t i = 0; i < PROFILE_N_KEYS; i++) {
        const char *env = getenv(PROFILE_KEYS[i].env);
        if (env == NULL || env[0] == '\0')
            continue;
        if (profile_check_value(&PROFILE_KEYS[i], env, a, sizeof a) < 0) {
            snprintf(err, errlen, "%s: %s", PROFILE_KEYS[i].env, a);
            goto out;
        }
        ps_profile_value_t *v = value_of(out, i);
        snprintf(v->value, sizeof v->value, "%s", env);
        v->origin = PS_ORIGIN_ENV;
        v->line = 0;
    }
    rc = PS_OK;
out:
    profile_file_free(&user);
    profile_file_free(&sys);
    return rc;
}

ps_err_t ps_profile_resolve(const char *context, ps_profile_t *out, char *err, size_t errlen)
{
    profile_paths_t paths;

    profile_default_paths(&paths);
    return profile_resolve_in(&paths, context, out, err, errlen);
}

/* Where a setting came from, for a message: "PARKSYNC_KEY" or "FILE:LINE". */
static const char *origin_of(const ps_profile_t *p, const ps_profile_value_t *v, char *buf,
                             size_t size)
{
    size_t i = 0;
    while (i < PROFILE_N_KEYS && value_of((ps_profile_t *)p, i) != v)
        i++;
    if (v->origin == PS_ORIGIN_ENV && i < PROFILE_N_KEYS)
        snprintf(buf, size, "%s", PROFILE_KEYS[i].env);
    else
        snprintf(buf, size, "%s:%d", p->file, v->line);
    return buf;
}

ps_err_t ps_profile_load(const char *context, ps_profile_t *out, char *err, size_t errlen)
{
    char why[PS_PROFILE_VALUE_MAX + 128], where[PS_PROFILE_VALUE_MAX + 16];
    ps_err_t rc = ps_profile_resolve(context, out, err, errlen);

    if (rc != PS_OK)
        return rc;
    if (out->server_key.value[0] == '\0' && out->key.value[0] == '\0')
        return PS_OK;
    if (out->server_key.value[0] == '\0' || out->key.value[0] == '\0') {
        const ps_profile_value_t *set = out->key.value[0] ? &out->key : &out->server_key;
        snprintf(err, errlen,
                 "%s sets %s without %s: CURVE needs the daemon's public key and our "
                 "secret key",
                 origin_of(out, set, where, sizeof where), set == &out->key ? "key" : "server_key",
                 set == &out->key ? "server_key" : "key");
        return PS_ERR_INVALID;
    }
    if (keys_read_file(out->server_key.value, false, out->server_public_key, why, sizeof why) < 0 ||
        keys_read_file(out->key.value, true, out->secret_key, why, sizeof why) < 0) {
        snprintf(err, errlen, "%s", why);
        out->server_public_key[0] = out->secret_key[0] = '\0';
        return PS_ERR_INVALID;
    }
    return PS_OK;
}

/* The value when set, else keep. */
static const char *or_keep(const ps_profile_value_t *v, const char *keep)
{
    return v->value[0] != '\0' ? v->value : keep;
}

/* The profile's CURVE keys, when ps_profile_load read them, into a
 * producer's or a subscriber's options (same three fields in both). */
static void set_curve(const ps_profile_t *prof, const char **server, const char **secret,
                      const char **public_key)
{
    if (prof->server_public_key[0] == '\0')
        return;
    *server = prof->server_public_key;
    *secret = prof->secret_key;
    *public_key = NULL; /* derived from the secret key */
}

void ps_profile_producer_options(const ps_profile_t *prof, ps_producer_options_t *opts)
{
    opts->producer_id = or_keep(&prof->producer, opts->producer_id);
    opts->ingest_endpoint = or_keep(&prof->ingest, opts->ingest_endpoint);
    opts->publish_endpoint = or_keep(&prof->publish, opts->publish_endpoint);
    opts->query_endpoint = or_keep(&prof->query, opts->query_endpoint);
    set_curve(prof, &opts->server_public_key, &opts->secret_key, &opts->public_key);
}

void ps_profile_subscriber_options(const ps_profile_t *prof, ps_subscriber_options_t *opts)
{
    opts->publish_endpoint = or_keep(&prof->publish, opts->publish_endpoint);
    opts->query_endpoint = or_keep(&prof->query, opts->query_endpoint);
    set_curve(prof, &opts->server_public_key, &opts->secret_key, &opts->public_key);
}

ps_err_t profile_list_in(const profile_paths_t *paths, ps_profile_list_fn fn, void *arg, char *err,
                         size_t errlen)
{
    profile_file_t user, sys;
    char why[256];
    ps_err_t rc;

    if ((rc = read_both(paths, &user, &sys, err, errlen)) != PS_OK)
        return rc;
    const char *current = default_context(&user, &sys, why, sizeof why);
    const profile_file_t *files[2] = {&user, &sys};
    for (size_t f = 0; f < 2; f++) {
        for (size_t i = 0; i < files[f]->n_sections; i++) {
            const profile_section_t *s = &files[f]->sections[i];
            if (f == 1 && profile_file_find(&user, s->name) != NULL)
                continue; /* hidden by the user's context of that name */
            if (fn(arg, s->name, files[f]->path, s->line,
                   current != NULL && strcmp(current, s->name) == 0) != 0)
                goto out;
        }
    }
out:
    profile_file_free(&user);
    profile_file_free(&sys);
    return PS_OK;
}

ps_err_t ps_profile_list(ps_profile_list_fn fn, void *arg, char *err, size_t errlen)
{
    profile_paths_t paths;

    profile_default_paths(&paths);
    return profile_list_in(&paths, fn, arg, err, errlen);
}

ps_err_t profile_use_in(const profile_paths_t *paths, const char *name, char *err, size_t errlen)
{
    profile_file_t user, sys;
    char a[1024], b[1024];
    ps_err_t rc;

    if (name == NULL || !wire_id_valid(name)) {
        snprintf(err, errlen, "'%.80s' is not a context name (1..64 characters of [A-Za-z0-9._-])",
                 name ? name : "");
        return PS_ERR_INVALID;
    }
    if (paths->user[0] == '\0') {
        snprintf(err, errlen, "no user config file: set XDG_CONFIG_HOME or HOME");
        return PS_ERR_INVALID;
    }
    if ((rc = read_both(paths, &user, &sys, err, errlen)) != PS_OK)
        return rc;
    rc = PS_ERR_INVALID;
    if (profile_file_find(&user, name) == NULL && profile_file_find(&sys, name) == NULL) {
        describe_file(&user, paths->user, a, sizeof a);
        describe_file(&sys, paths->system, b, sizeof b);
        snprintf(err, errlen, "unknown context '%s'; searched %s and %s", name, a, b);
        goto out;
    }
    if (profile_file_set_current(paths->user, name, err, errlen) == 0)
        rc = PS_OK;
out:
    profile_file_free(&user);
    profile_file_free(&sys);
    return rc;
}

ps_err_t ps_profile_use(const char *name, char *err, size_t errlen)
{
    profile_paths_t paths;

    profile_default_paths(&paths);
    return profile_use_in(&paths, name, err, errlen);
}
