"""Product analytics (SPEC §7): event batches through nginx over TLS, sent
with a user token or an ingest key; per-item rejections; ids stored once,
also across concurrent batches; ingest keys made, used, forged and
revoked; day partitions made ahead and dropped past retention; rollups
and the metrics read from them; the CSV export.
"""

import csv
import datetime
import hashlib
import http.client
import io
import json
import ssl
import threading
import time
import unittest
import uuid

import billinglib as bl
from authlib import SourceClientTestCase, jwt_claims
from harness import OPEN_LIMITS, wait_until
from jobslib import Db

GOOD_PASSWORD = bl.GOOD_PASSWORD
EVENTS = "/v1/analytics/events"
KEYS = "/v1/admin/ingest-keys"


def iso(dt):
    return dt.astimezone(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def now():
    return datetime.datetime.now(datetime.timezone.utc)


class AnalyticsTest(SourceClientTestCase):
    # Rollups every second, so the metrics catch up in a few.
    stack_env = dict(OPEN_LIMITS, STOA_ANALYTICS_ROLLUP_INTERVAL_S="1")

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        try:
            cls.db = Db(cls.stack)
            cls.admin_email = bl.unique_email("an-admin")
            cls.finance_email = bl.unique_email("an-finance")
            for address, role in ((cls.admin_email, "admin"),
                                  (cls.finance_email, "finance")):
                proc = bl.create_user(cls.stack, address, role)
                if proc.returncode != 0:
                    raise RuntimeError(proc.stderr)
            c = cls.stack_client()
            cls.user_email = bl.unique_email("an-user")
            resp = c.request("POST", "/v1/auth/register",
                             {"email": cls.user_email, "password": GOOD_PASSWORD,
                              "name": "Ana"})
            if resp.status != 201:
                raise RuntimeError(f"register: {resp.status} {resp.body!r}")
            cls.user_id = resp.json["user"]["id"]
        except BaseException:
            cls._failed = True
            raise

    @classmethod
    def stack_client(cls):
        from authlib import SourceClient
        return SourceClient(cls.stack)

    def token(self, c, address):
        resp = c.request("POST", "/v1/auth/login",
                         {"email": address, "password": GOOD_PASSWORD})
        return self.assert_ok_json(resp)["access_token"]

    def send(self, c, events, token=None, key=None, headers=None):
        hdrs = dict(headers or {})
        if key is not None:
            hdrs["X-Ingest-Key"] = key
        raw = isinstance(events, bytes)
        if raw:
            hdrs.setdefault("Content-Type", "application/json")
        body = events if raw or isinstance(events, dict) else {"events": events}
        return c.request("POST", EVENTS, body, headers=hdrs, token=token, raw=raw)

    def new_key(self, c, admin, name="web"):
        resp = c.request("POST", KEYS, {"name": name}, token=admin)
        return self.assert_ok_json(resp, 201)

    def stored(self, ids):
        return self.db.count("SELECT 1 FROM analytics.events WHERE id = ANY(:'ids'::uuid[])",
                             ids="{" + ",".join(ids) + "}")

    # --- ingestion -----------------------------------------------------------

    def test_01_rejections_are_per_index(self):
        c = self.client()
        t = self.token(c, self.user_email)
        good_id = str(uuid.uuid4())
        items = [
            {"id": good_id, "event": "page.view", "properties": {"path": "/a\tb\\c\n"}},
            {"event": "bad name!"},
            {"event": "big", "properties": {"blob": "x" * 33000}},
            {"event": "later", "timestamp": iso(now() + datetime.timedelta(hours=24))},
            {"event": "old", "timestamp": iso(now() - datetime.timedelta(days=91))},
            {"event": "props", "properties": [1, 2]},
            "not an object",
            {"event": "extra", "colour": "red"},
            {"event": "ids", "id": "not-a-uuid"},
            {"event": "when", "timestamp": "2026-02-30T10:00:00Z"},
            {"event": "who", "distinct_id": 12},
            {},
            {"event": "x" * 201},
            {"event": "soon$:-_.ok", "timestamp": iso(now() + datetime.timedelta(hours=22)),
             "distinct_id": "visitor-1"},
            {"event": "recent", "timestamp": "2020-01-01T00:00:00+02:00"},
        ]
        resp = self.send(c, items, token=t)
        body = self.assert_ok_json(resp, 202)
        self.assertEqual(body["accepted"], 2, body)
        self.assertEqual(body["rejected"], [
            {"index": 1, "error": "invalid_event"},
            {"index": 2, "error": "too_large"},
            {"index": 3, "error": "too_far_in_future"},
            {"index": 4, "error": "too_old"},
            {"index": 5, "error": "invalid_properties"},
            {"index": 6, "error": "not_an_object"},
            {"index": 7, "error": "unknown_field"},
            {"index": 8, "error": "invalid_id"},
            {"index": 9, "error": "invalid_timestamp"},
            {"index": 10, "error": "invalid_distinct_id"},
            {"index": 11, "error": "invalid_event"},
            {"index": 12, "error": "invalid_event"},
            {"index": 14, "error": "too_old"},
        ])
        row = self.db.row("SELECT user_id, distinct_id, properties->>'path' AS path"
                          " FROM analytics.events WHERE id = :'id'", id=good_id)
        # A user's event records the user, and distinct_id defaults to it.
        self.assertEqual(row, {"user_id": self.user_id, "distinct_id": self.user_id,
                               "path": "/a\tb\\c\n"})
        other = self.db.row("SELECT user_id, distinct_id FROM analytics.events"
                            " WHERE event = 'soon$:-_.ok'")
        self.assertEqual(other, {"user_id": self.user_id, "distinct_id": "visitor-1"})

    def test_02_batch_shape(self):
        c = self.client()
        t = self.token(c, self.user_email)
        self.assert_error(self.send(c, b'{"events": [', token=t), 400, "invalid_json")
        resp = self.send(c, [], token=t)
        self.assert_error(resp, 400, "invalid_request")
        self.assertEqual(resp.json["error"]["details"]["fields"], {"events": "empty"})
        resp = self.send(c, {"nope": 1}, token=t)
        self.assert_error(resp, 400, "invalid_request")
        self.assertEqual(resp.json["error"]["details"]["fields"],
                         {"events": "required", "nope": "unknown_field"})
        self.assert_error(self.send(c, b'{"events": {"event": "a"}}', token=t), 400,
                          "invalid_request")
        self.assert_error(self.send(c, [{"event": "a"}] * 1001, token=t), 413,
                          "payload_too_large")
        self.assert_error(self.send(c, b'{"events":[{"event":"a"}]}', token=t,
                                    headers={"Content-Type": "text/plain"}),
                          415, "unsupported_media_type")
        # Neither a token nor a key; both at once.
        self.assert_error(self.send(c, [{"event": "a"}]), 401, "unauthenticated")
        self.assert_error(self.send(c, [{"event": "a"}], token=t, key="stoa_ik_" + "a" * 32),
                          400, "invalid_request")
        # A body of 4 MiB is taken; more is refused at the edge or the pool.
        big = [{"event": "fill", "properties": {"p": "y" * 4000}}] * 1000
        self.assertEqual(self.send(c, big, token=t).status, 202)
        huge = json.dumps({"events": [{"event": "f", "properties": {"p": "z" * 30000}}]
                           * 150}).encode()
        self.assertEqual(len(huge) > 4 * 1024 * 1024, True)
        self.assertEqual(self.send(c, huge, token=t).status, 413)

    def test_03_ids_are_stored_once(self):
        c = self.client()
        t = self.token(c, self.user_email)
        ids = [str(uuid.uuid4()) for _ in range(5)]
        first = [{"id": i, "event": "dup"} for i in ids] + [{"id": ids[0], "event": "dup"}]
        self.assertEqual(self.assert_ok_json(self.send(c, first, token=t), 202)["accepted"], 6)
        self.assertEqual(self.stored(ids), 5)
        # Again, a day later in event time: the id alone decides.
        again = [{"id": i, "event": "dup",
                  "timestamp": iso(now() - datetime.timedelta(days=1))} for i in ids]
        self.assertEqual(self.assert_ok_json(self.send(c, again, token=t), 202)["accepted"], 5)
        self.assertEqual(self.stored(ids), 5)

    def test_03b_properties_stored_as_sent(self):
        """Properties reach jsonb as the client wrote them: whitespace,
        nesting, every escape (\\u ones included) and characters beyond
        ASCII; a batch without ids, and one mixing given and missing ids,
        store every row."""
        c = self.client()
        key = self.new_key(c, self.token(c, self.admin_email), "props")["key"]
        ids = [str(uuid.uuid4()) for _ in range(3)]
        body = ('{"events": [\n'
                ' {"id": "%s", "event": "props", "properties": { "a" : [1, 2.5e3, -0,'
                ' {"b": "q\\"\\\\\\/\\t\\n}]"}], "n": null, "t": true } },\n'
                ' {"id": "%s", "event": "props", "properties": {"u": "\\u00e9\\ud83d\\ude00",'
                ' "raw": "\u00e9\U0001F600", "bs": "\\\\u"}},\n'
                ' {"id": "%s", "event": "props", "properties": {}},\n'
                ' {"event": "props", "properties": {"k": "no id"}}\n'
                ']}') % tuple(ids)
        sent = json.loads(body)["events"]
        resp = self.send(c, body.encode(), key=key)
        self.assertEqual(self.assert_ok_json(resp, 202), {"accepted": 4, "rejected": []})
        for item in sent[:3]:
            got = self.db.value("SELECT properties FROM analytics.events WHERE id = :'id'",
                                id=item["id"])
            self.assertEqual(got, item["properties"])
        self.assertEqual(self.db.count(
            "SELECT 1 FROM analytics.events WHERE event = 'props'"
            " AND properties = '{\"k\": \"no id\"}'::jsonb"), 1)
        # No id at all in the batch: nothing to claim, every row stored.
        marker = str(uuid.uuid4())
        resp = self.send(c, [{"event": "props.noid", "properties": {"m": marker}}] * 3, key=key)
        self.assertEqual(self.assert_ok_json(resp, 202)["accepted"], 3)
        self.assertEqual(self.db.count(
            "SELECT 1 FROM analytics.events WHERE properties->>'m' = :'m'", m=marker), 3)

    def test_03c_number_beyond_numeric_is_rejected_by_index(self):
        """A number Postgres' numeric cannot hold (digits before or after
        the point past its limits) fails its own item, never the batch's
        COPY: the other items are stored, and the pool's connections stay
        whole."""
        c = self.client()
        t = self.token(c, self.user_email)
        ids = [str(uuid.uuid4()) for _ in range(4)]
        body = ('{"events": [{"id": "%s", "event": "bignum"},'
                ' {"id": "%s", "event": "bignum", "properties": {"x": 1e1000000}},'
                ' {"id": "%s", "event": "bignum", "properties": {"y": [0.1e-16383]}},'
                ' {"id": "%s", "event": "bignum", "properties": {"z": 1e1000}}]}'
                % tuple(ids)).encode()
        got = self.assert_ok_json(self.send(c, body, token=t), 202)
        self.assertEqual(got, {"accepted": 2, "rejected": [
            {"index": 1, "error": "invalid_properties"},
            {"index": 2, "error": "invalid_properties"}]})
        self.assertEqual(self.stored([ids[0], ids[3]]), 2)
        self.assertEqual(self.stored([ids[1], ids[2]]), 0)
        # Refused ids were not claimed: sent again within range, stored.
        fixed = [{"id": ids[1], "event": "bignum", "properties": {"x": 1}}]
        self.assertEqual(self.assert_ok_json(self.send(c, fixed, token=t), 202)["accepted"], 1)
        self.assertEqual(self.stored([ids[1]]), 1)

    def test_04_concurrent_batches_with_the_same_ids(self):
        t = self.token(self.client(), self.user_email)
        for _ in range(3):
            ids = [str(uuid.uuid4()) for _ in range(300)]
            batch = [{"id": i, "event": "race"} for i in ids]
            # Each sender holds the batch in reverse order from the other:
            # stored once each, and no two waiting on each other.
            answers = []
            barrier = threading.Barrier(4)

            def sender(items):
                c = self.stack_client()
                try:
                    barrier.wait()
                    answers.append(self.send(c, items, token=t).status)
                finally:
                    c.close()

            threads = [threading.Thread(target=sender, args=(b,))
                       for b in (batch, batch[::-1], batch, batch[::-1])]
            for th in threads:
                th.start()
            for th in threads:
                th.join(30)
            self.assertEqual(answers, [202] * 4)
            self.assertEqual(self.stored(ids), 300)

    # --- ingest keys ---------------------------------------------------------

    def test_05_ingest_keys(self):
        c = self.client()
        admin = self.token(c, self.admin_email)
        made = self.new_key(c, admin, "landing page")
        key = made["key"]
        self.assertTrue(key.startswith("stoa_ik_"), made)
        self.assertEqual(made["name"], "landing page")
        self.assertTrue(key.startswith(made["prefix"]), made)
        # Only the hash is kept.
        row = self.db.row("SELECT encode(key_hash, 'hex') AS h, prefix FROM admin.ingest_keys"
                          " WHERE id = :'id'", id=made["id"])
        self.assertEqual(row["h"], hashlib.sha256(key.encode()).hexdigest())
        self.assertEqual(self.db.count("SELECT 1 FROM admin.ingest_keys k WHERE"
                                       " row_to_json(k)::text LIKE '%' || :'k' || '%'",
                                       k=key[8:]), 0)
        listed = self.assert_ok_json(c.request("GET", KEYS, token=admin))["data"]
        mine = [k for k in listed if k["id"] == made["id"]]
        self.assertEqual(len(mine), 1)
        self.assertNotIn("key", mine[0])
        self.assertNotIn(key, json.dumps(listed))

        # Used without a token: stored without a user.
        anon = self.client()
        eid = str(uuid.uuid4())
        resp = self.send(anon, [{"id": eid, "event": "signup.click", "distinct_id": "anon-7"}],
                         key=key)
        self.assertEqual(self.assert_ok_json(resp, 202), {"accepted": 1, "rejected": []})
        self.assertEqual(self.db.row("SELECT user_id, distinct_id FROM analytics.events"
                                     " WHERE id = :'id'", id=eid),
                         {"user_id": None, "distinct_id": "anon-7"})
        # Forged, malformed, or only the prefix.
        for forged in ("stoa_ik_" + "A" * 32, key[:-1] + ("a" if key[-1] != "a" else "b"),
                       made["prefix"], "", "x" * 300):
            with self.subTest(forged=forged):
                self.assert_error(self.send(anon, [{"event": "a"}], key=forged), 401,
                                  "unauthenticated")
        # Not for clients or finance.
        for address in (self.user_email, self.finance_email):
            t = self.token(c, address)
            self.assert_error(c.request("POST", KEYS, {"name": "x"}, token=t), 403, "forbidden")
            self.assert_error(c.request("GET", KEYS, token=t), 403, "forbidden")
        self.assert_error(c.request("POST", KEYS, {"name": ""}, token=admin), 400,
                          "invalid_request")
        self.assert_error(c.request("POST", KEYS, {"name": "a", "scopes": []}, token=admin),
                          400, "invalid_request")

        # Revoked: refused within a second, by every pool process.
        self.assertEqual(self.send(anon, [{"event": "a"}], key=key).status, 202)
        self.assertEqual(c.request("DELETE", f"{KEYS}/{made['id']}", token=admin).status, 204)
        t0 = time.monotonic()
        while True:
            answers = [self.send(self.stack_client(), [{"event": "a"}], key=key)
                       for _ in range(4)]
            if all(r.status == 401 for r in answers):
                break
            self.assertLess(time.monotonic() - t0, 1.0, [repr(r) for r in answers])
            time.sleep(0.05)
        self.assert_error(c.request("DELETE", f"{KEYS}/{made['id']}", token=admin), 404,
                          "not_found")
        self.assert_error(c.request("DELETE", f"{KEYS}/nope", token=admin), 404, "not_found")
        listed = self.assert_ok_json(c.request("GET", KEYS, token=admin))["data"]
        self.assertIsNotNone([k for k in listed if k["id"] == made["id"]][0]["revoked_at"])

    # --- storage -------------------------------------------------------------

    def partitions(self):
        return {r["relname"] for r in self.db.rows(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid"
            " WHERE i.inhparent = 'analytics.events'::regclass")}

    def test_06_partitions_made_ahead_and_dropped(self):
        today = now().date()
        name = lambda d: "events_" + d.strftime("%Y%m%d")
        # Past retention: made by hand (as if left from long ago), with a row.
        old = today - datetime.timedelta(days=200)
        self.db.exec("SELECT analytics.create_partitions(:'d'::date, :'d'::date)",
                     d=old.isoformat())
        self.db.exec("INSERT INTO analytics.events (id, ts, event) VALUES"
                     " (gen_random_uuid(), :'d'::date + interval '1 hour', 'ancient')",
                     d=old.isoformat())
        self.db.exec("INSERT INTO analytics.event_ids (id, ts) VALUES"
                     " (gen_random_uuid(), :'d'::date + interval '1 hour')", d=old.isoformat())
        # A week ahead, removed to see the job make it again.
        ahead = today + datetime.timedelta(days=7)
        self.db.exec(f"DROP TABLE analytics.{name(ahead)}")
        before = self.partitions()
        self.assertIn(name(old), before)
        self.assertNotIn(name(ahead), before)
        # Two runs of one slot (two workers) are one job; a later slot runs
        # again and changes nothing.
        job = self.db.insert_job("analytics.partitions", {}, dedupe_key=f"t:{uuid.uuid4()}")
        self.assertTrue(self.db.wait_job(job, lambda r: r["done"], 20)["done"])
        after = self.partitions()
        self.assertNotIn(name(old), after)
        self.assertIn(name(ahead), after)
        for back in (0, 1, 89):
            self.assertIn(name(today - datetime.timedelta(days=back)), after)
        self.assertEqual(self.db.count("SELECT 1 FROM analytics.event_ids"
                                       " WHERE ts < now() - interval '100 days'"), 0)
        job = self.db.insert_job("analytics.partitions", {}, dedupe_key=f"t:{uuid.uuid4()}")
        self.assertTrue(self.db.wait_job(job, lambda r: r["done"], 20)["done"])
        self.assertEqual(self.partitions(), after)

    def test_06b_missing_partition_is_503_and_stores_nothing(self):
        """An event whose day has no partition (the worker has not made
        it): 503 for the batch, nothing stored, nothing claimed; once the
        partition exists, the same batch is stored."""
        day = now().date() - datetime.timedelta(days=60)
        part = "events_" + day.strftime("%Y%m%d")
        self.db.exec(f"DROP TABLE IF EXISTS analytics.{part}")
        try:
            c = self.client()
            t = self.token(c, self.user_email)
            ids = [str(uuid.uuid4()) for _ in range(2)]
            when = datetime.datetime.combine(day, datetime.time(12), datetime.timezone.utc)
            batch = [{"id": ids[0], "event": "nopart"},
                     {"id": ids[1], "event": "nopart", "timestamp": iso(when)}]
            resp = self.send(c, batch, token=t)
            self.assertEqual(resp.status, 503, resp.body)
            self.assertEqual(self.stored(ids), 0)
        finally:
            self.db.exec("SELECT analytics.create_partitions(:'d'::date, :'d'::date)",
                         d=day.isoformat())
        self.assertEqual(self.assert_ok_json(self.send(c, batch, token=t), 202)["accepted"], 2)
        self.assertEqual(self.stored(ids), 2)

    # --- rollups, metrics ----------------------------------------------------

    def metrics(self, c, token, **query):
        qs = "&".join(f"{k}={v}" for k, v in query.items())
        return c.request("GET", f"/v1/analytics/metrics?{qs}", token=token)

    def test_07_metrics_after_rollup(self):
        c = self.client()
        t = self.token(c, self.user_email)
        admin = self.token(c, self.admin_email)
        name = "m." + uuid.uuid4().hex[:8]
        # A Wednesday ten days back (in the retention window), 10:00 UTC.
        day = (now() - datetime.timedelta(days=10)).replace(hour=10, minute=0, second=0,
                                                             microsecond=0)
        day -= datetime.timedelta(days=(day.weekday() - 2) % 7)
        at = lambda d, h, m: iso(day + datetime.timedelta(days=d, hours=h, minutes=m))
        items = [
            {"event": name, "timestamp": at(0, 0, 5), "distinct_id": "a"},
            {"event": name, "timestamp": at(0, 0, 20), "distinct_id": "b"},
            {"event": name, "timestamp": at(0, 0, 40), "distinct_id": "a"},
            {"event": name, "timestamp": at(0, 1, 5), "distinct_id": "c"},
            {"event": name, "timestamp": at(1, 0, 0), "distinct_id": "a"},
            {"event": "other", "timestamp": at(0, 0, 6), "distinct_id": "z"},
        ]
        self.assertEqual(self.assert_ok_json(self.send(c, items, token=t), 202)["accepted"], 6)
        ts = lambda d, h: (day + datetime.timedelta(days=d, hours=h)).strftime(
            "%Y-%m-%dT%H:%M:%SZ")
        rng = dict(event=name, frm=None)
        frm = (day - datetime.timedelta(days=3)).strftime("%Y-%m-%d")
        to = (day + datetime.timedelta(days=5)).strftime("%Y-%m-%d")
        want_hours = [{"t": ts(0, 0), "count": 3, "unique": 2},
                      {"t": ts(0, 1), "count": 1, "unique": 1},
                      {"t": ts(1, 0), "count": 1, "unique": 1}]
        got = {}

        def caught_up():
            got["r"] = self.metrics(c, admin, event=name, interval="hour", **{"from": frm},
                                    to=to)
            return got["r"].status == 200 and got["r"].json["points"] == want_hours

        # The worker rolls up every second here (15 s by default): well
        # within the minute the contract allows.
        self.assertTrue(wait_until(caught_up, 30), repr(got.get("r")))
        # The sender was active on both days (the dashboard's DAU/WAU/MAU).
        self.assertEqual(self.db.count(
            "SELECT 1 FROM analytics.active_users WHERE user_id = :'u'::uuid"
            " AND day IN (:'d0'::date, :'d1'::date)", u=jwt_claims(t)["sub"],
            d0=day.date().isoformat(),
            d1=(day + datetime.timedelta(days=1)).date().isoformat()), 2)
        d0 = day.strftime("%Y-%m-%dT00:00:00Z")
        d1 = (day + datetime.timedelta(days=1)).strftime("%Y-%m-%dT00:00:00Z")
        days = self.assert_ok_json(self.metrics(c, admin, event=name, interval="day",
                                                **{"from": frm}, to=to))["points"]
        self.assertEqual(days, [{"t": d0, "count": 4, "unique": 3},
                                {"t": d1, "count": 1, "unique": 1}])
        monday = (day - datetime.timedelta(days=2)).strftime("%Y-%m-%dT00:00:00Z")
        weeks = self.assert_ok_json(self.metrics(c, admin, event=name, interval="week",
                                                 **{"from": frm}, to=to))["points"]
        # a came on both days: one unique for the week, not two.
        self.assertEqual(weeks, [{"t": monday, "count": 5, "unique": 3}])
        months = self.assert_ok_json(self.metrics(c, admin, event=name, interval="month",
                                                  **{"from": frm}, to=to))["points"]
        self.assertEqual(sum(p["count"] for p in months), 5)
        # Re-running the rollup of those hours changes nothing.
        self.db.exec("INSERT INTO analytics.rollup_pending (hour) SELECT DISTINCT"
                     " date_trunc('hour', ts) FROM analytics.events WHERE event = :'n'"
                     " ON CONFLICT DO NOTHING", n=name)
        self.assertTrue(wait_until(lambda: self.db.count(
            "SELECT 1 FROM analytics.rollup_pending") == 0, 30))
        again = self.assert_ok_json(self.metrics(c, admin, event=name, interval="hour",
                                                 **{"from": frm}, to=to))["points"]
        self.assertEqual(again, want_hours)
        # Finance reads too; a client does not; bad queries are 400 by name.
        finance = self.token(c, self.finance_email)
        self.assert_ok_json(self.metrics(c, finance, event=name, interval="day",
                                         **{"from": frm}, to=to))
        self.assert_error(self.metrics(c, t, event=name, interval="day", **{"from": frm},
                                       to=to), 403, "forbidden")
        resp = self.metrics(c, admin, event="bad%20name", interval="year", **{"from": "x"})
        self.assert_error(resp, 400, "invalid_request")
        self.assertEqual(resp.json["error"]["details"]["fields"],
                         {"event": "invalid", "interval": "invalid", "from": "invalid",
                          "to": "required"})

    # --- export --------------------------------------------------------------

    def test_08_csv_export(self):
        c = self.client()
        t = self.token(c, self.user_email)
        admin = self.token(c, self.admin_email)
        name = "x." + uuid.uuid4().hex[:8]
        base = now() - datetime.timedelta(hours=2)
        tricky = {"note": 'a "quoted", comma\nline', "n": 1}
        first = [{"event": name, "timestamp": iso(base), "distinct_id": 'he said "hi", ok',
                  "properties": tricky}]
        self.assertEqual(self.send(c, first, token=t).status, 202)
        # Enough rows for several fetches from the cursor.
        for b in range(3):
            batch = [{"event": name, "distinct_id": f"d{b}-{i}",
                      "timestamp": iso(base + datetime.timedelta(seconds=b * 1000 + i + 1))}
                     for i in range(1000)]
            self.assertEqual(self.send(c, batch, token=t).status, 202)
        frm = (base - datetime.timedelta(minutes=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
        to = (now() + datetime.timedelta(minutes=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
        resp = c.request("GET", f"/v1/analytics/export?event={name}&from={frm}&to={to}",
                         token=admin)
        self.assertEqual(resp.status, 200, repr(resp))
        self.assertTrue(resp.header("Content-Type").startswith("text/csv"), resp.headers)
        self.assertIsNone(resp.header("Content-Length"))
        text = resp.body.decode()
        self.assertTrue(text.startswith("id,timestamp,event,distinct_id,user_id,properties\r\n"))
        rows = list(csv.reader(io.StringIO(text, newline="")))
        self.assertEqual(len(rows), 1 + 3001)
        head = dict(zip(rows[0], rows[1]))
        self.assertEqual(head["distinct_id"], 'he said "hi", ok')
        self.assertEqual(json.loads(head["properties"]), tricky)
        self.assertEqual(head["user_id"], self.user_id)
        self.assertEqual([r[2] for r in rows[1:]], [name] * 3001)
        self.assertEqual([r[1] for r in rows[1:]], sorted(r[1] for r in rows[1:]))
        # Admin only; the range is required and checked.
        finance = self.token(c, self.finance_email)
        self.assert_error(c.request("GET", f"/v1/analytics/export?from={frm}&to={to}",
                                    token=finance), 403, "forbidden")
        resp = c.request("GET", "/v1/analytics/export?from=2026-02-30&colour=1", token=admin)
        self.assert_error(resp, 400, "invalid_request")
        self.assertEqual(resp.json["error"]["details"]["fields"],
                         {"colour": "unknown_field", "from": "invalid", "to": "required"})
        # An empty range is a header alone.
        resp = c.request("GET", "/v1/analytics/export?from=2001-01-01&to=2001-01-02",
                         token=admin)
        self.assertEqual(resp.body.decode(),
                         "id,timestamp,event,distinct_id,user_id,properties\r\n")

    def test_08_an_export_cut_short_is_not_a_complete_file(self):
        """When the database fails in the middle of an export, the answer
        is cut off (no last chunk): a client can never take the rows sent
        so far for the whole range."""
        c = self.client()
        admin = self.token(c, self.admin_email)
        name = "cut." + uuid.uuid4().hex[:8]
        start = now() - datetime.timedelta(hours=1)
        self.db.exec("""INSERT INTO analytics.events (id, ts, event, distinct_id, properties)
            SELECT gen_random_uuid(), :'start'::timestamptz + g * interval '1 ms', :'name',
                   'd' || g, '{"n": 1}' FROM generate_series(1, 300000) g""",
                     start=iso(start), name=name)
        frm = (start - datetime.timedelta(minutes=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
        to = (now() + datetime.timedelta(minutes=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
        ctx = ssl.create_default_context(cafile=self.stack.path("tls", "cert.pem"))
        ctx.check_hostname = False
        conn = http.client.HTTPSConnection("127.0.0.1", self.stack.https_port, context=ctx,
                                           timeout=30)
        try:
            conn.request("GET", f"/v1/analytics/export?event={name}&from={frm}&to={to}",
                         headers={"Authorization": f"Bearer {admin}"})
            resp = conn.getresponse()
            self.assertEqual(resp.status, 200)
            self.assertEqual(resp.getheader("Transfer-Encoding"), "chunked")
            self.assertTrue(resp.read(4096).startswith(b"id,timestamp,"))
            # The export's database connection dies while it streams.
            killed = self.db.value("""SELECT count(pg_terminate_backend(pid)) FROM
                pg_stat_activity WHERE usename = 'stoa' AND query LIKE 'FETCH FORWARD%'""")
            self.assertEqual(killed, 1)
            with self.assertRaises((http.client.IncompleteRead, ConnectionError)):
                got = 4096
                while chunk := resp.read(65536):
                    got += len(chunk)
                self.fail(f"the export ended like a complete file after {got} bytes")
        finally:
            conn.close()
        # The pool is fine afterwards.
        resp = c.request("GET", "/v1/analytics/export?from=2001-01-01&to=2001-01-02",
                         token=admin)
        self.assertEqual(resp.status, 200, repr(resp))



if __name__ == "__main__":
    unittest.main()
