"""The KPI dashboard (SPEC §7, docs/analytics.md), through nginx over TLS:
every figure compared with a value worked out by hand from fixture rows
written straight into auth.users, billing.* and analytics.active_users;
admin and finance see it, a client does not, an anonymous caller is 401;
bad or unknown query keys are 400 by name; a range without data is zeros.

The fixture's range is seven whole UTC days, D to D+6, some weeks back
(D = today - 40 days), so that the accounts this test makes today fall
outside it. Subscription figures (MRR, subscribers, ARPU) are the state
now, whatever the range.
"""

import datetime
import json
import unittest
import urllib.parse

import billinglib as bl
from authlib import SourceClient, SourceClientTestCase
from harness import OPEN_LIMITS, Db

GOOD_PASSWORD = bl.GOOD_PASSWORD
DASHBOARD = "/v1/analytics/dashboard"
UTC = datetime.timezone.utc


def today():
    return datetime.datetime.now(UTC).date()


# D, the first day of the fixture's range.
D0 = today() - datetime.timedelta(days=40)


def day(offset):
    """The date D+offset, as "YYYY-MM-DD"."""
    return (D0 + datetime.timedelta(days=offset)).isoformat()


def at(offset, hms="00:00:00"):
    """The instant D+offset at hms UTC, RFC 3339."""
    return f"{day(offset)}T{hms}Z"


def days(first, last):
    return [day(i) for i in range(first, last + 1)]


