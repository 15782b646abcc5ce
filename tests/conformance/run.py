#!/usr/bin/python3
"""parksync conformance suite: the protocol of proto/README.md, tested
against the real parksyncd by a client written from the spec alone.

  /usr/bin/python3 tests/conformance/run.py --daemon build-test/bin/parksyncd \
      --cli build-test/bin/parksync --proto proto [unittest args]
"""

import argparse
import os
import shutil
import sqlite3
import sys
import tempfile
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import psclient as c  # noqa: E402

ARGS = None
pb = None

COUNTRIES = ["AZ", "KZ", "TJ", "UZ", "KG", "TM", "GE", "AM", "TR", "IR",
             "RU", "CN", "MN", "AF", "PK", "IN", "BY", "UA", "MD", "LV"]


class DaemonCase(unittest.TestCase):
    """Each test gets its own daemon and database in a temporary
    directory; CONFIG adds INI keys."""

    CONFIG = {}

    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="ps-conf-")
        self.daemon = c.Daemon(ARGS.daemon, self.tmp, self.CONFIG)
        self.daemon.start()
        self.q = c.Query(self.daemon.query)
        self.closers = [self.q]

    def tearDown(self):
        for s in self.closers:
            s.close()
        self.daemon.stop()
        shutil.rmtree(self.tmp, ignore_errors=True)

    def producer(self, pid="AZ-MOE"):
        p = c.Producer(self.daemon, pid)
        self.closers.append(p)
        return p

    def control(self):
        ctl = c.Control(self.daemon.control)
        self.closers.append(ctl)
        return ctl

    def subscriber(self, **kw):
        s = c.Subscriber(self.daemon, **kw)
        self.closers.append(s)
        return s

    def push_parks(self, p, first_seq, n, countries=("AZ",), batch=256):
        """Sends n park updates, seq first_seq.., spread over countries, in
        UpdateBatches; waits for the ack."""
        ups = []
        for i in range(n):
            cc = countries[i % len(countries)]
            ups.append(c.park_update(p.id, first_seq + i, cc,
                                     "%s-P%d" % (cc, first_seq + i),
                                     name="park %d" % (first_seq + i),
                                     reported_residents=first_seq + i))
        for i in range(0, n, batch):
            p.send_batch(ups[i:i + batch])
        p.wait_ack(first_seq + n - 1, timeout=60)
        return first_seq + n

    def error_of(self, rep):
        self.assertEqual(rep.WhichOneof("body"), "error", rep)
        return rep.error.code

    def park(self, park_id, country="AZ"):
        chunks, err = self.q.snapshot(filter=pb.Filter(kind=1,
                                                       country=country))
        self.assertIsNone(err)
        for ch in chunks:
            for r in ch.records:
                if r.park.park_id == park_id:
                    return r
        return None


# ------------------------------------------------------------------ producer

