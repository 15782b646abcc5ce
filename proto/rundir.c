/*
 * rundir.c - see rundir.h.
 */
#include "rundir.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define RUNDIR_PATH_MAX 256 /* bytes of a directory path, with NUL (an endpoint's size) */

/* "uid 1001 (mallory)", or "uid 1001" when the name is unknown. */
static void owner_text(uid_t uid, char *buf, size_t len)
{
    struct passwd pw, *found = NULL;
    char scratch[1024];

    if (getpwuid_r(uid, &pw, scratch, sizeof scratch, &found) == 0 && found)
        snprintf(buf, len, "uid %u (%s)", (unsigned)uid, found->pw_name);
    else
        snprintf(buf, len, "uid %u", (unsigned)uid);
}

/* "gid 998 (parksync)", or "gid 998" when the name is unknown; with
 * name_only, "parksync" (or "998"). */
static void group_text(gid_t gid, bool name_only, char *buf, size_t len)
{
    struct group gr, *found = NULL;
    char scratch[1024];

    if (getgrgid_r(gid, &gr, scratch, sizeof scratch, &found) != 0 || !found)
        snprintf(buf, len, name_only ? "%u" : "gid %u", (unsigned)gid);
    else if (name_only)
        snprintf(buf, len, "%s", found->gr_name);
    else
        snprintf(buf, len, "gid %u (%s)", (unsigned)gid, found->gr_name);
}

/* Splits path at its last '/': dir gets what is before ("." when none,
 * "/" for the root), *base points at what is after. -EINVAL when base is
 * empty or dir does not fit. */
static int split_path(const char *path, char *dir, size_t dirlen, const char **base)
{
    const char *slash = strrchr(path, '/');
    int n;

    if (!slash)
        n = snprintf(dir, dirlen, ".");
    else
        n = snprintf(dir, dirlen, "%.*s", slash == path ? 1 : (int)(slash - path), path);
    *base = slash ? slash + 1 : path;
    return n < 0 || (size_t)n >= dirlen || **base == '\0' ? -EINVAL : 0;
}

/* mkdir -p: missing parents 0755, dir itself 0700 (less the umask). */
static int make_dirs(const char *dir)
{
    char buf[RUNDIR_PATH_MAX];

    if (snprintf(buf, sizeof buf, "%s", dir) >= (int)sizeof buf)
        return -ENAMETOOLONG;
    for (char *p = buf + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        if (mkdir(buf, 0755) < 0 && errno != EEXIST)
            return -errno;
        *p = '/';
    }
    if (mkdir(buf, 0700) < 0 && errno != EEXIST)
        return -errno;
    return 0;
}

/* Opens name (relative to at) as a directory, never through a symlink at
 * its last component, and fstats it. shown names it in why. Returns the
 * descriptor or a negative errno. */
