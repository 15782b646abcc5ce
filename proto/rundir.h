/*
 * rundir.h - may the directory that holds the control socket be trusted?
 *
 * A unix socket's own mode says who may connect to it, but whoever can
 * write the directory that holds it can put another socket in its place:
 * the daemon would then be bound where nobody connects, and the CLI would
 * ask an attacker for `status` or `reload`. Both sides therefore check the
 * directory through a descriptor opened without following a symlink
 * (O_DIRECTORY | O_NOFOLLOW, then fstat), so the directory checked is the
 * directory used, and say plainly what is wrong and what to do.
 *
 * The daemon's rule (rundir_open_private): the directory belongs to the
 * daemon's effective user, gives nothing to others and no write to its
 * group, and a group that may enter it is the daemon's own: 0700, or 0750
 * with the daemon's group (the operators' group, whose members may then
 * use the socket), whether the daemon made it or found it.
 *
 * The CLI's rule (rundir_check_trusted): others cannot write the directory
 * and it belongs to the CLI's user, to root, or sits in a folder only root
 * can write (so root made it and gave it away: systemd's /run/parksync of
 * the service user); and that folder cannot have it renamed by others.
 */
#ifndef PARKSYNC_RUNDIR_H
#define PARKSYNC_RUNDIR_H

#include <stddef.h>

/* Makes dir (mode 0700, missing parents 0755, both less the umask) when it
 * does not exist, opens it and checks the daemon's rule (0700, or 0750 with
 * the daemon's group). Returns the open
 * directory (O_DIRECTORY, close-on-exec; the caller closes it), or a
 * negative errno with one line in why naming the directory, its owner and
 * mode, and the fix: -EPERM (wrong owner or mode), -ENOTDIR (not a
 * directory, or a symlink), or what mkdir/open failed with. */
int rundir_open_private(const char *dir, char *why, size_t whylen);

/* Checks the CLI's rule on dir without creating anything. Returns 0, or
 * -ENOENT (dir or its parent does not exist: no daemon made it), -EPERM
 * (untrusted), -ENOTDIR, or what open failed with, with one line in why. */
int rundir_check_trusted(const char *dir, char *why, size_t whylen);

/* Checks that this process may connect to the socket dir/name (write on
 * it, search on the directories above it), so the CLI can say why at once
 * instead of waiting for an answer that cannot come. Returns 0, or -ENOENT
 * (no such socket), -EACCES (one line in why naming the socket and who may
 * use it: root, the daemon's user, or members of the group that may enter
 * the directory), or what access failed with. */
int rundir_check_access(const char *dir, const char *name, char *why, size_t whylen);

/* Splits an ipc:// endpoint's path into its directory and file name.
 * Returns 0, or -EINVAL when endpoint is not ipc://DIR/NAME or a part does
 * not fit (dirlen, namelen bytes with NUL). */
int rundir_split(const char *endpoint, char *dir, size_t dirlen, char *name, size_t namelen);

#endif /* PARKSYNC_RUNDIR_H */
