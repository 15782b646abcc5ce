/*
 * json_update.c - a line of input into an Update: the body key, the
 * optional event_time (RFC 3339) or event_time_us and vintage, the
 * envelope the producer fills in, and json_update_check. The fields
 * themselves are mapped by json.c.
 */
#include "json.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "json_int.h"
#include "wire.h"

/* ---------------------------------------------------------------- the Update envelope */

int json_to_update(const char *line, size_t len, Parksync__V1__Update **out, char *why,
                   size_t whylen)
{
    conv_t c = {.why = why, .whylen = whylen};
    json_error_t jerr;
    json_t *root;
    int rc;

    *out = NULL;
    if (whylen > 0)
        why[0] = '\0';
    if (line == NULL)
        return json_fail(&c, NULL, "no input");
    root = json_loadb(line, len, JSON_REJECT_DUPLICATES, &jerr);
    if (root == NULL)
        return json_fail(&c, NULL, "invalid JSON at column %d: %s", jerr.column, jerr.text);
    rc = json_object_to_update(root, out, why, whylen);
    json_decref(root);
    return rc;
}

int json_object_to_update(const json_t *root, Parksync__V1__Update **out, char *why, size_t whylen)
{
    conv_t c = {.why = why, .whylen = whylen};
    json_t *body = NULL;
    ProtobufCMessage *msg = NULL;
    Parksync__V1__Update *u = NULL;
    int64_t event_us = 0;
    bool have_time = false;
    int rc = -EINVAL;

    *out = NULL;
    if (whylen > 0)
        why[0] = '\0';
    if (!json_is_object(root)) {
        json_fail(&c, NULL, "expected a JSON object, got %s", json_type_name(root));
        goto out;
    }
    body = json_object();
    if (body == NULL) {
        json_fail(&c, NULL, "out of memory");
        goto out;
    }
    const char *key;
    json_t *v;
    json_object_foreach((json_t *)root, key, v)
    {
        if (strcmp(key, "event_time") == 0) {
            if (!json_is_string(v)) {
                json_fail(&c, "event_time",
                          "expected an RFC 3339 string such as "
                          "\"2020-10-31T00:00:00Z\", got %s",
                          json_type_name(v));
                goto out;
            }
            if (json_parse_time(json_string_value(v), &event_us) < 0) {
                json_fail(&c, "event_time",
                          "'%.40s' is not an RFC 3339 time such as "
                          "\"2020-10-31T00:00:00Z\"",
                          json_string_value(v));
                goto out;
            }
            have_time = true;
        } else if (strcmp(key, "version") == 0 || strcmp(key, "producer_id") == 0 ||
                   strcmp(key, "sequence") == 0) {
            json_fail(&c, key, "set by the producer, not by the input");
            goto out;
        } else if (json_object_set(body, key, v) < 0) {
            json_fail(&c, NULL, "out of memory");
            goto out;
        }
    }
    if (have_time && json_object_get(body, "event_time_us") != NULL) {
        json_fail(&c, NULL, "give event_time or event_time_us, not both");
        goto out;
    }
    rc = json_to_message(body, &parksync__v1__update__descriptor, &msg, why, whylen);
    if (rc < 0)
        goto out;
    u = (Parksync__V1__Update *)msg;
    msg = NULL;
    rc = -EINVAL;
    if (u->body_case == PARKSYNC__V1__UPDATE__BODY__NOT_SET) {
        json_fail(&c, NULL,
                  "no body: expected one of \"park\", \"resident\", \"trade\", "
                  "\"country\", \"delete\"");
        goto out;
    }
    if (have_time) {
        u->has_event_time_us = 1;
        u->event_time_us = event_us;
    }
    *out = u;
    u = NULL;
    rc = 0;
out:
    if (u != NULL)
        parksync__v1__update__free_unpacked(u, NULL);
    json_decref(body);
    return rc;
}

int json_update_check(Parksync__V1__Update *u, const char *producer_id, char *why, size_t whylen)
{
    const char *reason = NULL;
    char *copy = strdup(producer_id != NULL ? producer_id : "");

    if (copy == NULL) {
        snprintf(why, whylen, "out of memory");
        return -ENOMEM;
    }
    free(u->producer_id);
    u->producer_id = copy;
    u->has_version = 1;
    u->version = WIRE_VERSION;
    if (!u->has_sequence || u->sequence == 0) {
        u->has_sequence = 1;
        u->sequence = 1;
    }
    if (!u->has_event_time_us || u->event_time_us == 0) {
        u->has_event_time_us = 1;
        u->event_time_us = wire_now_us();
    }
    if (wire_update_validate(u, &reason) < 0) {
        snprintf(why, whylen, "invalid update: %s", reason != NULL ? reason : "rejected");
        return -EINVAL;
    }
    return 0;
}

/* ---------------------------------------------------------------- time */

static bool digits(const char *s, int n, int *out)
{
    int x = 0;
    for (int i = 0; i < n; i++) {
        if (!isdigit((unsigned char)s[i]))
            return false;
        x = x * 10 + (s[i] - '0');
    }
    *out = x;
    return true;
}

/* Days from 1970-01-01 to y-m-d in the proleptic Gregorian calendar. */
static int64_t days_from_civil(int64_t y, unsigned m, unsigned d)
{
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    unsigned yoe = (unsigned)(y - era * 400);
    unsigned doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + (int64_t)doe - 719468;
}

int json_parse_time(const char *s, int64_t *us)
{
    int y, mo, d, h, mi, sec, oh = 0, om = 0;
    static const int mdays[12] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};

    if (s == NULL || strlen(s) < 20 || !digits(s, 4, &y) || s[4] != '-' || !digits(s + 5, 2, &mo) ||
        s[7] != '-' || !digits(s + 8, 2, &d) || (s[10] != 'T' && s[10] != 't') ||
        !digits(s + 11, 2, &h) || s[13] != ':' || !digits(s + 14, 2, &mi) || s[16] != ':' ||
        !digits(s + 17, 2, &sec))
        return -EINVAL;
    if (mo < 1 || mo > 12 || d < 1 || d > mdays[mo - 1] || h > 23 || mi > 59 || sec > 60)
        return -EINVAL;
    bool leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    if (mo == 2 && d == 29 && !leap)
        return -EINVAL;
    if (sec == 60)
        sec = 59; /* a leap second is kept within its minute */
    const char *p = s + 19;
    int64_t frac = 0;
    if (*p == '.') {
        int n = 0;
        p++;
        while (isdigit((unsigned char)*p)) {
            if (n < 6) {
                frac = frac * 10 + (*p - '0');
                n++;
            }
            p++;
        }
        if (n == 0)
            return -EINVAL;
        for (; n < 6; n++)
            frac *= 10;
    }
    int sign = 0;
    if (*p == 'Z' || *p == 'z') {
        p++;
    } else if (*p == '+' || *p == '-') {
        sign = *p == '+' ? 1 : -1;
        if (!digits(p + 1, 2, &oh) || p[3] != ':' || !digits(p + 4, 2, &om) || oh > 23 || om > 59)
            return -EINVAL;
        p += 6;
    } else {
        return -EINVAL;
    }
    if (*p != '\0')
        return -EINVAL;
    int64_t secs = days_from_civil(y, (unsigned)mo, (unsigned)d) * 86400 + h * 3600 + mi * 60 + sec;
    secs -= sign * (oh * 3600 + om * 60);
    *us = secs * 1000000 + frac;
    return 0;
}
