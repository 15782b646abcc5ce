#!/usr/bin/python3
"""A producer process for tests/python/run.py: sends parks P-1..P-N with
an outbox, resuming after what the outbox already holds, and prints its
progress ("acked K") so the test can kill it mid-way.

  push_child.py PACKAGE_DIR INGEST PUBLISH QUERY OUTBOX N
"""

import sys

sys.path.insert(0, sys.argv[1])
import parksync  # noqa: E402


def park(i):
    """Update i: park P-i with reported_residents = i, so the consolidated
    picture shows which update reached it."""
    return parksync.pb.Update(park=parksync.pb.Park(
        park_id="P-%d" % i, country="AZ", name="Park %d" % i, reported_residents=i))


def main():
    _, _, ingest, publish, query, outbox, n = sys.argv
    n = int(n)
    # A window well below n, so that sending waits for acks and the test's
    # kill lands while updates are in flight. With the default (32768)
    # every update of 20000 was sent at once, and on a loaded machine the
    # child was flushing, printing nothing, when the acks reached the
    # kill point: it ended unkilled.
    with parksync.Producer("AZ-KILL", ingest=ingest, publish=publish, query=query,
                           outbox=outbox, connect_timeout=10, window=1024) as p:
        # Update i gets sequence i: the outbox numbers on after the last
        # update it made durable, which is the last line enqueued.
        start = p.last_sent + 1
        print("start %d" % start, flush=True)
        for i in range(start, n + 1):
            seq = p.send(park(i))
            assert seq == i, (seq, i)
            if i % 64 == 0:
                p.poll()
                print("acked %d" % p.last_acked, flush=True)
        p.flush(timeout=60)
        print("done %d" % p.last_acked, flush=True)


if __name__ == "__main__":
    main()