class ProducerTests(DaemonCase):

    def test_sequence_ack_and_state(self):
        p = self.producer()
        for s in range(1, 6):
            p.send(c.park_update("AZ-MOE", s, "AZ", "AZ-P%d" % s, name="n"))
        self.assertEqual(p.wait_ack(5), 5)
        st = self.q.producer_state("AZ-MOE")
        self.assertEqual((st.last_sequence, st.applied, st.duplicates,
                          st.gaps, st.rejected), (5, 5, 0, 0, 0))
        self.assertGreater(st.last_seen_us, 0)
        # Acks never go backwards and the last one is 5.
        self.assertEqual(p.acks, sorted(p.acks))

    def test_ack_topic_is_exact(self):
        # ack/AZ-MOE/ never matches ack/AZ-MOE-2/
        p = self.producer("AZ-MOE")
        p2 = self.producer("AZ-MOE-2")
        p2.send(c.park_update("AZ-MOE-2", 1, "AZ", "AZ-X", name="x"))
        p2.wait_ack(1)
        p.drain(0.3)
        self.assertEqual(p.acks, [])

    def test_duplicate_reacked_and_ignored(self):
        p = self.producer()
        for s in (1, 2, 3):
            p.send(c.park_update("AZ-MOE", s, "AZ", "AZ-P", name="v%d" % s))
        p.wait_ack(3)
        p.drain(0.2)
        p.send(c.park_update("AZ-MOE", 2, "AZ", "AZ-P", name="dup"))
        self.assertEqual(p.next_ack().last_sequence, 3)
        self.assertEqual(self.park("AZ-P").park.name, "v3")
        st = self.q.producer_state("AZ-MOE")
        self.assertEqual((st.last_sequence, st.duplicates, st.applied),
                         (3, 1, 3))

    def test_gap_not_applied(self):
        p = self.producer()
        p.send(c.park_update("AZ-MOE", 1, "AZ", "AZ-A", name="a"))
        p.wait_ack(1)
        p.drain(0.2)
        p.send(c.park_update("AZ-MOE", 3, "AZ", "AZ-C", name="c"))
        self.assertEqual(p.next_ack().last_sequence, 1)
        self.assertIsNone(self.park("AZ-C"))
        st = self.q.producer_state("AZ-MOE")
        self.assertEqual((st.last_sequence, st.gaps), (1, 1))

    def test_go_back_n_after_loss(self):
        p = self.producer()
        ups = [c.park_update("AZ-MOE", s, "AZ", "AZ-G%d" % s, name="g")
               for s in range(1, 7)]
        p.send(ups[0])
        p.wait_ack(1)
        for u in ups[2:]:  # update 2 is "lost"
            p.send(u)
        time.sleep(0.5)
        p.drain(0.2)
        self.assertEqual(p.last_ack, 1)
        for u in ups[1:]:  # go-back-N: everything after the last ack
            p.send(u)
        self.assertEqual(p.wait_ack(6), 6)
        for s in range(1, 7):
            self.assertIsNotNone(self.park("AZ-G%d" % s))
        st = self.q.producer_state("AZ-MOE")
        self.assertEqual((st.last_sequence, st.applied), (6, 6))

    def test_update_batch_mixed_kinds(self):
        p = self.producer()
        t = c.now_us()
        ups = [c.park_update("AZ-MOE", 1, "AZ", "AZ-B", name="b")]
        r = pb.Update(version=1, producer_id="AZ-MOE", sequence=2,
                      event_time_us=t)
        r.resident.park_id = "AZ-B"
        r.resident.resident_id = "R1"
        r.resident.country = "AZ"
        r.resident.company_name = "Co"
        tr = c.trade_update("AZ-MOE", 3, "AZ", "KZ", pb.TRADE_DIRECTION_EXPORTS,
                            (2020, 1, 10), 12345, event_time_us=t)
        ups += [r, tr]
        p.send_batch(ups)
        self.assertEqual(p.wait_ack(3), 3)
        chunks, err = self.q.snapshot()
        kinds = {rec.WhichOneof("body") for ch in chunks for rec in ch.records}
        self.assertTrue({"park", "resident", "trade"} <= kinds, kinds)

    def test_producer_state_on_restart_without_state(self):
        p = self.producer()
        for s in range(1, 4):
            p.send(c.park_update("AZ-MOE", s, "AZ", "AZ-R%d" % s, name="r"))
        p.wait_ack(3)
        p.close()
        self.closers.remove(p)
        # A new producer without local state asks, then continues.
        self.assertEqual(self.q.producer_state("UNKNOWN-1").last_sequence, 0)
        last = self.q.producer_state("AZ-MOE").last_sequence
        self.assertEqual(last, 3)
        p2 = self.producer()
        p2.send(c.park_update("AZ-MOE", last + 1, "AZ", "AZ-R4", name="r"))
        self.assertEqual(p2.wait_ack(4), 4)
        self.assertIsNotNone(self.park("AZ-R4"))

    def test_wrong_topic_dropped(self):
        p = self.producer()
        ctl = self.control()
        u = c.park_update("AZ-MOE", 1, "AZ", "AZ-W", name="w")
        p.send(u, topic=b"resident")
        time.sleep(0.3)
        self.assertEqual(ctl.counters().get("wrong_topic"), 1)
        self.assertIsNone(self.park("AZ-W"))


# ------------------------------------------------------------------ validation

