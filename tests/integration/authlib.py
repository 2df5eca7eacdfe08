"""Helpers for the auth end-to-end tests: HTTPS clients that each speak from
their own loopback address (the login throttle counts per account and IP),
reads of the stack's Postgres, the mails the jobs worker writes (the only
place mailed tokens exist), and JWT inspection, including an ES256 signature
check against the published JWKS with the openssl command line tool.

Python 3.11 standard library only (plus the openssl and psql programs).
"""

import base64
import email
import email.policy
import hashlib
import http.client
import itertools
import json
import os
import re
import shutil
import time
import subprocess
import tempfile
import urllib.parse
import uuid

from harness import Client, StackTestCase, wait_until

UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
RFC3339_UTC_RE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z$")
BASE64URL_RE = re.compile(r"^[A-Za-z0-9_-]+$")

PSQL_CANDIDATES = ("/usr/lib/postgresql/15/bin/psql", "/usr/bin/psql")

# 127.0.0.1 is the harness' own client; the tests take 127.0.0.2 and on.
_next_host = itertools.count()


def next_loopback_address():
    """A loopback address no client of this process has used yet."""
    n = next(_next_host)
    return f"127.0.{n // 250}.{n % 250 + 2}"


class SourceClient(Client):
    """The harness client, bound to a source address of its own so that the
    server sees a distinct client IP ($remote_addr)."""

    def __init__(self, stack, source_address=None, user_agent=None):
        super().__init__("127.0.0.1", stack.https_port, stack.path("tls", "cert.pem"))
        self.source_address = source_address or next_loopback_address()
        self.user_agent = user_agent

    def _connection(self):
        if self.conn is None:
            self.conn = http.client.HTTPSConnection(
                self.host, self.port, timeout=self.timeout, context=self.context,
                source_address=(self.source_address, 0))
            self.used = False
        return self.conn

    def request(self, method, path, body=None, headers=None, raw=False, token=None):
        """As Client.request; token adds `Authorization: Bearer <token>`."""
        hdrs = {}
        if self.user_agent:
            hdrs["User-Agent"] = self.user_agent
        if token is not None:
            hdrs["Authorization"] = f"Bearer {token}"
        hdrs.update(headers or {})
        return super().request(method, path, body=body, headers=hdrs, raw=raw)



class SourceClientTestCase(StackTestCase):
    """A stack test case whose clients each speak from a loopback address of
    their own, so that one test's per-address limits do not meet another's,
    and whose accounts each have an address of their own."""

    def client(self, source_address=None, user_agent=None):
        """A SourceClient closed when the test ends."""
        c = SourceClient(self.stack, source_address=source_address, user_agent=user_agent)
        self.addCleanup(c.close)
        return c

    @staticmethod
    def unique_email(tag):
        return f"{tag}.{uuid.uuid4().hex[:12]}@example.com"


# --- Postgres ----------------------------------------------------------------

def _psql_binary():
    for path in PSQL_CANDIDATES:
        if os.access(path, os.X_OK):
            return path
    found = shutil.which("psql")
    if not found:
        raise RuntimeError("psql not found")
    return found


def query_json(stack, sql, **params):
    """Runs one statement returning a single JSON value (as user stoa over the
    stack's unix socket; the cluster trusts local connections) and returns it
    parsed. params become psql variables, used in sql as :'name' (quoted as a
    literal by psql itself, so values need no escaping here)."""
    argv = [_psql_binary(), "-X", "-q", "-At", "-v", "ON_ERROR_STOP=1",
            "-h", stack.path("pg", "sock"), "-p", "5432", "-U", "stoa", "-d", "stoa"]
    for name, value in params.items():
        argv += ["-v", f"{name}={value}"]
    # Variables are interpolated in script input, not in -c commands.
    proc = subprocess.run(argv, input=sql + "\n", capture_output=True, text=True,
                          timeout=30, cwd=stack.run)
    if proc.returncode != 0:
        raise AssertionError(f"psql failed ({proc.returncode}): {proc.stderr}\n{sql}")
    text = proc.stdout.strip()
    return json.loads(text) if text else None


def outbox_mails(stack, to, template=None):
    """Payloads of the email.send outbox rows addressed to `to` (oldest
    first), optionally of one template."""
    return query_json(stack, """
        SELECT coalesce(json_agg(payload ORDER BY id), '[]'::json)
        FROM jobs.outbox
        WHERE kind = 'email.send' AND payload->>'to' = :'to'
          AND (:'template' = '' OR payload->>'template' = :'template')""",
                      to=to, template=template or "")


def count_rows(stack, sql, **params):
    return query_json(stack, f"SELECT to_json(count(*)) FROM ({sql}) x", **params)


def token_of_link(link):
    """The token= query parameter of a mailed link."""
    query = urllib.parse.urlsplit(link).query
    values = urllib.parse.parse_qs(query).get("token")
    if not values:
        raise AssertionError(f"no token in link {link!r}")
    return values[0]


def sha256_hex(text):
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


# --- JWT ---------------------------------------------------------------------

def b64url_decode(text):
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def jwt_parts(token):
    """(header dict, claims dict, signature bytes) of a compact JWS."""
    parts = token.split(".")
    if len(parts) != 3:
        raise AssertionError(f"not a compact JWS (want 3 parts): {token!r}")
    header = json.loads(b64url_decode(parts[0]))
    claims = json.loads(b64url_decode(parts[1]))
    return header, claims, b64url_decode(parts[2])


