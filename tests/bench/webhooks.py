#!/usr/bin/env python3
"""Stripe webhooks applied per second, with duplicates (SPEC §9: at least
1000 distinct events/s, no double effect).

BENCH_CUSTOMERS users are each linked to a Stripe customer
(checkout.session.completed), then BENCH_EVENTS distinct events, spread
over the customers in turn, are built and signed as Stripe does
(HMAC-SHA256 over "t.body" with the stack's stripe_webhook_secret): a third
each of invoice.paid (an invoice row, an invoice.paid domain event and a
receipt mail queued), customer.subscription.updated (a subscription row
and a subscription.updated domain event) and charge.refunded (a charge
row). A share BENCH_DUPLICATES of them is delivered a second time, the
very same bytes a little later in the stream, as Stripe's retries are.
wrk POSTs each prepared delivery once over BENCH_CONNECTIONS keep-alive
TLS connections.

The figure is distinct events applied per second as Postgres recorded
them (first received_at to last processed_at). Afterwards every effect is
counted in Postgres: one stored event, one row and one domain event (and
receipt) per distinct event, none for the repeats. The ceiling printed
beside it is the same signed POSTs answered by the empty FastCGI
responder behind the same nginx.

Events about one user's subscriptions apply one after the other (they take
the user's entitlements lock, so that each entitlements.changed tells what
the user has): with BENCH_CUSTOMERS=1 every subscription event waits for
the one before it, a shape no real business has.

Environment: BENCH_EVENTS (20000), BENCH_CUSTOMERS (50), BENCH_DUPLICATES (0.2),
BENCH_CONNECTIONS (32), BENCH_SECONDS (8, the ceiling's run),
BENCH_MAX_SECONDS (240: give up waiting for the events), BENCH_PROCESSES,
BENCH_OUT, BENCH_STRICT.
"""

import hashlib
import hmac
import json
import os
import random
import subprocess
import tempfile
import time

import benchlib as b

PATH = "/v1/billing/webhooks/stripe"
SECRET = "whsec_bench_" + os.urandom(12).hex()
PREFIX = "bench" + os.urandom(3).hex()
# A LIKE pattern for this run's Stripe ids (evt_..., in_..., sub_...).
OURS = f"%\\_{PREFIX}\\_%"

LUA = r"""-- Written by tests/bench/webhooks.py: each thread POSTs its own list of
-- prepared deliveries, once (or round and round with wrap = true).
local threads, counter = {}, 0
function setup(thread)
  counter = counter + 1
  thread:set("list_file", LIST_PREFIX .. counter)
end
local reqs, n, i, got = {}, 0, 0, 0
local idle
function init(args)
  for line in io.lines(list_file) do
    local sig, body = line:match("^([^\t]*)\t(.*)$")
    n = n + 1
    reqs[n] = wrk.format("POST", TARGET, {["Content-Type"] = "application/json",
                                          ["Stripe-Signature"] = sig}, body)
  end
  idle = wrk.format("GET", "/healthz")
end
function request()
  i = i + 1
  if i <= n then return reqs[i] end
  if WRAP then i = 1; return reqs[1] end
  return idle
end
function response(status, headers, body)
  -- nginx's own /healthz answer is not a delivery.
  if WRAP or not body:find('"status"', 1, true) then
    got = got + 1
    if not WRAP and got >= n then wrk.thread:stop() end
  end
end
"""


def sign(body, t):
    mac = hmac.new(SECRET.encode(), b"%d." % t + body, hashlib.sha256).hexdigest()
    return f"t={t},v1={mac}"


def envelope(event_id, event_type, obj, created):
    return json.dumps({"id": event_id, "object": "event", "api_version": "2024-06-20",
                       "created": created, "type": event_type, "livemode": False,
                       "pending_webhooks": 1, "data": {"object": obj}},
                      separators=(",", ":")).encode()