class ValidationTests(DaemonCase):

    def send_and_ack(self, p, u, topic=None):
        p.send(u, topic)
        return p.wait_ack(u.sequence)

    def test_invalid_update_consumes_sequence_and_is_recorded(self):
        p = self.producer()
        ctl = self.control()
        bad = c.park_update("AZ-MOE", 1, "az", "AZ-LOW", name="x")
        self.assertEqual(self.send_and_ack(p, bad), 1)  # consumed, acked
        good = c.park_update("AZ-MOE", 2, "AZ", "AZ-OK", name="x")
        self.assertEqual(self.send_and_ack(p, good), 2)
        st = self.q.producer_state("AZ-MOE")
        self.assertEqual((st.last_sequence, st.rejected, st.applied),
                         (2, 1, 1))
        conf = ctl.conflicts()
        self.assertEqual(len(conf), 1, conf)
        self.assertEqual((conf[0].producer_id, conf[0].sequence),
                         ("AZ-MOE", 1))
        self.assertIsNone(self.park("AZ-LOW"))

    def test_invalid_conflict_reason_prefix(self):
        # README "Conflicts": a refused invalid update is listed with the
        # reason `invalid: ...`.
        p = self.producer()
        p.send(c.park_update("AZ-MOE", 1, "az", "AZ-LOW", name="x"))
        p.wait_ack(1)
        conf = self.control().conflicts()
        self.assertEqual(len(conf), 1, conf)
        self.assertTrue(conf[0].reason.startswith("invalid: "),
                        conf[0].reason)

    def test_unknown_fields_ignored(self):
        p = self.producer()
        u = c.park_update("AZ-MOE", 1, "AZ", "AZ-UNK", name="u")
        # field 99 (varint 7) and field 100 (bytes) are not in the schema
        data = u.SerializeToString() + b"\x98\x06\x07" + b"\xa2\x06\x03abc"
        p.send_raw(b"park", data)
        self.assertEqual(p.wait_ack(1), 1)
        self.assertEqual(self.park("AZ-UNK").park.name, "u")

    def check_values(self, cases):
        """cases: list of (update-mutator, accepted?)"""
        p = self.producer()
        for i, (mut, ok) in enumerate(cases, 1):
            u = c.park_update("AZ-MOE", i, "AZ", "AZ-V%d" % i, name="v")
            mut(u)
            p.send(u)
            p.wait_ack(i)
            got = self.park(u.park.park_id) if ok is not None else None
            with self.subTest(case=i, park=str(u.park)[:120]):
                if ok:
                    self.assertIsNotNone(got, "valid update not applied")
                else:
                    self.assertIsNone(got, "invalid update applied")
        return p

    def test_money_bounds(self):
        def inv(v):
            return lambda u: setattr(u.park, "reported_investment_usd_cents", v)
        self.check_values([(inv(10**17), True), (inv(0), True),
                           (inv(10**17 + 1), False),
                           (inv(-10**17 - 1), False),
                           (inv(2**63 - 1), False)])

    def test_negative_money_refused(self):
        # README "Values": every money field of an update is an amount,
        # 0..10^17; a negative one is refused.
        def inv(v):
            return lambda u: setattr(u.park, "reported_investment_usd_cents", v)
        self.check_values([(inv(-1), False), (inv(-10**17), False)])

    def test_id_and_text_grammar(self):
        def pid(v):
            return lambda u: setattr(u.park, "park_id", v)

        def name(v):
            return lambda u: setattr(u.park, "name", v)
        # A park's id must differ per case for the lookup: the mutators
        # set it, so make each distinct.
        self.check_values([
            (pid("A" * 64), True),
            (pid("B" * 65), False),
            (pid("a.b_c-D9"), True),
            (pid("bad id"), False),
            (pid("bad/id"), False),
            (name("x" * 256), True),
            (name("y" * 257), False),
            (name(""), False),
            (name("Sumqayıt kimya sənaye parkı"), True),
        ])

    def test_text_with_nul_refused(self):
        # README "Values": text is valid UTF-8 *without NUL*.
        def name(v):
            return lambda u: setattr(u.park, "name", v)
        self.check_values([(name("nul\x00here"), False),
                           (name("\x00"), False)])

    def test_invalid_utf8_text_refused(self):
        p = self.producer()
        u = c.park_update("AZ-MOE", 1, "AZ", "AZ-UTF", name="QQQQ")
        data = u.SerializeToString().replace(b"QQQQ", b"\xff\xfe\xc3\x28")
        p.send_raw(b"park", data)
        self.assertEqual(p.wait_ack(1), 1)
        self.assertIsNone(self.park("AZ-UTF"))
        self.assertEqual(self.q.producer_state("AZ-MOE").rejected, 1)


# ------------------------------------------------------------------ query

