/*
 * fuzz_json.c - the CLI's JSON line input: json_to_update on arbitrary
 * bytes (as `parksync push` reads them), then three agreements:
 *   - the reason buffer is always a terminated string, even a tiny one;
 *   - the CLI's JSON output of an update reads back as the same update;
 *   - what the CLI accepts (json_update_check) the daemon's decoder accepts.
 */
#include "fuzz.h"
#include "json.h"

#define WHY_SIZE 512 /* bytes, as parksync push passes */

/* json_from_message -> text -> json_to_update gives the same message. */
static void check_json_roundtrip(const Parksync__V1__Update *u)
{
    json_t *j = json_from_message(&u->base);
    char *text, why[WHY_SIZE];
    Parksync__V1__Update *back = NULL;

    FUZZ_CHECK(j != NULL);
    text = json_dumps(j, JSON_COMPACT);
    FUZZ_CHECK(text != NULL);
    if (json_to_update(text, strlen(text), &back, why, sizeof why) != 0) {
        fprintf(stderr, "fuzz: CLI output does not read back: %s\n  %s\n", why, text);
        abort();
    }
    FUZZ_CHECK(fuzz_same_encoding(&u->base, &back->base));
    parksync__v1__update__free_unpacked(back, NULL);
    free(text);
    json_decref(j);
}

/* An update the CLI would send must pass the daemon's decoder unchanged. */
static void check_daemon_accepts(const Parksync__V1__Update *u)
{
    size_t len;
    uint8_t *buf = fuzz_pack(&u->base, &len);
    Parksync__V1__Update *d = NULL;
    const char *why = NULL;
    int rc = wire_update_decode(buf, len, &d, &why);

    if (rc != 0) {
        fprintf(stderr, "fuzz: CLI accepted an update the daemon refuses (%d: %s)\n", rc,
                why != NULL ? why : "?");
        abort();
    }
    FUZZ_CHECK(fuzz_same_encoding(&u->base, &d->base));
    parksync__v1__update__free_unpacked(d, NULL);
    free(buf);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    Parksync__V1__Update *u = NULL;
    char why[WHY_SIZE];
    char tiny[8];
    int rc = json_to_update((const char *)data, size, &u, why, sizeof why);

    FUZZ_CHECK(memchr(why, '\0', sizeof why) != NULL);
    if (rc < 0) {
        FUZZ_CHECK(rc == -EINVAL && u == NULL && why[0] != '\0');
        /* The same failure into a reason buffer too small for it. */
        FUZZ_CHECK(json_to_update((const char *)data, size, &u, tiny, sizeof tiny) == rc);
        FUZZ_CHECK(u == NULL && memchr(tiny, '\0', sizeof tiny) != NULL);
        return 0;
    }
    FUZZ_CHECK(rc == 0 && u != NULL);
    FUZZ_CHECK(u->body_case != PARKSYNC__V1__UPDATE__BODY__NOT_SET);
    check_json_roundtrip(u);
    if (json_update_check(u, "FUZZ-1", why, sizeof why) == 0)
        check_daemon_accepts(u);
    parksync__v1__update__free_unpacked(u, NULL);
    return 0;
}
