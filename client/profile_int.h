/*
 * profile_int.h - private to the profile files of libparksync:
 * profile_file.c reads and rewrites one client.conf, profile.c merges the
 * files and the environment into a ps_profile_t. The paths are a
 * parameter here so that tests can put both files where they like.
 */
#ifndef PARKSYNC_PROFILE_INT_H
#define PARKSYNC_PROFILE_INT_H

#include <stdbool.h>
#include <stddef.h>

#include "parksync.h"

#define PROFILE_SYSTEM_FILE    "/etc/parksync/client.conf" /* the machine's contexts */
#define PROFILE_CONTEXT_PREFIX "context "                  /* [context NAME] */
#define PROFILE_N_KEYS         7                           /* settings of a context */

/* The settings a context may hold, in the order of PROFILE_KEYS. */
typedef struct profile_key {
    const char *key; /* name in the file */
    const char *env; /* the environment variable that overrides it */
    size_t offset;   /* its ps_profile_value_t in ps_profile_t */
    bool path;       /* a file name: relative ones are taken from the file's folder */
    bool endpoint;   /* a ZeroMQ endpoint */
} profile_key_t;

extern const profile_key_t PROFILE_KEYS[PROFILE_N_KEYS];

/* One [context NAME] section. */
typedef struct profile_section {
    char name[PS_PROFILE_NAME_MAX]; /* NAME */
    int line;                       /* line of the [context NAME] header */
    char *values[PROFILE_N_KEYS];   /* owned; NULL when the section does not set it */
    int lines[PROFILE_N_KEYS];      /* line of each value */
} profile_section_t;

/* One client.conf as read. */
typedef struct profile_file {
    const char *path;                  /* as given (not owned) */
    bool present;                      /* false: the file does not exist (or see hidden_errno) */
    int hidden_errno;                  /* not 0: a folder above it could not be searched */
    char current[PS_PROFILE_NAME_MAX]; /* `current = NAME`; "" when not set */
    int current_line;                  /* its line */
    profile_section_t *sections;       /* owned */
    size_t n_sections;                 /* used */
} profile_file_t;

/* Where the two files are. */
typedef struct profile_paths {
    char user[PS_PROFILE_VALUE_MAX];   /* $XDG_CONFIG_HOME/parksync/client.conf; "" when no home */
    char system[PS_PROFILE_VALUE_MAX]; /* PROFILE_SYSTEM_FILE */
} profile_paths_t;

/* The files for this user: XDG_CONFIG_HOME when absolute, else
 * $HOME/.config (else the passwd entry's home). */
void profile_default_paths(profile_paths_t *paths);

/* Reads path into *f (zeroed first). A missing file is no error
 * (f->present = false), nor is one behind a folder this user may not
 * search (f->hidden_errno set: `sudo -u` keeps the caller's HOME, and a
 * command must not fail over a file that may not exist). Returns 0, or -EINVAL/-EIO/... with err =
 * "FILE:LINE: reason" or "FILE: reason". Free with profile_file_free. */
int profile_file_read(profile_file_t *f, const char *path, char *err, size_t errlen);

void profile_file_free(profile_file_t *f);

/* The section named name, or NULL. */
const profile_section_t *profile_file_find(const profile_file_t *f, const char *name);

/* Checks one value of key k as it would be used (an endpoint's scheme, a
 * producer id's characters). 0, or -EINVAL with the reason in why. */
int profile_check_value(const profile_key_t *k, const char *value, char *why, size_t whylen);

/* Sets `current = name` in the file at path, keeping every other line:
 * temporary file, fsync, rename, fsync of the folder. Creates the file
 * and its folder when missing. 0 or -errno with err. */
int profile_file_set_current(const char *path, const char *name, char *err, size_t errlen);

/* ps_profile_resolve, ps_profile_list and ps_profile_use on these files. */
ps_err_t profile_resolve_in(const profile_paths_t *paths, const char *context, ps_profile_t *out,
                            char *err, size_t errlen);
ps_err_t profile_list_in(const profile_paths_t *paths, ps_profile_list_fn fn, void *arg, char *err,
                         size_t errlen);
ps_err_t profile_use_in(const profile_paths_t *paths, const char *name, char *err, size_t errlen);

#endif /* PARKSYNC_PROFILE_INT_H */
