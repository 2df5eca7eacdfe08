#!/usr/bin/env python3
"""Product-update fan-out: recipients written per second for an update sent
to everyone (issue: a 100k-user audience must not hold one transaction or
one request).

BENCH_UPDATE_USERS accounts are written straight to auth.users; an admin
sends one update to `{"all": true}` through nginx; stoa-jobs writes the
recipients in batches of a thousand, each batch one transaction with its
feed rows, its mail jobs (every bulk account wants mail) and its live
event; a run of the fan-out job writes batches for up to 2 s, then queues
its continuation. The figure is recipients / (delivered_at - the update's
created_at).
Beside it, as a ceiling, the same number of feed rows written by one
INSERT ... SELECT in one transaction (what a single huge transaction would
cost, without the mail jobs and events), in the same run. The mails
themselves are not sent: once the fan-out is done, their jobs are marked
done.

Environment: BENCH_UPDATE_USERS (100000), BENCH_MAX_SECONDS (300),
BENCH_OUT, BENCH_STRICT.
"""

import time

import benchlib as b

TITLE = "Bench update"


def bench():
    users = b.env_int("BENCH_UPDATE_USERS", 100000)
    max_seconds = b.env_int("BENCH_MAX_SECONDS", 300)
    with b.BenchStack() as stack:
        report = b.Report("product-update fan-out", {"accounts": users, "batch": 1000})
        user_id, email, _, _ = stack.register_and_login("updates-admin")
        stack.psql("UPDATE auth.users SET role = 'admin' WHERE id = :'v1'", user_id)
        c = stack.new_client()
        r = c.request("POST", "/v1/auth/login", body={"email": email, "password": b.PASSWORD})
        if r.status != 200:
            raise b.SetupError(f"admin login answered {r.status}")
        token = r.json["access_token"]
        b.note(f"writing {users} accounts")
        stack.psql("""
            INSERT INTO auth.users (email, name)
            SELECT 'fanout-' || i || '-' || :'v1' || '@example.com', 'Fan-out ' || i
            FROM generate_series(1, :v2) i""", int(time.time()), users)
        stack.psql("ANALYZE auth.users")
        b.note("sending the update to everyone")
        r = c.request("POST", "/v1/admin/updates",
                      body={"title": TITLE, "body": "A **bench** update.",
                            "audience": {"all": True}},
                      headers={"Authorization": f"Bearer {token}"})
        if r.status != 201:
            raise b.SetupError(f"POST /v1/admin/updates answered {r.status}: {r.body!r}")
        update = r.json
        deadline = time.monotonic() + max_seconds
        span = None
        while time.monotonic() < deadline:
            got = stack.psql("""
                SELECT delivered, extract(epoch FROM delivered_at - created_at)
                FROM admin.updates WHERE id = :'v1' AND delivered_at IS NOT NULL""",
                             update["id"])
            if got:
                delivered, span = got.split("|")
                break
            time.sleep(0.2)
        c.close()
        stack.psql("UPDATE jobs.outbox SET done_at = now() WHERE kind = 'updates.mail' "
                   "AND done_at IS NULL")
        if span is None:
            report.problem(f"the fan-out did not finish within {max_seconds}s")
            return report.finish()
        delivered, span = int(delivered), float(span)
        runs = int(stack.psql("SELECT count(*) FROM jobs.outbox WHERE kind = "
                              "'updates.fanout' AND payload->>'update_id' = :'v1'",
                              update["id"]))
        mails = int(stack.psql("SELECT count(*) FROM jobs.outbox WHERE kind = 'updates.mail' "
                               "AND payload->>'update_id' = :'v1'", update["id"]))
        events = int(stack.psql("SELECT count(*) FROM jobs.outbox WHERE kind = "
                                "'realtime.publish' AND payload->'event'->>'type' = "
                                "'update.created' AND payload->'event'->'data'->>'id' = :'v1'",
                                update["id"]))
        # The live events: every batch's publish to its thousand channels
        # (nchan keeps each event per channel for the reconnect buffer).
        live = ""
        for _ in range(150):
            live = stack.psql("""
                SELECT count(*) FILTER (WHERE done_at IS NOT NULL) || '|' ||
                       count(*) FILTER (WHERE dead_at IS NOT NULL) || '|' ||
                       count(*) FILTER (WHERE done_at IS NULL AND dead_at IS NULL)
                FROM jobs.outbox WHERE kind = 'realtime.publish'
                  AND payload->'event'->'data'->>'id' = :'v1'""", update["id"])
            if live.endswith("|0"):
                break
            time.sleep(0.2)
        published, dead_events, _ = (int(x) for x in live.split("|"))
        b.note("ceiling: the same feed rows in one INSERT ... SELECT")
        ceiling_s = float(stack.psql("""
            CREATE TEMP TABLE t (LIKE admin.update_recipients INCLUDING ALL);
            SELECT extract(epoch FROM clock_timestamp()) AS t0 \\gset
            INSERT INTO t (update_id, user_id, posted_at)
              SELECT :'v1', id, now() FROM auth.users WHERE status = 'active';
            SELECT extract(epoch FROM clock_timestamp()) - :t0""", update["id"]).splitlines()[-1])
        rate = delivered / span if span > 0 else None
        ceiling = delivered / ceiling_s if ceiling_s > 0 else None
        report.figure("recipients", delivered)
        report.figure("fan-out time (update created to last batch)", round(span, 3), "s")
        report.figure("recipients/s", round(rate, 1) if rate else None, "/s")
        report.figure("ceiling: feed rows/s in one INSERT ... SELECT", round(ceiling, 1)
                      if ceiling else None, "/s")
        report.figure("fan-out / ceiling", round(rate / ceiling, 3) if rate and ceiling else None)
        report.figure("fan-out jobs (each writes batches for up to 2 s)", runs)
        report.figure("mail jobs queued", mails)
        report.figure("batches = live-event jobs (one transaction each)", events)
        report.figure("live-event jobs published / dead", f"{published} / {dead_events}")
        if dead_events:
            report.problem(f"{dead_events} live-event jobs could not be published")
        if delivered != update["recipients"]:
            report.problem(f"{delivered} of {update['recipients']} recipients delivered")
        if mails != delivered:
            report.problem(f"{mails} mail jobs for {delivered} recipients")
        report.data = {"update": update["id"], "recipients": delivered, "span_s": span,
                       "ceiling_s": ceiling_s, "runs": runs, "batches": events}
        return report.finish()


if __name__ == "__main__":
    b.main(bench)
