#!/usr/bin/env python3
"""A stand-in for Stripe's REST API and webhooks, for tests only.

It speaks Stripe's wire format for the slice of the API stoa uses (customers,
products, prices, Checkout and portal sessions, subscriptions, invoices,
charges, events): form bodies in bracket notation, a Bearer secret key,
Stripe's error JSON, Idempotency-Key replays, and webhook deliveries signed
the way Stripe signs them. State lives in memory, optionally mirrored to a
JSON file. Webhook deliveries skip TLS certificate checks so they can reach a
stack with a self-signed certificate: never point it at anything real.

    python3 stripe_fake.py --port 0 --secret-key sk_test_x \\
        [--webhook-url URL --webhook-secret whsec_x] [--state-file PATH]

or from Python: StripeFake(secret_key=...).start() -> base URL. README.md next
to this file lists the control endpoints under /__fake/. Stdlib only.
"""

import argparse
import copy
import hashlib
import hmac
import json
import os
import queue
import re
import secrets
import signal
import ssl
import string
import sys
import threading
import time
import traceback
import urllib.error
import urllib.parse
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from stripe_fake_forms import (CHECKOUT, CUSTOMER, PORTAL, PRICE, PRICE_UPDATE, PRODUCT,
                               RETRIEVABLE, SUBSCRIPTION_UPDATE, StripeError, add_interval,
                               changed, coerce, invalid, missing, no_such, parse_form, require,
                               with_metadata)

API_VERSION = "2024-06-20"
MAX_BODY = 1 << 20
DELIVERY_TIMEOUT = 10.0   # seconds per webhook POST
_ALNUM = string.ascii_letters + string.digits


def new_id(prefix, length=24):
    """An id shaped like Stripe's: a type prefix and random base62."""
    return prefix + "".join(secrets.choice(_ALNUM) for _ in range(length))


def sign_payload(secret, body, timestamp=None):
    """The Stripe-Signature header for body (bytes or str): t=<unix>,v1=<hex
    HMAC-SHA256 over "t.body", keyed with the secret string as-is>."""
    if isinstance(body, str):
        body = body.encode()
    t = int(time.time()) if timestamp is None else int(timestamp)
    mac = hmac.new(secret.encode(), b"%d." % t + body, hashlib.sha256)
    return f"t={t},v1={mac.hexdigest()}"


def json_bytes(obj):
    # Stripe pretty-prints answers and event payloads. Receivers must check
    # signatures over the raw bytes, and newlines in them keep that honest.
    return json.dumps(obj, indent=2).encode()


# Errors, form bodies and what each endpoint accepts: stripe_fake_forms.py.


class _Call:
    """What a handler knows of the API request it serves."""

    def __init__(self, request_id, idempotency_key):
        self.request_id, self.idempotency_key = request_id, idempotency_key
        self.events = []


class _Delivery:
    def __init__(self, event, timestamp=None, secret=None, held=False):
        self.event, self.timestamp, self.secret = event, timestamp, secret
        self.done = threading.Event()
        # held: not sent before the answer of the API call that made the
        # event is out (ready set then).
        self.ready = threading.Event()
        if not held:
            self.ready.set()
        self.result = None