static int open_dir(int at, const char *name, const char *shown, struct stat *st, char *why,
                    size_t whylen)
{
    int fd = openat(at, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    int err;

    if (fd < 0) {
        err = errno;
        if (err == ELOOP || err == ENOTDIR) {
            snprintf(why, whylen,
                     "%s is a symlink or not a directory; the control socket needs a "
                     "directory of its own",
                     shown);
            return -ENOTDIR;
        }
        if (err == ENOENT)
            snprintf(why, whylen, "%s does not exist (is parksyncd running? it makes it)", shown);
        else
            snprintf(why, whylen, "cannot open %s: %s", shown, strerror(err));
        return -err;
    }
    if (fstat(fd, st) < 0) {
        err = errno;
        snprintf(why, whylen, "cannot stat %s: %s", shown, strerror(err));
        close(fd);
        return -err;
    }
    return fd;
}

/* The daemon's rule on a directory it opened: its own, nothing for others,
 * no write for the group, and the group, when it may enter, the daemon's
 * own (the operators'): only they then reach the socket, and nobody but
 * the daemon can put an entry there. */
static bool private_enough(const struct stat *st)
{
    if (st->st_uid != geteuid() || (st->st_mode & 027) != 0)
        return false;
    return (st->st_mode & 070) == 0 || st->st_gid == getegid();
}

int rundir_open_private(const char *dir, char *why, size_t whylen)
{
    char owner[96], me[96], group[96], mygroup[96];
    const char *fix;
    struct stat st;
    int fd, rc;

    if ((rc = make_dirs(dir)) < 0) {
        snprintf(why, whylen, "cannot create %s: %s", dir, strerror(-rc));
        return rc;
    }
    fd = open_dir(AT_FDCWD, dir, dir, &st, why, whylen);
    if (fd < 0)
        return fd;
    if (private_enough(&st))
        return fd;
    owner_text(st.st_uid, owner, sizeof owner);
    owner_text(geteuid(), me, sizeof me);
    group_text(st.st_gid, false, group, sizeof group);
    group_text(getegid(), false, mygroup, sizeof mygroup);
    if (st.st_uid != geteuid())
        fix = "remove it (or set [endpoints] control elsewhere) and start again";
    else if ((st.st_mode & 027) != 0)
        fix = "chmod 0750 it (under systemd: RuntimeDirectoryMode=0750) and start again";
    else
        fix = "chgrp it to the daemon's group (or chmod 0700 it) and start again";
    snprintf(why, whylen,
             "%s belongs to %s with mode %04o, group %s, but the control socket's directory "
             "must belong to the daemon's user, %s, with mode 0700, or 0750 when its group is "
             "the daemon's, %s, or another local user could swap the socket or reach it; %s",
             dir, owner, (unsigned)(st.st_mode & 07777), group, me, mygroup, fix);
    close(fd);
    return -EPERM;
}

int rundir_check_trusted(const char *dir, char *why, size_t whylen)
{
    char parent[RUNDIR_PATH_MAX], owner[96];
    const char *base;
    struct stat pst, st;
    bool parent_holds, root_made, trusted;
    uid_t me = geteuid();
    int pfd, fd;

    if (split_path(dir, parent, sizeof parent, &base) < 0) {
        snprintf(why, whylen, "%s: not a directory path the control socket can be in", dir);
        return -EINVAL;
    }
    /* The parent may be reached through a symlink (/var/run); what matters
     * is who can rename entries in it. */
    pfd = open(parent, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (pfd < 0) {
        int err = errno;
        snprintf(why, whylen, "%s does not exist (is parksyncd running? it makes it)", dir);
        if (err != ENOENT)
            snprintf(why, whylen, "cannot open %s: %s", parent, strerror(err));
        return -err;
    }
    if (fstat(pfd, &pst) < 0) {
        int err = errno;
        snprintf(why, whylen, "cannot stat %s: %s", parent, strerror(err));
        close(pfd);
        return -err;
    }
    fd = open_dir(pfd, base, dir, &st, why, whylen);
    close(pfd);
    if (fd < 0)
        return fd;
    close(fd);
    /* Only the parent's owner, and others when it is writable and not
     * sticky, can rename the directory away and put another in its place. */
    parent_holds = (pst.st_uid == 0 || pst.st_uid == me) &&
                   ((pst.st_mode & 022) == 0 || (pst.st_mode & S_ISVTX) != 0);
    root_made = pst.st_uid == 0 && (pst.st_mode & 022) == 0;
    trusted =
        (st.st_mode & 022) == 0 && parent_holds && (st.st_uid == me || st.st_uid == 0 || root_made);
    if (trusted)
        return 0;
    owner_text(st.st_uid, owner, sizeof owner);
    snprintf(why, whylen,
             "%s belongs to %s with mode %04o, in %s (uid %u, mode %04o): another local user "
             "could put a socket of their own there and answer for parksyncd. Trusted is a "
             "directory others cannot write that belongs to you or root, or that root made "
             "in a folder only root writes (systemd's /run/parksync); remove it and restart "
             "parksyncd, or give --control",
             dir, owner, (unsigned)(st.st_mode & 07777), parent, (unsigned)pst.st_uid,
             (unsigned)(pst.st_mode & 07777));
    return -EPERM;
}

int rundir_check_access(const char *dir, const char *name, char *why, size_t whylen)
{
    char path[2 * RUNDIR_PATH_MAX], group[96], owner[96];
    struct stat st;
    bool sock_seen;

    snprintf(path, sizeof path, "%s/%s", dir, name);
    /* connect(2) on a unix socket needs write permission on it and search
     * permission on every directory above it: what access(2) checks, with
     * the real ids the CLI runs under. */
    if (access(path, W_OK) == 0)
        return 0;
    if (errno == ENOENT) {
        snprintf(why, whylen, "%s does not exist (is parksyncd running? it makes it)", path);
        return -ENOENT;
    }
    if (errno != EACCES && errno != EPERM) {
        int err = errno;
        snprintf(why, whylen, "cannot use %s: %s", path, strerror(err));
        return -err;
    }
    /* Who could use it: the group that may enter the directory (or write
     * the socket, when the directory can be entered). */
    sock_seen = stat(path, &st) == 0;
    if (!sock_seen && stat(dir, &st) < 0) {
        snprintf(why, whylen, "permission denied on %s: run as root or as the daemon's user", path);
        return -EACCES;
    }
    group_text(st.st_gid, true, group, sizeof group);
    owner_text(st.st_uid, owner, sizeof owner);
    if ((st.st_mode & (sock_seen ? 020 : 010)) != 0)
        snprintf(why, whylen,
                 "permission denied on %s: run as root or join group %s (and log in again)", path,
                 group);
    else
        snprintf(why, whylen,
                 "permission denied on %s: run as root or as the daemon's user, %s (its %s %s "
                 "has mode %04o: no group may use it)",
                 path, owner, sock_seen ? "socket" : "directory", sock_seen ? path : dir,
                 (unsigned)(st.st_mode & 07777));
    return -EACCES;
}

int rundir_split(const char *endpoint, char *dir, size_t dirlen, char *name, size_t namelen)
{
    const char *base;

    if (strncmp(endpoint, "ipc://", 6) != 0 || split_path(endpoint + 6, dir, dirlen, &base) < 0 ||
        strlen(base) >= namelen)
        return -EINVAL;
    memcpy(name, base, strlen(base) + 1);
    return 0;
}
