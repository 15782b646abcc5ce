/*
 * keys.h - CURVE keys as text: Z85 (ZeroMQ RFC 32) and key files.
 *
 * Both sides need this: the daemon reads its secret key and the public
 * keys its config lists, the client library and the CLI read a client's
 * secret key and the daemon's public key. proto/ must not depend on
 * ZeroMQ (wire.h), yet reading a key file means telling a key from a
 * comment, so the Z85 check is here (the RFC's alphabet and group
 * bound, no codec). Turning keys into bytes and back (zmq_z85_decode,
 * zmq_z85_encode) and deriving a public key from a secret one
 * (zmq_curve_public) are left to the callers, which link ZeroMQ anyway.
 *
 * Key file format, written by `parksync keygen`: UTF-8 text; blank lines
 * and lines starting with '#' are ignored (unless the line is itself a
 * key: '#' is a Z85 digit); exactly one other line holds the
 * 40-character Z85 key. NAME.key holds the secret key (mode 0600),
 * NAME.pub the public key (0644).
 *
 * Conventions: int functions return 0 or a negative errno; `err` receives
 * one line naming the file and what is wrong.
 */
#ifndef PARKSYNC_KEYS_H
#define PARKSYNC_KEYS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define KEYS_BIN_LEN  32   /* bytes of a CURVE key */
#define KEYS_Z85_LEN  40   /* characters of a key in Z85, without NUL */
#define KEYS_FILE_MAX 4096 /* bytes of a key file at most */

/* True when s is exactly KEYS_Z85_LEN Z85 characters that decode to a
 * 32-byte key (each group of five at most 2^32 - 1). A string that passes
 * is safe to hand to zmq_z85_decode with a KEYS_BIN_LEN buffer, which
 * checks neither the length nor that the buffer is large enough. */
bool keys_z85_valid(const char *s);

/* Reads a key file into z85 (NUL-terminated). With `secret`, the file
 * must not be accessible to others (no o+rwx bits; group access is the
 * operator's choice). Returns 0, -ENOENT/-EACCES/... when it cannot be
 * read, -EPERM when a secret file is open to others, -EINVAL when it
 * does not hold exactly one Z85 key. */
int keys_read_file(const char *path, bool secret, char z85[KEYS_Z85_LEN + 1], char *err,
                   size_t errlen);

/* A public key written in a config: the key itself (40 Z85 characters)
 * or the path of a .pub file. Same returns as keys_read_file. */
int keys_parse_public(const char *text, char z85[KEYS_Z85_LEN + 1], char *err, size_t errlen);

#endif /* PARKSYNC_KEYS_H */