class QueryTests(DaemonCase):
    CONFIG = {"limits": {"max_streams": "2"}}

    def load(self, n=40):
        p = self.producer()
        self.push_parks(p, 1, n, countries=COUNTRIES[:4])
        return p

    def test_ping(self):
        pong = self.q.ping()
        self.assertEqual(len(pong.epoch), 16)
        self.assertEqual(pong.head_revision, 0)
        self.assertGreater(pong.time_us, 0)
        # a sound daemon: Health present, not degraded, no commit yet
        self.assertTrue(pong.HasField("health"))
        self.assertFalse(pong.health.degraded)
        self.assertFalse(pong.health.HasField("last_commit_us"))

    def test_reply_echoes_request_id_and_version(self):
        req = pb.QueryRequest(version=1, request_id=424242, ping=pb.Ping())
        self.q.send(req)
        rep = self.q.recv()
        self.assertEqual((rep.request_id, rep.version), (424242, 1))

    def test_snapshot_credit_flow_and_last(self):
        self.load(40)
        head = self.q.ping().head_revision
        chunks, err = self.q.snapshot(credit=2, chunk_records=3)
        self.assertIsNone(err)
        self.assertEqual([ch.last for ch in chunks],
                         [False] * (len(chunks) - 1) + [True])
        self.assertEqual({ch.revision for ch in chunks}, {head})
        self.assertEqual(len({ch.epoch for ch in chunks}), 1)
        recs = [r for ch in chunks for r in ch.records]
        self.assertEqual(len({r.revision for r in recs}), len(recs))
        self.assertTrue(all(r.revision <= head for r in recs))
        # Same picture in one chunk.
        one, _ = self.q.snapshot(credit=1, chunk_records=4096)
        self.assertEqual(len(one), 1)
        self.assertEqual(sorted(r.revision for r in one[0].records),
                         sorted(r.revision for r in recs))

    def test_snapshot_filter(self):
        self.load(40)
        chunks, _ = self.q.snapshot(filter=pb.Filter(kind=1, country="KZ"))
        recs = [r for ch in chunks for r in ch.records]
        self.assertTrue(recs)
        self.assertTrue(all(r.WhichOneof("body") == "park" and
                            r.park.country == "KZ" for r in recs))

    def test_changes(self):
        self.load(20)
        head = self.q.ping().head_revision
        chunks, err = self.q.changes(5, credit=1, chunk_records=4)
        self.assertIsNone(err)
        revs = [r.revision for ch in chunks for r in ch.records]
        self.assertEqual(revs, list(range(6, head + 1)))
        self.assertEqual({ch.revision for ch in chunks}, {head})
        self.assertTrue(chunks[-1].last)
        chunks, err = self.q.changes(head)
        self.assertIsNone(err)
        self.assertEqual(sum(len(ch.records) for ch in chunks), 0)

    def test_history_at_revision(self):
        p = self.producer()
        p.send(c.park_update("AZ-MOE", 1, "AZ", "AZ-H", name="before"))
        p.wait_ack(1)
        r1 = self.q.ping().head_revision
        p.send(c.park_update("AZ-MOE", 2, "AZ", "AZ-H", name="after"))
        p.send(c.park_update("AZ-MOE", 3, "AZ", "AZ-NEW", name="new"))
        p.wait_ack(3)
        chunks, err = self.q.snapshot(at_revision=r1)
        self.assertIsNone(err)
        self.assertEqual({ch.revision for ch in chunks}, {r1})
        parks = {r.park.park_id: r.park.name for ch in chunks
                 for r in ch.records if r.HasField("park")}
        self.assertEqual(parks, {"AZ-H": "before"})
        head = self.q.ping().head_revision
        _, err = self.q.snapshot(at_revision=head + 1)
        self.assertEqual(err.code, pb.ERROR_CODE_BAD_REQUEST)
        _, err = self.q.snapshot(at_revision=r1, provenance=True)
        self.assertEqual(err.code, pb.ERROR_CODE_BAD_REQUEST)

    def test_provenance(self):
        p = self.producer()
        p.send(c.park_update("AZ-MOE", 1, "AZ", "AZ-PV", name="pv"))
        p.wait_ack(1)
        chunks, _ = self.q.snapshot(filter=pb.Filter(kind=1),
                                    provenance=True)
        rec = chunks[0].records[0]
        fields = {fp.field: fp for fp in rec.provenance}
        self.assertIn("name", fields)
        self.assertEqual((fields["name"].producer_id,
                          fields["name"].sequence), ("AZ-MOE", 1))

    def test_cancel(self):
        self.load(20)
        rid = self.q.new_id()
        self.q.send(pb.QueryRequest(version=1, request_id=rid,
                                    snapshot=pb.SnapshotRequest(
                                        credit=1, chunk_records=1)))
        self.assertEqual(self.q.recv_for(rid).WhichOneof("body"), "chunk")
        self.q.send(pb.QueryRequest(version=1, request_id=rid,
                                    cancel=pb.Cancel()))
        # The spec: cancel ends the stream with one last chunk{last: true}
        # without records (its credit is spent, so nothing else comes).
        try:
            rep = self.q.recv_for(rid)
        except TimeoutError:
            self.fail("no reply to cancel: the stream must end with a last chunk")
        self.assertEqual(rep.WhichOneof("body"), "chunk",
                         "cancel must end the stream with a last chunk: %s" % rep)
        self.assertTrue(rep.chunk.last, "the chunk after cancel is not last")
        self.assertEqual(len(rep.chunk.records), 0, "records after cancel")
        # The stream is gone: credit for it is UNKNOWN_REQUEST.
        self.q.send(pb.QueryRequest(version=1, request_id=rid,
                                    credit=pb.Credit(chunks=4)))
        rep = self.q.recv_for(rid)
        self.assertEqual(rep.WhichOneof("body"), "error",
                         "nothing of a cancelled stream comes after its last chunk: %s"
                         % rep)
        self.assertEqual(rep.error.code, pb.ERROR_CODE_UNKNOWN_REQUEST)

    def test_unknown_request_for_no_stream(self):
        for body in ({"credit": pb.Credit(chunks=1)}, {"cancel": pb.Cancel()}):
            with self.subTest(body=list(body)):
                rep = self.q.call(**body)
                self.assertEqual(self.error_of(rep),
                                 pb.ERROR_CODE_UNKNOWN_REQUEST)

    def open_stream(self, q):
        """Starts a snapshot of one record per chunk, credit 1: it runs
        until cancelled."""
        rid = q.new_id()
        q.send(pb.QueryRequest(
            version=1, request_id=rid,
            snapshot=pb.SnapshotRequest(credit=1, chunk_records=1)))
        self.assertEqual(q.recv_for(rid).WhichOneof("body"), "chunk")
        return rid

    def test_busy_over_max_streams(self):
        # max_streams = 2, so each connection may run one (never all)
        self.load(20)
        others = [c.Query(self.daemon.query) for _ in range(2)]
        self.closers += others
        self.open_stream(self.q)
        self.open_stream(others[0])
        _, err = others[1].snapshot(credit=1, chunk_records=1)
        self.assertEqual(err.code, pb.ERROR_CODE_BUSY)
        self.assertIn("(max_streams)", err.message)
        _, err = others[1].changes(0, credit=1, chunk_records=1)
        self.assertEqual(err.code, pb.ERROR_CODE_BUSY)

    def test_busy_over_streams_per_client(self):
        self.load(20)
        self.open_stream(self.q)
        _, err = self.q.snapshot(credit=1, chunk_records=1)
        self.assertEqual(err.code, pb.ERROR_CODE_BUSY)
        self.assertIn("max_streams_per_client", err.message)
        # another connection still gets the stream this one could not
        other = c.Query(self.daemon.query)
        self.closers.append(other)
        chunks, err = other.snapshot(credit=8, chunk_records=100)
        self.assertIsNone(err)
        self.assertTrue(chunks[-1].last)

    # -- BAD_REQUEST: every invalid request gets an error reply
    def bad(self, req_bytes_or_msg, rid):
        if isinstance(req_bytes_or_msg, bytes):
            self.q.send_raw(req_bytes_or_msg)
        else:
            self.q.send_raw(req_bytes_or_msg.SerializeToString())
        rep = self.q.recv_for(rid, timeout=1)
        return self.error_of(rep)

    def bad_requests(self):
        unknown_kind = pb.Filter.FromString(b"\x08\x63")  # kind = 99
        S = pb.SnapshotRequest
        cases = {
            "credit 0": S(credit=0, chunk_records=10),
            "credit 65": S(credit=65, chunk_records=10),
            "chunk_records 0": S(credit=1, chunk_records=0),
            "chunk_records 4097": S(credit=1, chunk_records=4097),
            "lowercase country": S(filter=pb.Filter(country="az")),
            "unknown kind": S(filter=unknown_kind),
        }
        out = []
        for i, (name, body) in enumerate(cases.items(), 100):
            out.append((name, pb.QueryRequest(version=1, request_id=i,
                                              snapshot=body), i))
        out.append(("changes credit 0", pb.QueryRequest(
            version=1, request_id=200,
            changes=pb.ChangesRequest(since_revision=0, credit=0)), 200))
        out.append(("changes lowercase country", pb.QueryRequest(
            version=1, request_id=201, changes=pb.ChangesRequest(
                since_revision=0, filter=pb.Filter(country="kz"))), 201))
        out.append(("credit 0 chunks", pb.QueryRequest(
            version=1, request_id=202, credit=pb.Credit(chunks=0)), 202))
        out.append(("no body", pb.QueryRequest(version=1, request_id=300),
                    300))
        return out

    def test_bad_request_every_invalid_query_answered(self):
        # Credit 0 or > 64, chunk_records 0 or > 4096, lowercase country,
        # unknown kind, no body, missing or unknown version: each gets
        # error{BAD_REQUEST} echoing the request_id.
        failures = []
        cases = self.bad_requests()
        cases.append(("missing version", pb.QueryRequest(
            request_id=301, ping=pb.Ping()), 301))
        cases.append(("version 2", pb.QueryRequest(
            version=2, request_id=302, ping=pb.Ping()), 302))
        for name, req, rid in cases:
            try:
                code = self.bad(req, rid)
                if code != pb.ERROR_CODE_BAD_REQUEST:
                    failures.append("%s: code %d" % (name, code))
            except (TimeoutError, AssertionError) as e:
                failures.append("%s: %s" % (name, e))
        self.assertEqual(failures, [])

    def test_changes_since_beyond_head_too_old(self):
        self.load(5)
        head = self.q.ping().head_revision
        _, err = self.q.changes(head + 10)
        self.assertIsNotNone(err, "a stream for revisions not yet made")
        self.assertEqual(err.code, pb.ERROR_CODE_TOO_OLD)