def build_events(count, owners):
    """[(kind, event id, body)] for count distinct events; owners: [(Stripe
    customer, user id)], taken in turn."""
    now = int(time.time())
    out = []
    for i in range(count):
        kind = ("invoice", "subscription", "charge")[i % 3]
        customer, user_id = owners[(i // 3) % len(owners)]
        eid = f"evt_{PREFIX}_{i}"
        if kind == "invoice":
            obj = {"id": f"in_{PREFIX}_{i}", "object": "invoice", "customer": customer,
                   "subscription": None, "status": "paid", "number": f"B-{i}",
                   "amount_due": 1200, "amount_paid": 1200, "currency": "eur",
                   "created": now, "hosted_invoice_url": None, "invoice_pdf": None}
            body = envelope(eid, "invoice.paid", obj, now)
        elif kind == "subscription":
            obj = {"id": f"sub_{PREFIX}_{i}", "object": "subscription", "customer": customer,
                   "status": "active", "current_period_start": now,
                   "current_period_end": now + 30 * 86400, "cancel_at_period_end": False,
                   "canceled_at": None, "trial_end": None, "metadata": {"user_id": user_id},
                   "items": {"object": "list", "data": [
                       {"id": f"si_{PREFIX}_{i}", "price": {"id": "price_bench"}}]}}
            body = envelope(eid, "customer.subscription.updated", obj, now)
        else:
            obj = {"id": f"ch_{PREFIX}_{i}", "object": "charge", "amount": 1200,
                   "amount_refunded": 300, "currency": "eur", "status": "succeeded",
                   "refunded": False, "invoice": None}
            body = envelope(eid, "charge.refunded", obj, now)
        out.append((kind, eid, body))
    return out


def write_lists(events, duplicates, threads, directory):
    """Deliveries spread over the threads' list files; a repeat goes to the
    same thread as its original, a few deliveries after it. Returns the
    number of deliveries."""
    rng = random.Random(1)
    t = int(time.time())
    lists = [[] for _ in range(threads)]
    for n, (_, _, body) in enumerate(events):
        lists[n % threads].append((sign(body, t), body))
    total = len(events)
    for lst in lists:
        originals = list(lst)
        for k, item in enumerate(originals):
            if rng.random() < duplicates:
                lst.insert(min(len(lst), k + 1 + rng.randrange(64)), item)
                total += 1
    for n, lst in enumerate(lists, 1):
        with open(os.path.join(directory, f"list{n}"), "wb") as f:
            for sig, body in lst:
                f.write(sig.encode() + b"\t" + body + b"\n")
    return total


def script(directory, target, wrap):
    path = os.path.join(directory, f"script-{'wrap' if wrap else 'once'}.lua")
    with open(path, "w") as f:
        f.write(f"LIST_PREFIX = {b.lua_string(os.path.join(directory, 'list'))}\n")
        f.write(f"TARGET = {b.lua_string(target)}\nWRAP = {'true' if wrap else 'false'}\n")
        f.write(LUA)
    return path


def counts(stack):
    sql = f"""
SELECT (SELECT count(*) FROM billing.stripe_events WHERE id LIKE :'v1'),
       (SELECT count(*) FROM billing.stripe_events WHERE id LIKE :'v1' AND processed_at IS NOT NULL),
       (SELECT count(*) FROM billing.stripe_events WHERE id LIKE :'v1' AND error IS NOT NULL),
       (SELECT coalesce(extract(epoch FROM max(processed_at) - min(received_at)), 0)
          FROM billing.stripe_events WHERE id LIKE :'v1'),
       (SELECT count(*) FROM billing.invoices WHERE stripe_invoice_id LIKE :'v1'),
       (SELECT count(*) FROM billing.subscriptions WHERE stripe_subscription_id LIKE :'v1'),
       (SELECT count(*) FROM billing.charges WHERE stripe_charge_id LIKE :'v1'),
       (SELECT count(*) FROM jobs.outbox WHERE kind = 'event' AND payload->>'type' = 'invoice.paid'
          AND payload->'data'->>'stripe_id' LIKE :'v1'),
       (SELECT count(*) FROM jobs.outbox WHERE kind = 'event'
          AND payload->>'type' = 'subscription.updated'
          AND payload->'data'->>'stripe_id' LIKE :'v1'),
       (SELECT count(*) FROM jobs.outbox WHERE kind = 'email.send' AND dedupe_key LIKE :'v2')
"""
    row = stack.psql(sql, OURS, f"receipt:evt\\_{PREFIX}\\_%").split("|")
    keys = ("events", "processed", "with_error", "span_s", "invoices", "subscriptions",
            "charges", "invoice_paid_events", "subscription_events", "receipts")
    return {k: (float(v) if k == "span_s" else int(v)) for k, v in zip(keys, row)}


def processed(stack):
    """Events processed so far: the progress poll, kept light so that it
    takes little from the Postgres it measures (counts() reads every
    effect, once, at the end)."""
    return int(stack.psql("SELECT count(*) FROM billing.stripe_events WHERE "
                          "processed_at IS NOT NULL AND id LIKE :'v1'", OURS))


def bench():
    distinct = b.env_int("BENCH_EVENTS", 20000, minimum=3)
    duplicates = b.env_float("BENCH_DUPLICATES", 0.2)
    conns = b.env_int("BENCH_CONNECTIONS", 32)
    customers = b.env_int("BENCH_CUSTOMERS", 50)
    threads = min(b.env_int("BENCH_THREADS", 2), conns)
    seconds = b.env_int("BENCH_SECONDS", 8)
    max_seconds = b.env_int("BENCH_MAX_SECONDS", 240)
    b.which("wrk")
    with b.BenchStack(env={"STOA_STRIPE_WEBHOOK_SECRET": SECRET}) as stack:
        report = b.Report("Stripe webhooks", {
            "events": distinct, "customers": customers, "duplicates": duplicates,
            "connections": conns,
            "threads": threads, "processes": stack.processes})
        stack.start_empty_responder()
        owners = []
        c = stack.new_client()
        for n in range(customers):
            user_id, _, _, _ = stack.register_and_login("webhooks")
            customer = f"cus_{PREFIX}_{n}"
            link = envelope(f"evt_link{n}_{PREFIX}", "checkout.session.completed",
                            {"id": f"cs_{PREFIX}_{n}", "object": "checkout.session",
                             "client_reference_id": user_id, "customer": customer,
                             "metadata": {"user_id": user_id}}, int(time.time()))
            r = c.request("POST", PATH, body=link, raw=True,
                          headers={"Content-Type": "application/json",
                                   "Stripe-Signature": sign(link, int(time.time()))})
            if r.status != 200:
                raise b.SetupError(f"the linking event answered {r.status}: {r.body!r}")
            owners.append((customer, user_id))
        c.close()
        events = build_events(distinct, owners)
        with tempfile.TemporaryDirectory(prefix="stoa-bench-wh-") as d:
            deliveries = write_lists(events, duplicates, threads, d)
            b.note(f"ceiling: the same deliveries to the empty responder, {seconds}s")
            ceiling = b.run_wrk(stack, "/bench/empty", conns, seconds, threads=threads,
                                script=script(d, "/bench/empty", True))
            # Signed now: the whole run must fit Stripe's 300 s tolerance.
            deliveries = write_lists(events, duplicates, threads, d)
            b.note(f"{deliveries} deliveries of {distinct} distinct events, "
                   f"{conns} connections")
            b.raise_nofile(conns + 256)
            argv = b.wrk_command(stack, PATH, conns, max_seconds, threads=threads,
                                 script=script(d, PATH, False), timeout_s=10)
            out = tempfile.TemporaryFile(mode="w+")
            wrk = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT)
            deadline = time.monotonic() + max_seconds
            last, last_change = -1, time.monotonic()
            while wrk.poll() is None and time.monotonic() < deadline:
                time.sleep(2.0)  # each poll is a psql process and a scan: rarely
                done = processed(stack)
                if done >= distinct:
                    break
                if done != last:
                    last, last_change = done, time.monotonic()
                elif time.monotonic() - last_change > 15:
                    report.problem(f"no progress for 15 s at {done} of {distinct} events")
                    break
            time.sleep(1.0)  # the last answers on their way back
            result = b.parse_wrk(b.interrupt_wrk(wrk, out))
        # Queued effects are worked off by the jobs worker; counts stay exact.
        got = counts(stack)
        rate = got["processed"] / got["span_s"] if got["span_s"] > 0 else None
        kinds = {k: sum(1 for e in events if e[0] == k)
                 for k in ("invoice", "subscription", "charge")}
        report.figure("distinct events applied/s (Postgres timestamps)", rate, "/s")
        report.figure("ceiling: the same POSTs to the empty responder", ceiling["requests_per_second"], "/s")
        report.figure("applied / ceiling", round(rate / ceiling["requests_per_second"], 3)
                      if rate and ceiling["requests_per_second"] else None)
        report.figure("deliveries sent (with repeats)", deliveries)
        report.figure("webhook p99 (wrk)", result["p99_ms"], "ms")
        report.bar("distinct events applied/s", round(rate, 1) if rate else None, ">=", 1000)
        want = {"events": distinct, "processed": distinct, "with_error": 0,
                "invoices": kinds["invoice"], "subscriptions": kinds["subscription"],
                "charges": kinds["charge"], "invoice_paid_events": kinds["invoice"],
                "subscription_events": kinds["subscription"], "receipts": kinds["invoice"]}
        for key, expected in want.items():
            if got[key] != expected:
                report.problem(f"{key}: {got[key]} in Postgres, {expected} expected")
        report.figure("effects in Postgres as expected (once each)",
                      "yes" if all(got[k] == v for k, v in want.items()) else "NO")
        for p in b.wrk_problems("webhooks", result):
            report.problem(p)
        report.data = {"postgres": got, "expected": want,
                       "wrk": {k: v for k, v in result.items()},
                       "ceiling": {k: v for k, v in ceiling.items() if k != "output"}}
        return report.finish()


if __name__ == "__main__":
    b.main(bench)