class DashboardTest(SourceClientTestCase):
    stack_env = OPEN_LIMITS
    _loaded = False

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        try:
            cls.db = Db(cls.stack)
            cls.emails = {}
            for role in ("admin", "finance", "client"):
                cls.emails[role] = bl.unique_email(f"dash-{role}")
                proc = bl.create_user(cls.stack, cls.emails[role], role)
                if proc.returncode != 0:
                    raise RuntimeError(proc.stderr)
            c = SourceClient(cls.stack)
            cls.tokens = {}
            for role, address in cls.emails.items():
                resp = c.request("POST", "/v1/auth/login",
                                 {"email": address, "password": GOOD_PASSWORD})
                if resp.status != 200:
                    raise RuntimeError(f"login {role}: {resp.status} {resp.body!r}")
                cls.tokens[role] = resp.json["access_token"]
            c.close()
        except BaseException:
            cls._failed = True
            raise

    # --- helpers -------------------------------------------------------------

    def dashboard(self, role="admin", query=None, raw_query=None):
        qs = raw_query if raw_query is not None else urllib.parse.urlencode(query or {})
        path = DASHBOARD + ("?" + qs if qs else "")
        token = self.tokens.get(role)
        return self.client().request("GET", path, token=token)

    def fields(self, resp):
        details = self.assert_error(resp, 400, "invalid_request")
        return details.get("fields", {})

    def insert(self, table, columns, rows, now_if_null=()):
        """rows (dicts) into table through jsonb_to_recordset; columns maps
        each column to its SQL type; the columns of now_if_null take now()
        where a row leaves them null."""
        spec = ", ".join(f"{name} {kind}" for name, kind in columns.items())
        names = ", ".join(columns)
        values = ", ".join(f"coalesce({name}, now())" if name in now_if_null else name
                           for name in columns)
        self.db.exec(f"INSERT INTO {table} ({names}) SELECT {values} FROM "
                     f"jsonb_to_recordset(:'rows'::jsonb) AS x({spec})",
                     rows=json.dumps(rows))

    def load_fixture(self):
        """The fixture, once per stack (the first test asks for an empty
        stack, so the rows go in at first use after it)."""
        cls = type(self)
        if cls._loaded:
            return

        # Signups: created_at in [D, D+7) counts; D-1 23:59:59 and D+7
        # 00:00 do not; an erased account still signed up.
        signups = [("s-a", at(0, "10:00:00"), "active"), ("s-b", at(0, "10:00:00"), "active"),
                   ("s-c", at(2, "23:59:59"), "active"), ("s-d", at(6), "deleted"),
                   ("s-out-after", at(7), "active"), ("s-out-before", at(-1, "23:59:59"), "active")]
        self.insert("auth.users", {"email": "text", "name": "text", "created_at": "timestamptz",
                                   "status": "text"},
                    [{"email": bl.unique_email(tag), "name": "Fixture", "created_at": ts,
                      "status": status} for tag, ts, status in signups])

        # Active users; the last day L is D+6 (to = D+7 is exclusive).
        ids = {n: self.db.value("SELECT gen_random_uuid()::text") for n in range(1, 8)}
        active = [(1, 6), (1, 5),   # u1: L and L-1
                  (2, 0),           # u2: L-6, the first day of the week
                  (3, -1),          # u3: L-7, outside the week
                  (4, -23),         # u4: L-29, the first day of the month
                  (5, -24),         # u5: L-30, outside the month
                  (6, 7),           # u6: after L
                  (7, 6)]           # u7: L only
        self.insert("analytics.active_users", {"day": "date", "user_id": "uuid"},
                    [{"day": day(d), "user_id": ids[u]} for u, d in active])

        # Prices (amounts in minor units).
        plan = self.db.value("INSERT INTO billing.plans (key, name) VALUES ('dash', 'Dash')"
                             " RETURNING id")
        self.insert("billing.prices", {"plan_id": "uuid", "amount": "bigint", "currency": "text",
                                       "interval": "text", "stripe_price_id": "text"},
                    [{"plan_id": plan, "amount": a, "currency": c, "interval": i,
                      "stripe_price_id": p}
                     for p, a, c, i in (("p_eur_m", 1000, "eur", "month"),
                                        ("p_eur_y", 10000, "eur", "year"),
                                        ("p_usd_m", 999, "usd", "month"),
                                        ("p_usd_y", 1002, "usd", "year"))])

        # Subscriptions: (id, customer, status, price, created_at,
        # canceled_at, cancel_at_period_end, current_period_end, trial_end,
        # updated_at); None: the column's default.
        now = None
        subs = [
            ("s1", "cus1", "active", "p_eur_m", at(-10), None, False, None, None, now),
            ("s2", "cus2", "past_due", "p_eur_y", at(-10), None, False, None, None, now),
            ("s3", "cus3", "trialing", "p_eur_m", now, None, False, None, None, now),
            ("s4", "cus4", "active", "p_usd_m", now, None, False, None, None, now),
            ("s5", "cus4", "active", "p_usd_y", now, None, False, None, None, now),
            ("s6", "cus5", "canceled", "p_eur_m", now, None, False, None, None, now),
            ("s7", "cus6", "unpaid", "p_usd_m", now, None, False, None, None, now),
            ("s8", "cus7", "active", "price_gone", now, None, False, None, None, now),
            # for the churn only (made before D, none paying now)
            ("c1", "cus11", "canceled", "p_eur_m", at(-20), at(3, "12:00:00"), False, None, None,
             now),
            ("c2", "cus12", "canceled", "p_eur_m", at(-20), at(-5), True, at(2), None, now),
            ("c3", "cus13", "canceled", "p_eur_m", at(-20), at(-1), False, None, None, now),
            ("c4", "cus14", "canceled", "p_eur_m", at(-20), at(7), False, None, None, now),
            ("c5", "cus15", "canceled", "p_eur_m", at(-20), at(1), False, None, at(1), now),
            ("c6", "cus16", "canceled", "p_eur_m", at(1), at(2), False, None, None, now),
            ("c7", "cus17", "incomplete_expired", "p_eur_m", at(-20), None, False, None, None,
             now),
            ("c8", "cus18", "canceled", "p_eur_m", at(-20), None, False, None, None, at(4)),
            ("c9", "cus19", "paused", "p_eur_m", at(-20), None, False, None, None, now),
        ]
        self.insert("billing.subscriptions",
                    {"stripe_subscription_id": "text", "stripe_customer_id": "text",
                     "status": "text", "stripe_price_id": "text", "created_at": "timestamptz",
                     "canceled_at": "timestamptz", "cancel_at_period_end": "boolean",
                     "current_period_end": "timestamptz", "trial_end": "timestamptz",
                     "updated_at": "timestamptz"},
                    [{"stripe_subscription_id": "sub_" + s, "stripe_customer_id": c,
                      "status": st, "stripe_price_id": p, "created_at": cr, "canceled_at": ca,
                      "cancel_at_period_end": cape, "current_period_end": cpe,
                      "trial_end": te, "updated_at": up}
                     for s, c, st, p, cr, ca, cape, cpe, te, up in subs],
                    now_if_null=("created_at", "updated_at"))

        # Invoices: (id, status, amount_due, amount_paid, amount_refunded,
        # currency, created).
        invoices = [
            ("in_1", "paid", 1000, 1000, 300, "eur", at(0, "09:00:00")),
            ("in_2", "paid", 2000, 2000, 0, "eur", at(2)),
            ("in_3", "open", 500, 0, 0, "usd", at(3)),
            ("in_4", "uncollectible", 700, 0, 0, "usd", at(4)),
            ("in_5", "open", 300, 0, 0, "eur", at(5)),
            ("in_6", "void", 400, 0, 0, "eur", at(1)),
            ("in_7", "draft", 100, 0, 0, "eur", at(1)),
            ("in_8", "paid", 0, 0, 0, "eur", at(1)),
            ("in_9", "paid", 5000, 5000, 0, "usd", at(7)),
            ("in_10", "paid", 1500, 1500, 0, "eur", at(-1, "23:00:00")),
            ("in_11", "paid", 250, 250, 0, "eur", at(6, "23:59:59")),
            ("in_12", "paid", 100, 100, 0, "usd", at(2)),
            ("in_13", "paid", 50, 50, 0, "eur", at(6)),
        ]
        self.insert("billing.invoices",
                    {"stripe_invoice_id": "text", "stripe_customer_id": "text", "status": "text",
                     "amount_due": "bigint", "amount_paid": "bigint",
                     "amount_refunded": "bigint", "currency": "text", "created": "timestamptz"},
                    [{"stripe_invoice_id": i, "stripe_customer_id": "cus1", "status": st,
                      "amount_due": due, "amount_paid": paid, "amount_refunded": ref,
                      "currency": cur, "created": cr}
                     for i, st, due, paid, ref, cur, cr in invoices])
        # Stripe events as the webhook stores them (the raw event): failed
        # payments of in_2 (paid later, on a retry), in_3, in_6 (voided
        # since) and of an invoice we never stored; a paid event of in_1.
        events = [("evt_f2", "invoice.payment_failed", "in_2"),
                  ("evt_f3", "invoice.payment_failed", "in_3"),
                  ("evt_f3b", "invoice.payment_failed", "in_3"),
                  ("evt_f6", "invoice.payment_failed", "in_6"),
                  ("evt_fx", "invoice.payment_failed", "in_unknown"),
                  ("evt_p1", "invoice.paid", "in_1")]
        self.insert("billing.stripe_events", {"id": "text", "type": "text", "created": "bigint",
                                              "payload": "jsonb"},
                    [{"id": e, "type": t, "created": 1700000000,
                      "payload": {"id": e, "type": t, "data": {"object": {"id": inv,
                                                                        "object": "invoice"}}}}
                     for e, t, inv in events])
        cls._loaded = True

    def fixture_range(self, role="admin"):
        return self.dashboard(role, {"from": day(0), "to": day(7)})

    # --- tests ---------------------------------------------------------------

    def test_00_a_range_with_no_data_is_zeros(self):
        # Before any fixture: no subscription, invoice or activity anywhere.
        doc = self.assert_ok_json(self.dashboard(query={"from": "2020-01-01",
                                                        "to": "2020-01-04"}))
        self.assertEqual(doc["from"], "2020-01-01T00:00:00Z")
        self.assertEqual(doc["to"], "2020-01-04T00:00:00Z")
        zero_days = [{"day": d, "count": 0} for d in ("2020-01-01", "2020-01-02", "2020-01-03")]
        self.assertEqual(doc["signups"], {"total": 0, "by_day": zero_days})
        self.assertEqual(doc["active_users"], {"day": "2020-01-03", "dau": 0, "wau": 0, "mau": 0})
        self.assertEqual(doc["active_subscribers"], 0)
        self.assertEqual(doc["trialing_subscribers"], 0)
        self.assertEqual(doc["mrr"], [])
        self.assertEqual(doc["arpu"], [])
        self.assertEqual(doc["churn"], {"rate": 0, "ended": 0, "active_at_start": 0})
        self.assertEqual(doc["failed_payments"], {"rate": 0, "failed": 0, "due": 0})
        self.assertEqual(doc["revenue"]["total"], [])
        self.assertEqual(doc["revenue"]["by_day"],
                         [{"day": d, "amounts": []}
                          for d in ("2020-01-01", "2020-01-02", "2020-01-03")])

    def test_10_signups_total_and_every_day(self):
        self.load_fixture()
        doc = self.assert_ok_json(self.fixture_range())
        self.assertEqual(doc["from"], at(0))
        self.assertEqual(doc["to"], at(7))
        # s-a, s-b on D; s-c on D+2; s-d (erased) on D+6: 2 + 1 + 1 = 4.
        self.assertEqual(doc["signups"]["total"], 4)
        expected = {day(0): 2, day(2): 1, day(6): 1}
        self.assertEqual(doc["signups"]["by_day"],
                         [{"day": d, "count": expected.get(d, 0)} for d in days(0, 6)])

    def test_11_bounds_are_instants_from_inclusive_to_exclusive(self):
        self.load_fixture()
        # s-a and s-b at D 10:00:00 exactly: in from 10:00:00, out from
        # 10:00:01 (only s-c at D+2 23:59:59 is left before D+3).
        doc = self.assert_ok_json(self.dashboard(query={"from": at(0, "10:00:00"), "to": day(3)}))
        self.assertEqual(doc["signups"]["total"], 3)
        doc = self.assert_ok_json(self.dashboard(query={"from": at(0, "10:00:01"), "to": day(3)}))
        self.assertEqual(doc["signups"]["total"], 1)
        self.assertEqual([d["day"] for d in doc["signups"]["by_day"]], days(0, 2))
        # to D+2 23:59:59 leaves s-c out; D+2 is still the last day shown.
        doc = self.assert_ok_json(self.dashboard(query={"from": day(0), "to": at(2, "23:59:59")}))
        self.assertEqual(doc["signups"]["total"], 2)
        self.assertEqual(doc["signups"]["by_day"][-1], {"day": day(2), "count": 0})

    def test_20_daily_weekly_monthly_active_users(self):
        self.load_fixture()
        doc = self.assert_ok_json(self.fixture_range())
        # L = D+6. DAU: u1, u7 = 2. WAU (L-6..L): u1, u2, u7 = 3.
        # MAU (L-29..L): u1, u2, u3, u4, u7 = 5 (u5 at L-30 and u6 after L
        # are out; u1's two days count once).
        self.assertEqual(doc["active_users"], {"day": day(6), "dau": 2, "wau": 3, "mau": 5})
        # Ending a day earlier (L = D+5): DAU u1 = 1; WAU (D-1..D+5): u1,
        # u2, u3 = 3; MAU (D-24..D+5): u1, u2, u3, u4, u5 = 5.
        doc = self.assert_ok_json(self.dashboard(query={"from": day(0), "to": day(6)}))
        self.assertEqual(doc["active_users"], {"day": day(5), "dau": 1, "wau": 3, "mau": 5})

    def test_30_mrr_subscribers_and_arpu(self):
        self.load_fixture()
        doc = self.assert_ok_json(self.fixture_range())
        # Paying now (active, past_due): s1 cus1, s2 cus2, s4 + s5 cus4, s8
        # cus7 (price unknown) = 4 customers; trialing: s3 cus3 = 1.
        self.assertEqual(doc["active_subscribers"], 4)
        self.assertEqual(doc["trialing_subscribers"], 1)
        # MRR in twelfths of a minor unit, rounded once, halves up:
        #   eur: s1 1000 * 12 + s2 10000 (yearly) = 22000 -> 22000 / 12
        #        = 1833.33 -> 1833
        #   usd: s4 999 * 12 + s5 1002 (yearly) = 12990 -> 12990 / 12
        #        = 1082.5 -> 1083
        # s3 trialing, s6 canceled, s7 unpaid and s8 (no price) add nothing.
        self.assertEqual(doc["mrr"], [{"currency": "eur", "amount": 1833},
                                      {"currency": "usd", "amount": 1083}])
        # ARPU = MRR / paying customers of the currency:
        #   eur: 22000 / (12 * 2) = 916.67 -> 917
        #   usd: 12990 / (12 * 1) = 1082.5 -> 1083 (cus4's two subscriptions
        #        are one customer)
        self.assertEqual(doc["arpu"], [{"currency": "eur", "amount": 917},
                                       {"currency": "usd", "amount": 1083}])
        # The state now: another range shows the same.
        other = self.assert_ok_json(self.dashboard(query={"from": "2020-01-01",
                                                          "to": "2020-01-02"}))
        for key in ("active_subscribers", "trialing_subscribers", "mrr", "arpu"):
            self.assertEqual(other[key], doc[key], key)

    def test_40_churn_rate(self):
        self.load_fixture()
        doc = self.assert_ok_json(self.fixture_range())
        # Active at D (made before D, out of trial, not ended by D): s1, s2,
        # c1, c2, c4, c8, c9 = 7. Not: c3 (ended D-1), c5 (trialing until
        # D+1), c6 (made D+1), c7 (incomplete_expired), the rest (made now).
        # Ended in [D, D+7): c1 (canceled_at D+3 12:00), c2 (cancelled at
        # the end of its period, D+2; its canceled_at D-5 is the request),
        # c8 (no canceled_at: its last change, D+4) = 3; c4 ends at D+7,
        # outside. 3 / 7 = 0.428571... -> 0.4286.
        self.assertEqual(doc["churn"], {"rate": 0.4286, "ended": 3, "active_at_start": 7})
        # From D+3 12:00:01: c1 (D+3 12:00), c2 (D+2), c5 and c6 have
        # ended by then, so active at start: s1, s2, c4, c8, c9 = 5, of
        # which c8 ends (D+4) = 1. 1 / 5 = 0.2.
        doc = self.assert_ok_json(self.dashboard(query={"from": at(3, "12:00:01"),
                                                        "to": day(7)}))
        self.assertEqual(doc["churn"], {"rate": 0.2, "ended": 1, "active_at_start": 5})

    def test_50_failed_payment_rate(self):
        self.load_fixture()
        doc = self.assert_ok_json(self.fixture_range())
        # Due in [D, D+7) (open, paid or uncollectible, amount_due > 0):
        # in_1, in_2, in_3, in_4, in_5, in_11, in_12, in_13 = 8 (in_6 void,
        # in_7 draft, in_8 asks 0, in_9 and in_10 outside). Failed: in_2
        # and in_3 (payment_failed events; in_3's two count once), in_4
        # (uncollectible) = 3. 3 / 8 = 0.375.
        self.assertEqual(doc["failed_payments"], {"rate": 0.375, "failed": 3, "due": 8})

    def test_60_revenue_by_day_and_currency(self):
        self.load_fixture()
        doc = self.assert_ok_json(self.fixture_range())
        # Paid invoices' amount_paid by the day they were made (refunds
        # not deducted): eur in_1 1000 (D) + in_2 2000 (D+2) + in_8 0 (D+1)
        # + in_11 250 + in_13 50 (D+6) = 3300; usd in_12 100 (D+2) = 100.
        self.assertEqual(doc["revenue"]["total"], [{"currency": "eur", "amount": 3300},
                                                   {"currency": "usd", "amount": 100}])
        per_day = {day(0): (1000, 0), day(2): (2000, 100), day(6): (300, 0)}
        self.assertEqual(doc["revenue"]["by_day"],
                         [{"day": d, "amounts": [
                             {"currency": "eur", "amount": per_day.get(d, (0, 0))[0]},
                             {"currency": "usd", "amount": per_day.get(d, (0, 0))[1]}]}
                          for d in days(0, 6)])

    def test_70_finance_sees_the_same(self):
        self.load_fixture()
        admin = self.assert_ok_json(self.fixture_range("admin"))
        finance = self.assert_ok_json(self.fixture_range("finance"))
        admin.pop("as_of"), finance.pop("as_of")
        self.assertEqual(finance, admin)

    def test_71_client_is_forbidden_anonymous_unauthenticated(self):
        self.assert_error(self.fixture_range("client"), 403, "forbidden")
        self.assert_error(self.fixture_range("anon"), 401, "unauthenticated")

    def test_80_default_range_is_the_last_30_days(self):
        doc = self.assert_ok_json(self.dashboard())
        first = today() - datetime.timedelta(days=29)
        self.assertEqual(doc["from"], first.isoformat() + "T00:00:00Z")
        self.assertEqual(doc["to"],
                         (today() + datetime.timedelta(days=1)).isoformat() + "T00:00:00Z")
        self.assertEqual(len(doc["signups"]["by_day"]), 30)
        self.assertEqual(doc["signups"]["by_day"][-1]["day"], today().isoformat())
        # The three accounts of this test were made today.
        self.assertGreaterEqual(doc["signups"]["by_day"][-1]["count"], 3)
        # Only one bound: the other follows (30 days before to; to today).
        doc = self.assert_ok_json(self.dashboard(query={"to": "2024-03-01"}))
        self.assertEqual(doc["from"], "2024-01-31T00:00:00Z")
        doc = self.assert_ok_json(self.dashboard(query={"from": today().isoformat()}))
        self.assertEqual(len(doc["signups"]["by_day"]), 1)

    def test_90_bad_bounds_and_unknown_keys_are_refused_by_name(self):
        cases = [
            ({"from": "2026-02-30"}, "from", "invalid"),
            ({"to": "2026-13-01"}, "to", "invalid"),
            ({"from": "yesterday"}, "from", "invalid"),
            ({"from": "2026-01-01T00:00:00+02:00"}, "from", "invalid"),
            ({"to": "2026-01-01T25:00:00Z"}, "to", "invalid"),
            ({"from": "2026-01-02", "to": "2026-01-01"}, "to", "not_after_from"),
            ({"from": "2026-01-01", "to": "2026-01-01T00:00:00Z"}, "to", "not_after_from"),
            ({"from": "2024-01-01", "to": "2026-01-01T00:00:01Z"}, "from", "range_too_long"),
            ({"to": "0001-01-05"}, "from", "out_of_range"),
            ({"since": "2026-01-01"}, "since", "unknown_field"),
        ]
        for query, field, reason in cases:
            with self.subTest(query=query):
                fields = self.fields(self.dashboard(query=query))
                self.assertEqual(fields.get(field), reason, fields)
        # Exactly two years is allowed.
        self.assert_ok_json(self.dashboard(query={"from": "2024-01-01", "to": "2026-01-01"}))
        # Bytes that are not UTF-8 and a malformed escape.
        for raw in ("from=%FF", "to=%E2%82", "from=%zz"):
            with self.subTest(raw=raw):
                resp = self.dashboard(raw_query=raw)
                self.assertEqual(resp.status, 400, repr(resp))
                self.assert_error(resp, 400, "invalid_request")


if __name__ == "__main__":
    unittest.main()