class TooOldTests(DaemonCase):
    CONFIG = {"store": {"changelog_keep": "10"}}

    def test_changes_and_history_too_old(self):
        p = self.producer()
        self.push_parks(p, 1, 40)
        # the log keeps at least the last 10; older revisions go at a
        # later commit, once published: make one
        self.push_parks(p, 41, 1)
        head = self.q.ping().head_revision
        self.assertGreater(head, 20)
        _, err = self.q.changes(1)
        self.assertIsNotNone(err)
        self.assertEqual(err.code, pb.ERROR_CODE_TOO_OLD)
        self.assertIn("take a snapshot", err.message)
        _, err = self.q.snapshot(at_revision=2)
        self.assertEqual(err.code, pb.ERROR_CODE_TOO_OLD)
        chunks, err = self.q.changes(head - 5)
        self.assertIsNone(err)
        # every change up to the head at which the stream opened (a summary
        # may have been committed since the ping)
        opened = chunks[-1].revision
        self.assertGreaterEqual(opened, head)
        self.assertEqual([r.revision for ch in chunks for r in ch.records],
                         list(range(head - 4, opened + 1)))


# ------------------------------------------------------------------ subscriber

class SubscriberBase(DaemonCase):
    CONFIG = {"limits": {"heartbeat_ms": "200"}}

    def assert_exactly_once(self, s, filt=None):
        """Every revision after the subscriber's (last) snapshot that
        matches its filter was delivered exactly once."""
        after_reset = s.delivered
        for i in range(len(s.delivered) - 1, -1, -1):
            if s.delivered[i][1] == "reset":
                after_reset = s.delivered[i + 1:]
                break
        got = [r for r, _ in after_reset]
        chunks, err = self.q.changes(s.snapshot_revision, filter=s.filter)
        self.assertIsNone(err)
        want = [r.revision for ch in chunks for r in ch.records
                if r.revision <= s.V]
        dup = sorted({r for r in got if got.count(r) > 1})
        self.assertEqual(dup, [], "delivered more than once")
        self.assertEqual(sorted(got), want)