class StripeFake:
    """Inspect .requests (method, path, form, headers), .objects (id ->
    object), .events (every event made, in order) and .deliveries (one dict
    per webhook POST: id, type, status, error)."""

    def __init__(self, secret_key, webhook_url=None, webhook_secret=None,
                 state_file=None, host="127.0.0.1", port=0, verbose=False):
        if webhook_url and not webhook_secret:
            raise ValueError("a webhook_url needs a webhook_secret to sign with")
        self.secret_key = secret_key
        self.webhook_url, self.webhook_secret = webhook_url, webhook_secret
        self.state_file, self.host, self.port = state_file, host, port
        self.verbose, self.base_url = verbose, None
        # One lock serialises every state change: calls are short, and it
        # makes concurrent use of one Idempotency-Key trivially safe.
        self.lock = threading.RLock()
        self.objects, self.events, self.requests, self.deliveries = {}, [], [], []
        self._private = {}       # id -> what Stripe keeps but does not show
        self._idempotency = {}   # key -> [fingerprint, status, body, req id]
        self._failures = []      # injected failures, first match wins
        self._queue = queue.Queue()
        self._pending = 0        # events accepted for delivery, not yet POSTed
        self._idle = threading.Condition()
        self._server = self._deliverer = None
        no_verify = ssl.create_default_context()
        no_verify.check_hostname = False
        no_verify.verify_mode = ssl.CERT_NONE
        # No proxy: the receiver is local, whatever the environment says.
        self._opener = urllib.request.build_opener(
            urllib.request.ProxyHandler({}),
            urllib.request.HTTPSHandler(context=no_verify))
        self._routes = self._route_table()
        self._load_state()

    def start(self):
        """Serves from background threads; returns the base URL."""
        handler = type("Handler", (_Handler,), {"fake": self})
        self._server = ThreadingHTTPServer((self.host, self.port), handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        self._deliverer = threading.Thread(target=self._deliver_loop, daemon=True)
        self._deliverer.start()
        host, port = self._server.server_address[:2]
        self.base_url = f"http://{host}:{port}"
        return self.base_url

    def stop(self):
        if self._server:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._deliverer:
            self._queue.put(None)
            self._deliverer.join(DELIVERY_TIMEOUT + 5)
            self._deliverer = None

    # --- HTTP entry point ------------------------------------------------------

    def handle(self, method, target, headers, body):
        """One HTTP request -> (status, headers, body, after), after() to run
        once the answer is written; or None: drop the connection unanswered.
        headers: a case-insensitive mapping (http.client.HTTPMessage)."""
        url = urllib.parse.urlsplit(target)
        path, request_id = url.path, new_id("req_", 14)
        out = {"Content-Type": "application/json", "Request-Id": request_id,
               "Stripe-Version": headers.get("Stripe-Version") or API_VERSION}
        text = body.decode("utf-8", "replace")
        try:
            if path.startswith("/__fake/"):
                try:
                    answer = self._control(method, path, text)
                except (ValueError, TypeError, AttributeError) as e:
                    raise invalid(None, f"Bad control request: {e}")
                return 200, out, json_bytes(answer), None
            with self.lock:
                form, form_error = None, None
                try:
                    form = parse_form(text if method == "POST" else url.query)
                except StripeError as e:
                    form_error = e
                self.requests.append((method, path, form, dict(headers.items())))
                self._authenticate(headers.get("Authorization"))
                if self._injected_failure(method, path) == "drop":
                    return None
                if form_error:
                    raise form_error
                key = headers.get("Idempotency-Key") if method == "POST" else None
                if key is not None:
                    out["Idempotency-Key"] = key
                status, payload, events = self._api(method, path, form,
                                                    request_id, key, out)
                # Queued in the order the events were made, under the lock
                # (another call's answer may go out first), each held until
                # this answer is out.
                held = []
                if events and self.webhook_url:
                    with self._idle:
                        self._pending += len(events)
                    held = self._queue_events(events, hold=True)
        except StripeError as e:
            out.update(e.headers)
            return e.status, out, json_bytes(e.body()), None
        except Exception:   # a bug in the fake: say so and keep serving
            traceback.print_exc()
            e = StripeError(500, "The fake crashed; see its stderr.", "api_error")
            return 500, out, json_bytes(e.body()), None
        if not held:
            return status, out, payload, None
        # Counted and queued now, so flush() cannot miss them; released once
        # the answer is out, so the caller hears back before they arrive.
        return status, out, payload, lambda: [job.ready.set() for job in held]

    def _authenticate(self, header):
        if not header:
            raise StripeError(401, "You did not provide an API key. Send it in "
                              "the Authorization header: Bearer <secret key>.")
        scheme, _, key = header.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(
                key.strip().encode(), self.secret_key.encode()):
            raise StripeError(401, "Invalid API Key provided: ****"
                              + key.strip()[-4:])

    def _injected_failure(self, method, path):
        for rule in self._failures:
            if (rule["times"] <= 0 or not path.startswith(rule["path_prefix"])
                    or rule["method"] not in (None, method)):
                continue
            rule["times"] -= 1
            status = rule["status"]
            if status == 0:
                return "drop"
            # Nothing is saved under the Idempotency-Key: like Stripe's rate
            # limiter or an outage, the failure comes before the endpoint
            # runs, so a retry with the same key does the work once.
            retry = {"Stripe-Should-Retry": "true"}
            if status == 429:
                raise StripeError(429, "Too many requests hit the API too "
                                  "quickly.", code="rate_limit", headers={
                                      **retry, "Retry-After": str(rule["retry_after"])})
            if status >= 500:
                raise StripeError(status, "An unknown error occurred "
                                  "(injected).", "api_error", headers=retry)
            raise StripeError(status, "Injected failure.")
        return None

    def _api(self, method, path, form, request_id, key, out):
        """An authenticated call, under the lock, with Idempotency-Key
        replay. Returns (status, payload, events)."""
        fingerprint = json.dumps([method, path, form], sort_keys=True)
        if key is not None:
            if not 0 < len(key) <= 255:
                raise StripeError(400, "An Idempotency-Key has 1 to 255 "
                                  "characters.", "idempotency_error")
            saved = self._idempotency.get(key)
            if saved and saved[0] != fingerprint:
                raise StripeError(400, "Keys for idempotent requests can only "
                                  "be reused with the same parameters; "
                                  f"'{key}' was first used for a different "
                                  "request.", "idempotency_error")
            if saved:
                out.update({"Idempotent-Replayed": "true",
                            "Original-Request": saved[3]})
                return saved[1], saved[2].encode(), []
        handler, spec, match = self._route(method, path)
        params = coerce(form, {**spec, "expand": ["str"]})
        call = _Call(request_id, key)
        status, obj = handler(call, params, *match.groups())
        payload = json_bytes(self._expand(copy.deepcopy(obj),
                                          params.get("expand") or []))
        # Only successes are saved: a request refused by validation ran
        # nothing, and Stripe lets its key be used again.
        if key is not None:
            self._idempotency[key] = [fingerprint, status, payload.decode(),
                                      request_id]
        if method != "GET":
            self._save_state()
        return status, payload, call.events

    def _route(self, method, path):
        for verb, pattern, handler, spec in self._routes:
            m = pattern.fullmatch(path)
            if m and verb == method:
                return handler, spec, m
        raise StripeError(404, f"Unrecognized request URL ({method}: {path}).")

    def _route_table(self):
        oid = r"([A-Za-z0-9_]+)"
        table = [
            ("POST", "/v1/customers", self._customer_create, CUSTOMER),
            ("POST", "/v1/products", self._product_create, PRODUCT),
            ("POST", f"/v1/products/{oid}", self._product_update, PRODUCT),
            ("POST", "/v1/prices", self._price_create, PRICE),
            ("POST", f"/v1/prices/{oid}", self._price_update, PRICE_UPDATE),
            ("POST", "/v1/checkout/sessions", self._checkout_create, CHECKOUT),
            ("POST", "/v1/billing_portal/sessions", self._portal_create, PORTAL),
            ("POST", f"/v1/subscriptions/{oid}", self._subscription_update,
             SUBSCRIPTION_UPDATE),
        ]
        for segment, kind in RETRIEVABLE.items():
            table.append(("GET", f"/v1/{segment}/{oid}",
                          lambda call, p, i, kind=kind: (200, self._get(kind, i)),
                          {}))
        return [(m, re.compile(p), h, s) for m, p, h, s in table]

    # --- objects and events ------------------------------------------------------

    def _get(self, kind, oid, param="id", status=404):
        obj = self.objects.get(oid)
        if obj is None or obj.get("object") != kind:
            raise no_such(kind, oid, param, status)
        return obj

    def _new(self, prefix, kind, length=24, id_=None, **fields):
        """Stores a new object with the fields every Stripe object has."""
        obj = {"id": id_ or new_id(prefix, length), "object": kind,
               "created": int(time.time()), "livemode": False, **fields}
        self.objects[obj["id"]] = obj
        return obj

    def _expand(self, obj, paths):
        """Replaces id strings by the objects they name along each dotted
        path of expand[] (lists on the way are expanded element-wise)."""
        def walk(node, parts, path):
            if isinstance(node, list):
                for item in node:
                    walk(item, parts, path)
                return
            value = node.get(parts[0]) if isinstance(node, dict) else None
            if isinstance(value, str) and value in self.objects:
                value = node[parts[0]] = copy.deepcopy(self.objects[value])
            if not isinstance(value, (dict, list)):
                raise invalid("expand", f"This property cannot be expanded ({path}).")
            if len(parts) > 1:
                walk(value, parts[1:], path)
        for path in paths:
            if path.count(".") > 3:
                raise invalid("expand", "You cannot expand more than 4 levels.")
            walk(obj, path.split("."), path)
        return obj

    def _event(self, type_, obj, call=None, previous=None):
        """Records an event carrying a snapshot of obj as it is now. API
        calls fill `request`; automatic changes (checkout) leave it null."""
        event = self._new("evt_", "event", type=type_, api_version=API_VERSION,
                          data={"object": copy.deepcopy(obj)},
                          pending_webhooks=1 if self.webhook_url else 0,
                          request={"id": call and call.request_id,
                                   "idempotency_key": call and call.idempotency_key})
        if previous:
            event["data"]["previous_attributes"] = previous
        self.events.append(event)
        if call:
            call.events.append(event)
        return event

    # --- customers, products, prices ---------------------------------------------

    def _new_customer(self, p):
        prefix = "".join(secrets.choice(string.ascii_uppercase + string.digits)
                         for _ in range(8))
        return self._new("cus_", "customer", 14, email=p.get("email") or None,
                         name=p.get("name") or None, phone=p.get("phone") or None,
                         description=p.get("description") or None,
                         metadata=with_metadata({}, p), address=None, balance=0,
                         currency=None, delinquent=False, invoice_prefix=prefix,
                         next_invoice_sequence=1, tax_exempt="none",
                         invoice_settings={"default_payment_method": None})

    def _customer_create(self, call, p):
        customer = self._new_customer(p)
        self._event("customer.created", customer, call)
        return 200, customer

    def _product_create(self, call, p):
        product = self._new("prod_", "product", 14, name=require(p, "name"),
                            active=p.get("active") is not False,
                            description=p.get("description") or None,
                            metadata=with_metadata({}, p), default_price=None,
                            images=[], type="service", url=p.get("url") or None)
        product["updated"] = product["created"]
        self._event("product.created", product, call)
        return 200, product

    def _product_update(self, call, p, oid):
        product = self._get("product", oid)
        if "name" in p:
            require(p, "name")
        before = copy.deepcopy(product)
        for field in ("name", "description", "url"):
            if field in p:
                product[field] = p[field] or None
        if p.get("active") is not None:
            product["active"] = p["active"]
        product["metadata"] = with_metadata(product["metadata"], p)
        if product != before:
            product["updated"] = int(time.time())
            self._event("product.updated", product, call, changed(before, product))
        return 200, product

    def _price_create(self, call, p):
        product = self._get("product", require(p, "product"), "product", 400)
        currency = require(p, "currency").lower()
        if not re.fullmatch(r"[a-z]{3}", currency):
            raise invalid("currency", f"Invalid currency: {currency}")
        amount = require(p, "unit_amount")
        if amount < 0:
            raise invalid("unit_amount", "Invalid unit_amount: must be at least 0.")
        recurring = p.get("recurring")
        if recurring is not None:
            recurring = {"interval": require(recurring, "interval", "recurring"),
                         "interval_count": recurring.get("interval_count") or 1,
                         "usage_type": "licensed", "aggregate_usage": None,
                         "trial_period_days": None}
        price = self._new("price_", "price", product=product["id"],
                          active=p.get("active") is not False,
                          currency=currency, unit_amount=amount,
                          unit_amount_decimal=str(amount), recurring=recurring,
                          type="recurring" if recurring else "one_time",
                          billing_scheme="per_unit", tax_behavior="unspecified",
                          lookup_key=p.get("lookup_key") or None,
                          nickname=p.get("nickname") or None,
                          metadata=with_metadata({}, p))
        self._event("price.created", price, call)
        return 200, price

    def _price_update(self, call, p, oid):
        price = self._get("price", oid)
        before = copy.deepcopy(price)
        if p.get("active") is not None:
            price["active"] = p["active"]
        for field in ("nickname", "lookup_key"):
            if field in p:
                price[field] = p[field] or None
        price["metadata"] = with_metadata(price["metadata"], p)
        if price != before:
            self._event("price.updated", price, call, changed(before, price))
        return 200, price

    # --- Checkout, portal, subscriptions -------------------------------------------

    def _checkout_create(self, call, p):
        if require(p, "mode") != "subscription":
            raise invalid("mode", "This fake implements Checkout in "
                          "subscription mode only.")
        if p.get("customer") and p.get("customer_email"):
            raise invalid("customer_email", "You may only specify one of these "
                          "parameters: customer, customer_email.")
        if p.get("customer"):
            self._get("customer", p["customer"], "customer", 400)
        require(p, "success_url")   # hosted Checkout needs it in 2024-06-20
        items, total, currency = p.get("line_items") or [], 0, None
        if not items:
            raise missing("line_items")
        for i, item in enumerate(items):
            at = f"line_items[{i}]"
            if not isinstance(item, dict):
                raise missing(f"{at}[price]")
            price = self._get("price", require(item, "price", at), f"{at}[price]", 400)
            quantity = require(item, "quantity", at)
            if not price["active"]:
                raise invalid(f"{at}[price]", "The price specified is inactive. "
                              "This field only accepts active prices.")
            if price["type"] != "recurring":
                raise invalid(f"{at}[price]", "You must provide at least one "
                              "recurring price in `subscription` mode.")
            if quantity < 1 or currency not in (None, price["currency"]):
                raise invalid(at, "Quantities are at least 1 and all prices "
                              "share one currency.")
            currency = price["currency"]
            total += price["unit_amount"] * quantity
        session = self._new(
            "cs_test_", "checkout.session", 58, mode="subscription",
            status="open", payment_status="unpaid", currency=currency,
            amount_subtotal=total, amount_total=total,
            customer=p.get("customer") or None,
            customer_email=p.get("customer_email") or None,
            client_reference_id=p.get("client_reference_id") or None,
            metadata=with_metadata({}, p), success_url=p["success_url"],
            cancel_url=p.get("cancel_url") or None, subscription=None,
            invoice=None, locale=p.get("locale"))
        session["expires_at"] = p.get("expires_at") or session["created"] + 86400
        session["url"] = f"https://checkout.stripe.test/c/pay/{session['id']}"
        # Stripe keeps the line items off the session object itself.
        self._private[session["id"]] = {
            "line_items": [{"price": it["price"], "quantity": it["quantity"]}
                           for it in items],
            "subscription_data": p.get("subscription_data") or {}}
        return 200, session

    def _portal_create(self, call, p):
        customer = self._get("customer", require(p, "customer"), "customer", 400)
        return 200, {"id": new_id("bps_"), "object": "billing_portal.session",
                     "created": int(time.time()), "customer": customer["id"],
                     "livemode": False, "locale": p.get("locale"),
                     "return_url": p.get("return_url") or None,
                     "url": "https://billing.stripe.test/p/session/"
                            + new_id("test_", 40)}

    def _subscription_update(self, call, p, oid):
        sub = self._get("subscription", oid)
        if sub["status"] == "canceled":
            raise invalid(None, "A canceled subscription cannot be updated.")
        before = copy.deepcopy(sub)
        if p.get("cancel_at_period_end") is True and not sub["cancel_at_period_end"]:
            sub.update(cancel_at_period_end=True, cancel_at=sub["current_period_end"],
                       canceled_at=int(time.time()))
        elif p.get("cancel_at_period_end") is False:
            sub.update(cancel_at_period_end=False, cancel_at=None, canceled_at=None)
        if "description" in p:
            sub["description"] = p["description"] or None
        sub["metadata"] = with_metadata(sub["metadata"], p)
        if sub != before:
            self._event("customer.subscription.updated", sub, call,
                        changed(before, sub))
        return 200, sub

    def complete_checkout(self, session_id):
        """The customer pays an open Checkout session: a subscription
        (trialing when subscription_data[trial_period_days] was given), its
        first invoice and, when something was due, a charge. Events, in
        order: customer.created (only if the session named no customer),
        checkout.session.completed, customer.subscription.created,
        invoice.finalized, invoice.paid. Returns the objects and the
        delivery results, once every webhook was POSTed."""
        with self.lock:
            session = self._get("checkout.session", session_id, "session_id")
            if session["status"] != "open":
                raise invalid("session_id", f"Checkout session {session_id} is "
                              f"{session['status']}, not open.")
            events, now = [], int(time.time())
            customer = self.objects.get(session["customer"])
            if not customer:
                customer = self._new_customer({"email": session["customer_email"]})
                events.append(self._event("customer.created", customer))
            extra = self._private[session_id]
            trial_days = extra["subscription_data"].get("trial_period_days")
            sub_id, invoice_id = new_id("sub_"), new_id("in_")
            items = [{"id": new_id("si_", 14), "object": "subscription_item",
                      "created": now, "metadata": {}, "subscription": sub_id,
                      "price": copy.deepcopy(self.objects[li["price"]]),
                      "quantity": li["quantity"]} for li in extra["line_items"]]
            recurring = items[0]["price"]["recurring"]
            end = (now + 86400 * trial_days if trial_days else
                   add_interval(now, recurring["interval"], recurring["interval_count"]))
            sub = self._new(
                "sub_", "subscription", id_=sub_id, status="trialing" if trial_days else "active",
                customer=customer["id"], currency=session["currency"],
                current_period_start=now, current_period_end=end,
                cancel_at_period_end=False, cancel_at=None, canceled_at=None,
                ended_at=None, trial_start=now if trial_days else None,
                trial_end=end if trial_days else None, start_date=now,
                billing_cycle_anchor=now, collection_method="charge_automatically",
                description=extra["subscription_data"].get("description"),
                metadata=with_metadata({}, extra["subscription_data"]),
                items={"object": "list", "data": items, "has_more": False,
                       "total_count": len(items),
                       "url": f"/v1/subscription_items?subscription={sub_id}"})
            amount = 0 if trial_days else session["amount_total"]
            token = new_id("", 40)
            lines = [{"id": new_id("il_"), "object": "line_item", "type": "subscription",
                      "amount": 0 if trial_days else
                      item["price"]["unit_amount"] * item["quantity"],
                      "currency": session["currency"], "metadata": {},
                      "description": "%d × %s" % (item["quantity"], self.objects[
                          item["price"]["product"]]["name"]),
                      "period": {"start": now, "end": end}, "price": item["price"],
                      "proration": False, "quantity": item["quantity"],
                      "subscription": sub_id, "subscription_item": item["id"]}
                     for item in items]
            # The invoice's own period_start/end is a point in time for a
            # subscription's first invoice (Stripe's choice); the billed
            # service period is on its line.
            invoice = self._new(
                "in_", "invoice", id_=invoice_id, status="open", paid=False, customer=customer["id"],
                subscription=sub_id, number="%s-%04d" % (
                    customer["invoice_prefix"], customer["next_invoice_sequence"]),
                currency=session["currency"], amount_due=amount, amount_paid=0,
                amount_remaining=amount, subtotal=amount, total=amount,
                attempt_count=0, attempted=False, charge=None,
                billing_reason="subscription_create",
                collection_method="charge_automatically",
                customer_email=customer["email"], customer_name=customer["name"],
                hosted_invoice_url=f"https://invoice.stripe.test/i/acct_fake/{token}",
                invoice_pdf=f"https://pay.stripe.test/invoice/acct_fake/{token}/pdf",
                period_start=now, period_end=now, metadata={},
                status_transitions={"finalized_at": now, "paid_at": None,
                                    "marked_uncollectible_at": None,
                                    "voided_at": None},
                lines={"object": "list", "data": lines, "has_more": False,
                       "total_count": len(lines),
                       "url": f"/v1/invoices/{invoice_id}/lines"})
            customer["next_invoice_sequence"] += 1
            sub["latest_invoice"] = invoice["id"]
            session.update(status="complete", customer=customer["id"],
                           subscription=sub_id, invoice=invoice["id"],
                           payment_status="paid" if amount else "no_payment_required")
            events.append(self._event("checkout.session.completed", session))
            events.append(self._event("customer.subscription.created", sub))
            events.append(self._event("invoice.finalized", invoice))
            if amount:
                charge = self._new(
                    "ch_", "charge", amount=amount, amount_captured=amount,
                    amount_refunded=0, captured=True, paid=True, refunded=False,
                    status="succeeded", currency=session["currency"],
                    customer=customer["id"], invoice=invoice["id"], metadata={},
                    receipt_url=f"https://pay.stripe.test/receipts/{token}")
                invoice.update(charge=charge["id"], attempted=True, attempt_count=1)
            invoice.update(status="paid", paid=True, amount_paid=amount,
                           amount_remaining=0)
            invoice["status_transitions"]["paid_at"] = now
            events.append(self._event("invoice.paid", invoice))
            self._save_state()
            result = copy.deepcopy({"session": session, "subscription": sub,
                                    "invoice": invoice})
        result["events"] = self._deliver_now(events)
        return result

    # --- webhooks ------------------------------------------------------------------

    def emit(self, type_, obj, previous_attributes=None,
             signature_timestamp=None, signing_secret=None):
        """Sends an event about obj as given, changing no state (out-of-order
        and replay tests); signature_timestamp / signing_secret forge stale
        or wrong signatures. Returns the delivery results."""
        with self.lock:
            event = self._event(type_, obj, previous=previous_attributes)
            self._save_state()
        return self._deliver_now([event], signature_timestamp, signing_secret)

    def redeliver(self, event_id, signature_timestamp=None, signing_secret=None):
        """Sends an existing event again: same id, same body (a duplicate)."""
        with self.lock:
            event = self._get("event", event_id, "event_id")
        return self._deliver_now([event], signature_timestamp, signing_secret)

    def fail(self, path_prefix, status, times=1, method=None, retry_after=1):
        """The next `times` API requests under path_prefix (and of method,
        if given) fail with status; status 0 drops the connection."""
        with self.lock:
            self._failures.append({"path_prefix": path_prefix, "status": int(status),
                                   "times": int(times), "method": method,
                                   "retry_after": int(retry_after)})

    def flush(self, timeout=30.0):
        """Waits until every event so far was POSTed; False on timeout."""
        with self._idle:
            return self._idle.wait_for(lambda: self._pending == 0, timeout)

    def _deliver_now(self, events, timestamp=None, secret=None):
        if not self.webhook_url:
            return [{"id": e["id"], "type": e["type"], "status": None,
                     "error": "no webhook_url configured"} for e in events]
        with self._idle:
            self._pending += len(events)
        jobs = self._queue_events(events, timestamp, secret)
        for job in jobs:
            job.done.wait(DELIVERY_TIMEOUT + 5)
        return [job.result for job in jobs]

    def _queue_events(self, events, timestamp=None, secret=None, hold=False):
        # One worker, first in first out: events reach the receiver one at a
        # time in the order they were made, so tests are deterministic.
        jobs = [_Delivery(e, timestamp, secret, held=hold) for e in events]
        for job in jobs:
            self._queue.put(job)
        return jobs

    def _deliver_loop(self):
        while (job := self._queue.get()) is not None:
            try:
                job.ready.wait(DELIVERY_TIMEOUT + 5)
                job.result = self._post_event(job)
            finally:
                job.done.set()
                with self._idle:
                    self._pending -= 1
                    self._idle.notify_all()

    def _post_event(self, job):
        body = json_bytes(job.event)
        signature = sign_payload(job.secret or self.webhook_secret, body,
                                 job.timestamp)
        request = urllib.request.Request(self.webhook_url, data=body, headers={
            "Content-Type": "application/json; charset=utf-8",
            "User-Agent": "Stripe/1.0 (+https://stripe.com/docs/webhooks)",
            "Stripe-Signature": signature})
        result = {"id": job.event["id"], "type": job.event["type"],
                  "status": None, "error": None}
        try:
            with self._opener.open(request, timeout=DELIVERY_TIMEOUT) as resp:
                result["status"] = resp.status
                resp.read()
        except urllib.error.HTTPError as e:
            result["status"], result["error"] = e.code, e.read(2000).decode(
                "utf-8", "replace")
            e.close()
        except (urllib.error.URLError, OSError) as e:
            result["error"] = str(e)
        with self.lock:
            self.deliveries.append(result)
        return result

    # --- control endpoints and state file ------------------------------------------

    def _control(self, method, path, text):
        """/__fake/...: test controls, no API key; errors Stripe-shaped."""
        with self.lock:
            if method == "GET" and path == "/__fake/requests":
                return [{"method": m, "path": p, "form": f, "headers": h}
                        for m, p, f, h in self.requests]
            if method == "GET" and path == "/__fake/deliveries":
                return list(self.deliveries)
            if method == "GET" and path.startswith("/__fake/objects/"):
                oid = path[len("/__fake/objects/"):]
                if oid not in self.objects:
                    raise no_such("object", oid)
                return self.objects[oid]
        if method != "POST":
            raise StripeError(404, f"Unrecognized request URL ({method}: {path}).")
        args = json.loads(text or "{}")
        if not isinstance(args, dict):
            raise ValueError("the body must be a JSON object")

        def arg(name, default=KeyError):
            if name not in args and default is KeyError:
                raise missing(name)
            return args.get(name, default)
        forge = {"signature_timestamp": arg("signature_timestamp", None),
                 "signing_secret": arg("signing_secret", None)}
        if path == "/__fake/fail":
            self.fail(arg("path_prefix"), arg("status"), arg("times", 1),
                      arg("method", None), arg("retry_after", 1))
            return {"ok": True}
        if path == "/__fake/complete_checkout":
            return self.complete_checkout(arg("session_id"))
        if path == "/__fake/emit":
            if not isinstance(arg("object"), dict):
                raise invalid("object", "object must be a JSON object.")
            return {"events": self.emit(arg("type"), arg("object"),
                                        arg("previous_attributes", None), **forge)}
        if path == "/__fake/redeliver":
            return {"events": self.redeliver(arg("event_id"), **forge)}
        if path == "/__fake/flush":
            return {"idle": self.flush(float(arg("timeout", 30.0)))}
        raise StripeError(404, f"Unrecognized request URL ({method}: {path}).")

    def _save_state(self):
        if not self.state_file:
            return
        state = {"objects": self.objects, "private": self._private,
                 "idempotency": self._idempotency,
                 "events": [e["id"] for e in self.events]}
        tmp = self.state_file + ".tmp"
        with open(tmp, "w") as f:
            json.dump(state, f)
        os.replace(tmp, self.state_file)   # readers never see half a file

    def _load_state(self):
        if not self.state_file or not os.path.exists(self.state_file):
            return
        with open(self.state_file) as f:
            state = json.load(f)
        self.objects, self._private = state["objects"], state["private"]
        self._idempotency = state["idempotency"]
        self.events = [self.objects[i] for i in state["events"]]


class _Handler(BaseHTTPRequestHandler):
    """HTTP/1.1 with keep-alive: libcurl reuses its connection."""
    protocol_version = "HTTP/1.1"
    server_version = "stripe-fake"
    fake = None

    def log_message(self, fmt, *args):
        if self.fake.verbose:
            sys.stderr.write("stripe-fake: " + fmt % args + "\n")

    def _serve(self):
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = -1
        if not 0 <= length <= MAX_BODY:
            self.send_error(413 if length > 0 else 400)
            return
        body = self.rfile.read(length) if length else b""
        answer = self.fake.handle(self.command, self.path, self.headers, body)
        if answer is None:
            self.close_connection = True
            return
        status, headers, payload, after = answer
        try:
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)
            self.wfile.flush()
        finally:
            if after:
                after()

    do_GET = do_POST = do_DELETE = do_PUT = do_PATCH = _serve


def main(argv=None):
    ap = argparse.ArgumentParser(description="A fake Stripe API for tests.")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--secret-key", required=True)
    ap.add_argument("--webhook-url")
    ap.add_argument("--webhook-secret")
    ap.add_argument("--state-file")
    ap.add_argument("--verbose", action="store_true")
    args = ap.parse_args(argv)
    if args.webhook_url and not args.webhook_secret:
        ap.error("--webhook-url needs --webhook-secret")
    fake = StripeFake(args.secret_key, args.webhook_url, args.webhook_secret,
                      args.state_file, args.host, args.port, args.verbose)
    print(f"listening on {fake.start()}", flush=True)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    while not stop.wait(0.5):
        pass
    fake.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
