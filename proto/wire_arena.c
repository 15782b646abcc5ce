/*
 * wire_arena.c - memory for decoded messages that die together.
 *
 * protobuf-c unpacks a message with one malloc for every sub-message,
 * string, repeated field and scratch slab: a chunk of 90 residents is some
 * 700 allocations, and their malloc and free were a third of a
 * subscriber's time in a snapshot. An arena cuts them from one block
 * instead, frees nothing one by one, and takes everything back at once.
 *
 * What the block has no room for is malloc'ed on the side and counted;
 * the next reset grows the block to what the messages since the last one
 * took, up to ARENA_KEEP_MAX, so a reader whose messages are alike soon
 * needs nothing but its block. A new arena has no block: the first
 * message sizes it, a few hundred bytes for a subscriber's live records,
 * some hundred KiB for its snapshot chunks.
 */
#include "wire.h"

#include <stdalign.h>
#include <stdlib.h>

#define ARENA_KEEP_MAX (WIRE_MAX_MSG) /* a block is never grown past this */

/* An allocation the block had no room for. */
struct spill {
    struct spill *next;
    alignas(max_align_t) unsigned char data[];
};

struct wire_arena {
    ProtobufCAllocator allocator; /* what protobuf-c is handed; its data is the arena */
    unsigned char *block;
    size_t size, used;
    struct spill *spills; /* since the last reset */
    size_t spilled;       /* their bytes */
};

static void *arena_alloc(void *data, size_t n)
{
    wire_arena_t *a = data;
    size_t align = alignof(max_align_t);

    if (n > SIZE_MAX - align - sizeof(struct spill))
        return NULL;
    n = (n + align - 1) & ~(align - 1);
    if (n == 0)
        n = align; /* NULL would say out of memory, and a new arena has no block */
    if (n <= a->size - a->used) {
        void *p = a->block + a->used;
        a->used += n;
        return p;
    }
    struct spill *s = malloc(sizeof *s + n);
    if (s == NULL)
        return NULL;
    s->next = a->spills;
    a->spills = s;
    a->spilled += n;
    return s->data;
}

static void arena_free(void *data, void *p)
{
    (void)data;
    (void)p; /* taken back by wire_arena_reset */
}

wire_arena_t *wire_arena_new(void)
{
    wire_arena_t *a = calloc(1, sizeof *a);

    if (a != NULL)
        a->allocator = (ProtobufCAllocator){arena_alloc, arena_free, a};
    return a;
}

ProtobufCAllocator *wire_arena_allocator(wire_arena_t *a)
{
    return a != NULL ? &a->allocator : NULL;
}

void wire_arena_reset(wire_arena_t *a)
{
    size_t want;

    if (a == NULL)
        return;
    while (a->spills != NULL) {
        struct spill *next = a->spills->next;
        free(a->spills);
        a->spills = next;
    }
    want = a->used + a->spilled;
    if (want > ARENA_KEEP_MAX)
        want = ARENA_KEEP_MAX; /* a larger message spills what is beyond */
    if (want > a->size) {
        unsigned char *bigger = malloc(want);
        if (bigger != NULL) { /* else the old block serves, with spills */
            free(a->block);
            a->block = bigger;
            a->size = want;
        }
    }
    a->used = 0;
    a->spilled = 0;
}

size_t wire_arena_held(const wire_arena_t *a)
{
    return a != NULL ? a->used + a->spilled : 0;
}

void wire_arena_free(wire_arena_t **ap)
{
    if (ap == NULL || *ap == NULL)
        return;
    wire_arena_reset(*ap);
    free((*ap)->block);
    free(*ap);
    *ap = NULL;
}