class SubscriberTests(SubscriberBase):

    def test_snapshot_then_live(self):
        p = self.producer()
        seq = self.push_parks(p, 1, 10, countries=COUNTRIES[:3])
        s = self.subscriber()
        s.start()
        self.assertEqual(len(s.snapshot_records) > 0, True)
        self.push_parks(p, seq, 50, countries=COUNTRIES[:5], batch=7)
        s.run_until(self.q.ping().head_revision)
        self.assertEqual(s.recoveries, 0)
        self.assert_exactly_once(s)
        self.assertTrue(all(how == "live" for _, how in s.delivered))

    def test_trade_flow_once_for_two_countries(self):
        s = self.subscriber(kind="trade")
        s.start()
        p = self.producer()
        u = c.trade_update("AZ-MOE", 1, "AZ", "KZ", pb.TRADE_DIRECTION_EXPORTS,
                           (2021, 1, 12), 100)
        p.send(u)
        p.wait_ack(1)
        s.run_until(self.q.ping().head_revision)
        self.assertEqual(len(s.delivered), 1)
        self.assert_exactly_once(s)

    def test_country_filter(self):
        p = self.producer()
        s = self.subscriber(country="KZ")
        s.start()
        self.push_parks(p, 1, 30, countries=COUNTRIES[:3])
        s.run_until(self.q.ping().head_revision)
        self.assertTrue(s.delivered)
        self.assert_exactly_once(s)


