"""Helpers for the billing end-to-end tests: Stripe events built and signed
here (so their ids, `created` times and bodies are under the test's
control), reads of the stack's Postgres and Redis, the mail the jobs worker
wrote, and accounts made through the public API or stoactl.

The fake Stripe (tests/fakes/stripe_fake.py) runs in this process; its
module is imported from there.

Python 3.11 standard library only (plus the psql and redis-cli programs).
"""

import email
import email.policy
import glob
import hashlib
import hmac
import json
import os
import secrets
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid

import harness
from harness import BIN_DIR, REPO, Client, wait_until

# The fake lives next to the other fakes; re-exported for the tests.
sys.path.insert(0, os.path.join(REPO, "tests", "fakes"))
from stripe_fake import StripeFake, sign_payload  # noqa: E402,F401  (path set above)

GOOD_PASSWORD = "Bq8#wLm3!yTz-4nV"
WEBHOOK_PATH = "/v1/billing/webhooks/stripe"


def rand(n=10):
    return secrets.token_hex(n // 2 + 1)[:n]


def unique_email(tag):
    return f"{tag}.{uuid.uuid4().hex[:12]}@example.com"


def stripe_id(prefix):
    """An id with a Stripe type prefix (then random hex), unique per call."""
    return prefix + secrets.token_hex(12)


# --- events --------------------------------------------------------------------

def event_body(event_type, obj, created=None, event_id=None, previous=None):
    """(event id, raw bytes) of a Stripe event envelope, pretty-printed as
    Stripe sends it (signatures must cover these exact bytes)."""
    event_id = event_id or stripe_id("evt_")
    doc = {"id": event_id, "object": "event", "api_version": "2024-06-20",
           "created": int(time.time()) if created is None else int(created),
           "type": event_type, "livemode": False, "pending_webhooks": 1,
           "request": {"id": None, "idempotency_key": None},
           "data": {"object": obj}}
    if previous is not None:
        doc["data"]["previous_attributes"] = previous
    return event_id, json.dumps(doc, indent=2).encode()


def subscription_object(sub_id, customer, status, price_id, user_id=None,
                        period_start=None, period_end=None, cancel_at_period_end=False):
    start = int(time.time()) if period_start is None else period_start
    end = start + 30 * 86400 if period_end is None else period_end
    return {
        "id": sub_id, "object": "subscription", "customer": customer, "status": status,
        "current_period_start": start, "current_period_end": end,
        "cancel_at_period_end": cancel_at_period_end, "canceled_at": None,
        "trial_end": None, "created": start, "livemode": False,
        "metadata": {"user_id": user_id} if user_id else {},
        "items": {"object": "list", "data": [
            {"id": stripe_id("si_"), "object": "subscription_item",
             "price": {"id": price_id, "object": "price"}, "quantity": 1}]},
    }


def invoice_object(invoice_id, customer, status, amount, currency="eur",
                   subscription=None, created=None, number=None):
    paid = amount if status == "paid" else 0
    token = rand(24)
    return {
        "id": invoice_id, "object": "invoice", "customer": customer,
        "subscription": subscription, "status": status,
        "number": number or f"T{rand(6).upper()}-0001",
        "amount_due": amount, "amount_paid": paid, "amount_remaining": amount - paid,
        "currency": currency, "created": int(time.time()) if created is None else created,
        "hosted_invoice_url": f"https://invoice.stripe.test/i/{token}",
        "invoice_pdf": f"https://pay.stripe.test/invoice/{token}/pdf",
        "livemode": False,
    }


def product_object(product_id, name, features=None, plan_key=None, active=True):
    metadata = {}
    if features is not None:
        metadata["features"] = json.dumps(features)
    if plan_key is not None:
        metadata["plan_key"] = plan_key
    return {"id": product_id, "object": "product", "name": name, "active": active,
            "description": f"{name} (made in the dashboard)", "metadata": metadata,
            "created": int(time.time()), "livemode": False}


def price_object(price_id, product_id, amount, currency="eur", interval="month",
                 active=True):
    return {"id": price_id, "object": "price", "product": product_id, "active": active,
            "currency": currency, "unit_amount": amount, "type": "recurring",
            "recurring": {"interval": interval, "interval_count": 1},
            "created": int(time.time()), "livemode": False, "metadata": {}}


class WebhookSender:
    """Posts signed events to one stack's webhook route, each over a
    connection of its own or the caller's client."""

    def __init__(self, stack, secret):
        self.stack = stack
        self.secret = secret

    def client(self, timeout=15.0):
        return Client("127.0.0.1", self.stack.https_port, self.stack.path("tls", "cert.pem"),
                      timeout=timeout)

    def post(self, body, signature, client=None, content_type="application/json"):
        """One POST with the body as given; signature None: no header."""
        headers = {"Stripe-Signature": signature, "Content-Type": content_type}
        c = client or self.stack.client
        return c.request("POST", WEBHOOK_PATH, body=body, headers=headers, raw=True)

    def send(self, event_type, obj, created=None, event_id=None, secret=None,
             previous=None):
        """Builds, signs (now, with secret or the first configured one) and
        posts one event; returns (response, event id)."""
        event_id, body = event_body(event_type, obj, created, event_id, previous)
        return self.post(body, sign_payload(secret or self.secret, body)), event_id


# --- Postgres and Redis ------------------------------------------------------

class Db(harness.Db):
    """The stack's Postgres, with the billing outbox at hand."""

    def outbox_events(self, event_type, stripe_object_id):
        """Domain events (outbox kind 'event') of one type about one Stripe
        object, oldest first."""
        return self.rows(
            "SELECT id, payload FROM jobs.outbox WHERE kind = 'event'"
            " AND payload->>'type' = :'type'"
            " AND payload->'data'->>'stripe_id' = :'sid' ORDER BY id",
            type=event_type, sid=stripe_object_id)


def redis_get(stack, key):
    """The value of key (bytes) or None, through redis-cli on the stack's
    unix socket."""
    proc = subprocess.run(["redis-cli", "-s", stack.path("redis", "redis.sock"), "--no-raw",
                           "EXISTS", key], capture_output=True, text=True, timeout=10)
    if proc.returncode != 0:
        raise AssertionError(f"redis-cli failed: {proc.stderr}")
    if proc.stdout.strip() != "(integer) 1":
        return None
    proc = subprocess.run(["redis-cli", "-s", stack.path("redis", "redis.sock"), "--raw",
                           "GET", key], capture_output=True, timeout=10)
    return proc.stdout[:-1] if proc.stdout.endswith(b"\n") else proc.stdout


def redis_set(stack, key, value):
    subprocess.run(["redis-cli", "-s", stack.path("redis", "redis.sock"), "-x", "SET", key],
                   input=value, capture_output=True, timeout=10, check=True)


def redis_del(stack, key):
    subprocess.run(["redis-cli", "-s", stack.path("redis", "redis.sock"), "DEL", key],
                   capture_output=True, timeout=10, check=True)


# --- accounts ------------------------------------------------------------------

def stoactl_env():
    """The environment without STOA_* overrides: stoactl then reads the
    stack's config file alone."""
    return {k: v for k, v in os.environ.items() if not k.startswith("STOA_")}


def create_user(stack, email, role, password=GOOD_PASSWORD):
    """`stoactl user create`; returns the completed process."""
    with tempfile.NamedTemporaryFile("w", dir=stack.run, delete=False) as f:
        f.write(password + "\n")
        path = f.name
    try:
        return subprocess.run([os.path.join(BIN_DIR, "stoactl"), "--config", stack.conf_path(),
                               "user", "create", "--email", email, "--password-file", path,
                               "--role", role],
                              capture_output=True, text=True, timeout=60, env=stoactl_env(),
                              stdin=subprocess.DEVNULL)
    finally:
        os.unlink(path)


def login(client, email, password=GOOD_PASSWORD):
    """The access token, or None with the answer when login is refused."""
    resp = client.request("POST", "/v1/auth/login", body={"email": email, "password": password})
    token = (resp.json or {}).get("access_token") if resp.status == 200 else None
    return token, resp


# --- the fake's API as a dashboard user would drive it ----------------------------

def stripe_api(fake, method, path, form, secret_key, idempotency_key=None):
    """One form-encoded call to the fake's API; returns (status, JSON)."""
    data = urllib.parse.urlencode(form).encode() if method == "POST" else None
    req = urllib.request.Request(fake.base_url + path, data=data, method=method, headers={
        "Authorization": f"Bearer {secret_key}",
        "Content-Type": "application/x-www-form-urlencoded"})
    if idempotency_key:
        req.add_header("Idempotency-Key", idempotency_key)
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(req, timeout=15) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"null")