def jwt_claims(token):
    return jwt_parts(token)[1]


def _der_len(n):
    if n < 0x80:
        return bytes([n])
    body = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(body)]) + body


def _der_integer(raw):
    raw = raw.lstrip(b"\0") or b"\0"
    if raw[0] & 0x80:
        raw = b"\0" + raw
    return b"\x02" + _der_len(len(raw)) + raw


# SubjectPublicKeyInfo header of an uncompressed P-256 point
# (id-ecPublicKey, prime256v1, BIT STRING of 66 bytes).
_P256_SPKI_PREFIX = bytes.fromhex(
    "3059301306072a8648ce3d020106082a8648ce3d030107034200")


def es256_signature_valid(jwk, token):
    """True when token's ES256 signature verifies under the EC P-256 jwk
    (checked by `openssl dgst`, an implementation independent of ours)."""
    x, y = b64url_decode(jwk["x"]), b64url_decode(jwk["y"])
    if len(x) != 32 or len(y) != 32:
        raise AssertionError(f"P-256 coordinates must be 32 bytes: {jwk!r}")
    spki = _P256_SPKI_PREFIX + b"\x04" + x + y
    pem = ("-----BEGIN PUBLIC KEY-----\n" + base64.encodebytes(spki).decode("ascii")
           + "-----END PUBLIC KEY-----\n")
    signing_input, _, signature = token.rpartition(".")
    raw = b64url_decode(signature)
    if len(raw) != 64:
        return False  # JWS ES256 signatures are r||s, 32 bytes each
    seq = _der_integer(raw[:32]) + _der_integer(raw[32:])
    der_sig = b"\x30" + _der_len(len(seq)) + seq
    with tempfile.TemporaryDirectory(prefix="stoa-jws-") as tmp:
        paths = {name: os.path.join(tmp, name) for name in ("key.pem", "sig.der", "data")}
        with open(paths["key.pem"], "w") as f:
            f.write(pem)
        with open(paths["sig.der"], "wb") as f:
            f.write(der_sig)
        with open(paths["data"], "wb") as f:
            f.write(signing_input.encode("ascii"))
        proc = subprocess.run(["openssl", "dgst", "-sha256", "-verify", paths["key.pem"],
                               "-signature", paths["sig.der"], paths["data"]],
                              capture_output=True, text=True, timeout=30)
    return proc.returncode == 0 and "Verified OK" in proc.stdout


# --- mail as the jobs worker writes it (smtp_url = file://run/mail) ----------

def outbox_settled(stack):
    """True when no due job is waiting or running: every mail the requests
    so far caused has been written (or has failed)."""
    return count_rows(stack, """
        SELECT 1 FROM jobs.outbox
        WHERE done_at IS NULL AND dead_at IS NULL AND run_at <= now()""") == 0


def wait_outbox_settled(stack, timeout=20.0):
    settled, _ = wait_until(lambda: outbox_settled(stack), timeout, interval=0.1)
    if not settled:
        raise AssertionError(f"the outbox did not drain within {timeout}s")


def _eml_order(name):
    # stoa-<job id>-<created>.eml: oldest job first.
    try:
        return int(name.split("-")[1])
    except (IndexError, ValueError):
        return 0


def mailed_links(stack, to, path):
    """Links to `path` (e.g. "/reset-password") in the mails written for
    address `to`, oldest first."""
    mail_dir = stack.path("mail")
    links = []
    for name in sorted((n for n in os.listdir(mail_dir) if n.endswith(".eml")), key=_eml_order):
        with open(os.path.join(mail_dir, name), "rb") as f:
            msg = email.message_from_binary_file(f, policy=email.policy.default)
        if [a.addr_spec for a in msg["To"].addresses] != [to]:
            continue
        text = msg.get_body(preferencelist=("plain",)).get_content()
        links += re.findall(re.escape(path) + r"\?token=[A-Za-z0-9_-]+", text)
    return links


MAIL_LINK_PATHS = {"verify_email": "/verify-email", "reset_password": "/reset-password"}


def mailed_tokens(stack, to, template):
    """Tokens of the links of one template mailed to `to`, oldest first,
    once the outbox has drained."""
    wait_outbox_settled(stack)
    return [token_of_link(link) for link in mailed_links(stack, to, MAIL_LINK_PATHS[template])]


# A revoked session or suspended user is refused on every pool within 1 s
# (SPEC §4); the tests allow half a second more for the machine.
REVOCATION_DEADLINE_S = 1.5


def assert_refused_within(case, reads, deadline=REVOCATION_DEADLINE_S):
    """Calls reads() (a list of answers, e.g. one read per pool) until every
    answer is 401, failing when that takes longer than deadline; then
    checks each is the API's 401 unauthenticated."""
    t0 = time.monotonic()
    while True:
        answers = reads()
        if all(r.status == 401 for r in answers):
            break
        case.assertLess(time.monotonic() - t0, deadline, [repr(r) for r in answers])
        time.sleep(0.05)
    for resp in answers:
        case.assert_error(resp, 401, "unauthenticated")