class LossTests(SubscriberBase):
    CONFIG = {"limits": {"publish_hwm": "4", "heartbeat_ms": "200"}}

    def test_loss_detected_and_recovered(self):
        p = self.producer()
        s = c.Subscriber(self.daemon, rcvhwm=4, rcvbuf=4096)
        self.closers.append(s)
        s.start()
        # The subscriber does not read while the burst goes out: its queue
        # (and the daemon's, publish_hwm 4) overflow on many topics.
        self.push_parks(p, 1, 3000, countries=COUNTRIES, batch=100)
        s.run_until(self.q.ping().head_revision, timeout=60)
        self.assertGreater(s.losses, 0, "no loss happened: test too weak")
        self.assertGreater(s.recoveries, 0)
        self.assertEqual(s.resets, 0)
        self.assert_exactly_once(s)
        self.assert_against_changelog(s)

    def assert_against_changelog(self, s):
        """Cross-check with the daemon's SQLite change log, read-only."""
        try:
            db = sqlite3.connect("file:%s?mode=ro" % self.daemon.database,
                                 uri=True, timeout=5)
            cols = [r[1] for r in db.execute("PRAGMA table_info(changelog)")]
            if "revision" not in cols:
                return
            revs = [r[0] for r in db.execute(
                "SELECT revision FROM changelog WHERE revision > ? AND "
                "revision <= ? ORDER BY revision",
                (s.snapshot_revision, s.V))]
            db.close()
        except sqlite3.Error:
            return  # schema is not the protocol's business
        got = sorted({r for r, how in s.delivered if r is not None})
        # The change log may hold several rows per revision (trade flows).
        self.assertEqual(got, sorted(set(revs)))


class TooOldSubscriberTests(SubscriberBase):
    CONFIG = {"limits": {"publish_hwm": "4", "heartbeat_ms": "200"},
              "store": {"changelog_keep": "20", "synchronous": "normal"}}

    def lossy_subscriber(self):
        s = c.Subscriber(self.daemon, rcvhwm=4, rcvbuf=4096)
        self.closers.append(s)
        s.start()
        return s

    def test_too_old_resets(self):
        # Small transactions: the daemon publishes each before the change
        # log (20 revisions) forgets it; the subscriber, not reading, loses
        # records and its recovery is too old.
        p = self.producer()
        s = self.lossy_subscriber()
        self.push_parks(p, 1, 1000, countries=COUNTRIES, batch=4)
        s.run_until(self.q.ping().head_revision, timeout=60)
        self.assertGreater(s.losses, 0, "no loss happened: test too weak")
        self.assertGreaterEqual(s.resets, 1)
        self.assert_exactly_once(s)

    def test_revisions_are_not_pruned_before_publication(self):
        # One transaction of 100 updates makes more revisions than the
        # change log keeps. README "Subscribers": if the daemon cannot
        # publish committed revisions it advances every record topic's
        # sequence so that every subscriber sees a loss (and gets TOO_OLD);
        # a heartbeat's head_revision is the newest revision *published*.
        # A subscriber following rules 1-6 must never pass over a revision
        # silently: it either delivers it or resets.
        p = self.producer()
        s = self.lossy_subscriber()
        self.push_parks(p, 1, 1000, countries=COUNTRIES, batch=100)
        s.run_until(self.q.ping().head_revision, timeout=60)
        self.assertTrue(s.losses > 0 or s.resets > 0 or
                        len(s.delivered) >= 1000,
                        "V went from %d to %d with %d deliveries, no loss "
                        "seen, no reset" % (s.snapshot_revision, s.V,
                                            len(s.delivered)))