def fake_objects(fake, kind, **match):
    """The fake's stored objects of one type whose fields equal match
    (dotted keys reach into dicts, e.g. metadata.user_id)."""
    def get(obj, dotted):
        for part in dotted.split("."):
            obj = obj.get(part) if isinstance(obj, dict) else None
        return obj
    with fake.lock:
        objs = [dict(o) for o in fake.objects.values() if o.get("object") == kind]
    return [o for o in objs
            if all(get(o, k.replace("__", ".")) == v for k, v in match.items())]


def fake_requests(fake, method, path):
    """(form, headers) of every API request the fake received at method+path."""
    with fake.lock:
        return [(f, h) for m, p, f, h in fake.requests if m == method and p == path]


# --- mail ----------------------------------------------------------------------

def mails_to(stack, address, part="plain"):
    """Messages the jobs worker wrote to the stack's mail dir for address:
    [(subject, body)], the body the message's `part` (plain or html)."""
    out = []
    for path in sorted(glob.glob(os.path.join(stack.path("mail"), "*.eml"))):
        with open(path, "rb") as f:
            msg = email.message_from_binary_file(f, policy=email.policy.default)
        if msg["To"] != address:
            continue
        body = msg.get_body(preferencelist=(part,))
        out.append((str(msg["Subject"]), body.get_content() if body else ""))
    return out


def wait_for_mail(stack, address, subject, timeout=20.0):
    found, _ = wait_until(lambda: [m for m in mails_to(stack, address) if m[0] == subject],
                          timeout, interval=0.2)
    return found


def hmac_hex(secret, data):
    return hmac.new(secret.encode(), data, hashlib.sha256).hexdigest()