class RestartTests(SubscriberBase):

    def test_daemon_restart_resyncs(self):
        p = self.producer()
        seq = self.push_parks(p, 1, 10)
        s = self.subscriber()
        s.start()
        old_instance = s.instance
        p.close()
        self.closers.remove(p)
        self.daemon.stop()
        self.daemon.start()
        p = self.producer()
        self.push_parks(p, seq, 20, countries=COUNTRIES[:3])
        s.run_until(self.q.ping().head_revision, timeout=30)
        self.assertNotEqual(s.instance, old_instance)
        self.assertEqual(s.resets, 0)
        self.assert_exactly_once(s)

    def test_new_epoch_resets(self):
        p = self.producer()
        self.push_parks(p, 1, 10)
        s = self.subscriber()
        s.start()
        old_epoch = s.epoch
        p.close()
        self.closers.remove(p)
        self.daemon.stop()
        for suffix in ("", "-wal", "-shm"):
            try:
                os.unlink(self.daemon.database + suffix)
            except FileNotFoundError:
                pass
        self.daemon.start()
        p = self.producer()
        self.push_parks(p, 1, 5, countries=["KZ"])
        head = self.q.ping().head_revision
        deadline = time.time() + 20
        while s.epoch == old_epoch and time.time() < deadline:
            s.step(0.5)
        self.assertNotEqual(s.epoch, old_epoch)
        self.assertEqual(s.resets, 1)
        s.run_until(head)
        self.assert_exactly_once(s)


# ------------------------------------------------------------------ control

class ControlTests(DaemonCase):

    def test_status_counters(self):
        p = self.producer()
        self.push_parks(p, 1, 5)
        p.send(c.park_update("AZ-MOE", 3, "AZ", "AZ-D", name="d"))  # dup
        p.wait_ack(5)
        time.sleep(0.2)
        st = self.control().status()
        cnt = {x.name: x.value for x in st.counters}
        # received counts ingest messages (the batch once), the others
        # count updates.
        self.assertEqual(cnt["received"], 2)
        self.assertEqual(cnt["applied"], 5)
        self.assertEqual(cnt["duplicates"], 1)
        self.assertEqual(st.head_revision, self.q.ping().head_revision)
        self.assertEqual(st.epoch, self.q.ping().epoch)
        recs = {x.name: x.value for x in st.records}
        self.assertEqual(recs.get("park"), 5)
        prod = {x.producer_id: x for x in st.producers}
        self.assertEqual(prod["AZ-MOE"].last_sequence, 5)
        self.assertGreaterEqual(st.now_us, st.started_us)

    def test_backup(self):
        p = self.producer()
        self.push_parks(p, 1, 5)
        path = os.path.join(self.tmp, "copy.db")
        rep = self.control().backup(path)
        self.assertEqual(rep.WhichOneof("body"), "backup", rep)
        self.assertEqual(rep.backup.path, path)
        self.assertEqual(rep.backup.bytes, os.path.getsize(path))
        self.assertEqual(rep.backup.revision, self.q.ping().head_revision)
        db = sqlite3.connect("file:%s?mode=ro" % path, uri=True)
        self.assertEqual(db.execute("PRAGMA journal_mode").fetchone()[0],
                         "delete")
        self.assertEqual(db.execute("PRAGMA integrity_check").fetchone()[0],
                         "ok")
        db.close()


# ------------------------------------------------------------------ main

def main():
    global ARGS, pb
    ap = argparse.ArgumentParser()
    ap.add_argument("--daemon", required=True)
    ap.add_argument("--cli")
    ap.add_argument("--proto", default=os.path.join(
        os.path.dirname(os.path.abspath(__file__)), "..", "..", "proto"))
    ARGS, rest = ap.parse_known_args()
    ARGS.daemon = os.path.abspath(ARGS.daemon)
    pb = c.load_proto(ARGS.proto)
    start = time.time()
    prog = unittest.main(argv=[sys.argv[0]] + rest, exit=False, verbosity=2)
    r = prog.result
    # A test with failing subtests counts once.
    bad = {getattr(t, "test_case", t).id() for t, _ in r.failures + r.errors}
    failed = len(bad) + len(r.unexpectedSuccesses)
    passed = r.testsRun - failed - len(r.skipped)
    print("%.1f s" % (time.time() - start))
    print("%d passed, %d failed" % (passed, failed))
    sys.exit(0 if failed == 0 else 1)


if __name__ == "__main__":
    main()
