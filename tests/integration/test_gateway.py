"""End-to-end checks of the nginx gateway module (SPEC §5): bearer tokens
verified at the edge, roles, the identity handed to the pools, per-user
limits, key rotation with and without a reload, and `nginx -t` refusing bad
gateway configuration.

Tokens with chosen claims are signed here with the stack's own private key
through the openssl command line tool (Python has no ECDSA); the happy path
also uses a real token from POST /v1/auth/login.

Besides the real routes, the tests drop a few locations into the stack's
conf.d/ and http.d/ that serve a static file behind the gateway: whatever
they answer comes from nginx and the module alone, never from a pool.

Run from the repository root:
    python3 -m unittest discover -s tests/integration -p 'test_gateway.py' -v
"""

import base64
import hashlib
import hmac
import http.client
import json
import os
import shutil
import subprocess
import tempfile
import time
import unittest
import uuid

from harness import BIN_DIR, REPO, Response, StackTestCase, OPEN_LIMITS

GOOD_PASSWORD = "Tq7#vLp2!xRz-9mW"
GATEWAY_MODULE = os.path.abspath(os.environ.get("STOA_GATEWAY_MODULE") or os.path.join(
    REPO, "build", "gateway", "ngx_http_api_gateway_module.so"))

INVALID = 'Bearer error="invalid_token"'
MISSING = "Bearer"
# What the module itself says; a pool refusing the same request words it
# differently, so these tell the gateway's answer from a pool's.
GATEWAY_MESSAGES = {
    "missing": "an access token is required",
    "invalid": "the access token is invalid",
    "expired": "the access token has expired",
    "early": "the access token is not valid yet",
    "multiple": "the request carries more than one access token",
    "scheme": "the Authorization header must hold a Bearer token",
    "role": "this resource is not available to your role",
}


# --- tokens ------------------------------------------------------------------

def b64url(data):
    if isinstance(data, str):
        data = data.encode()
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64url_json(doc):
    return b64url(json.dumps(doc, separators=(",", ":")).encode())


# The order of the P-256 group: s and n - s both verify under plain ECDSA.
P256_N = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551


def der_to_raw(der, low_s=True):
    """An ECDSA-Sig-Value (DER SEQUENCE of two INTEGERs) as JOSE r||s, with
    s in the low half (the only form the gateway takes) unless low_s is
    false. openssl returns either half."""
    if der[0] != 0x30:
        raise ValueError("not a DER sequence")
    pos = 2 if der[1] < 0x80 else 2 + (der[1] & 0x7F)
    values = []
    for _ in range(2):
        if der[pos] != 0x02:
            raise ValueError("not a DER integer")
        n = der[pos + 1]
        values.append(int.from_bytes(der[pos + 2:pos + 2 + n], "big"))
        pos += 2 + n
    r, s = values
    if low_s and s > P256_N // 2:
        s = P256_N - s
    return r.to_bytes(32, "big") + s.to_bytes(32, "big")


def high_s(raw):
    """The other valid signature of the same input: r || n - s."""
    return raw[:32] + (P256_N - int.from_bytes(raw[32:], "big")).to_bytes(32, "big")


def jwt_claims(token):
    payload = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


class Signer:
    """Signs tokens with the private keys of a stack's keys_dir."""

    def __init__(self, keys_dir):
        self.keys_dir = keys_dir

    def current_kid(self):
        with open(os.path.join(self.keys_dir, "current")) as f:
            return f.read().strip()

    def der_signature(self, data, kid=None):
        key = os.path.join(self.keys_dir, f"{kid or self.current_kid()}.pem")
        return subprocess.run(["openssl", "dgst", "-sha256", "-sign", key], input=data,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              check=True).stdout

    def public_pem(self, kid=None):
        key = os.path.join(self.keys_dir, f"{kid or self.current_kid()}.pem")
        return subprocess.run(["openssl", "pkey", "-in", key, "-pubout"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              check=True).stdout

    def token(self, claims, header=None, kid=None, signature=None):
        """A compact JWS: header and claims as given (dicts are encoded),
        signed ES256 unless signature (bytes, or a callable of the signing
        input) says otherwise."""
        kid = kid or self.current_kid()
        if header is None:
            header = {"alg": "ES256", "typ": "JWT", "kid": kid}
        h = header if isinstance(header, str) else b64url_json(header)
        c = claims if isinstance(claims, str) else b64url_json(claims)
        signing_input = f"{h}.{c}".encode()
        if signature is None:
            sig = der_to_raw(self.der_signature(signing_input, kid))
        elif callable(signature):
            sig = signature(signing_input)
        else:
            sig = signature
        return f"{h}.{c}.{b64url(sig)}"


# --- the tests -----------------------------------------------------------------

ECHO_BODY = b'{"echo":true}\n'

# Locations behind the gateway that serve a static file: no pool involved.
# An add_header of a location drops the server's, so they include the
# security headers again.
CONF_D = """
location = /_gateway_test/echo {{
    api_gateway on;
    alias {echo};
    include {run}/nginx/security_headers.conf;
    add_header X-Gateway-Sub $gateway_sub always;
    add_header X-Gateway-Sid $gateway_sid always;
    add_header X-Gateway-Role $gateway_role always;
    add_header X-Gateway-Jti $gateway_jti always;
    add_header X-Gateway-Exp $gateway_exp always;
}}
location = /_gateway_test/optional {{
    api_gateway optional;
    alias {echo};
    add_header X-Gateway-Sub $gateway_sub always;
}}
location = /_gateway_test/public {{
    alias {echo};
    add_header X-Gateway-Sub $gateway_sub always;
}}
location = /_gateway_test/admin {{
    api_gateway on;
    api_gateway_roles admin;
    alias {echo};
}}
location /_gateway_test/finance/ {{
    api_gateway on;
    api_gateway_roles admin finance;
    alias {echo_dir}/;

    location = /_gateway_test/finance/anyone {{
        api_gateway_roles any;
        alias {echo};
    }}
}}
location = /_gateway_test/other_issuer {{
    api_gateway on;
    api_gateway_issuer "https://elsewhere.example";
    alias {echo};
}}
location = /_gateway_test/limited {{
    api_gateway on;
    limit_req zone=gateway_test_user burst=1 nodelay;
    alias {echo};
}}
"""

HTTP_D = """
limit_req_zone $gateway_sub zone=gateway_test_user:1m rate=1r/m;
"""


class GatewayTest(StackTestCase):
    """One stack; the strict and per-address limits are opened up because
    the suite sends far more than 2 requests a second from one address."""

    stack_env = OPEN_LIMITS

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        try:
            cls._set_up_gateway()
        except BaseException:
            cls._failed = True
            raise

    @classmethod
    def _set_up_gateway(cls):
        stack = cls.stack
        cls.signer = Signer(stack.path("keys"))
        with open(stack.conf_path()) as f:
            conf = dict((part.strip() for part in line.split("=", 1)) for line in f
                        if "=" in line and not line.lstrip().startswith("#"))
        cls.issuer = conf["jwt_issuer"]
        cls.audience = conf.get("jwt_audience", "stoa")

        echo_dir = stack.path("nginx", "gateway-test")
        os.makedirs(echo_dir, exist_ok=True)
        echo = os.path.join(echo_dir, "echo.json")
        with open(echo, "wb") as f:
            f.write(ECHO_BODY)
        with open(os.path.join(echo_dir, "report"), "wb") as f:
            f.write(ECHO_BODY)
        with open(stack.path("nginx", "conf.d", "gateway-test.conf"), "w") as f:
            f.write(CONF_D.format(echo=echo, echo_dir=echo_dir, run=stack.run))
        with open(stack.path("nginx", "http.d", "gateway-test.conf"), "w") as f:
            f.write(HTTP_D)
        cls.reload()

        # A real account, logged in the real way.
        cls.email = f"gateway.{uuid.uuid4().hex[:12]}@example.com"
        c = stack.client
        resp = c.request("POST", "/v1/auth/register",
                         body={"email": cls.email, "password": GOOD_PASSWORD, "name": "Gate Way"})
        if resp.status != 201:
            raise RuntimeError(f"register: {resp!r}")
        cls.user_id = resp.json["user"]["id"]
        resp = c.request("POST", "/v1/auth/login",
                         body={"email": cls.email, "password": GOOD_PASSWORD})
        if resp.status != 200:
            raise RuntimeError(f"login: {resp!r}")
        cls.login_token = resp.json["access_token"]
        cls.login_claims = jwt_claims(cls.login_token)

    @classmethod
    def reload(cls):
        rc, out = cls.stack._stack_sh("reload", 120)
        if rc != 0:
            raise RuntimeError(f"stack.sh reload exited {rc}:\n{out}")

    # helpers

    def claims(self, **changes):
        """Claims of a fresh token for the test account (its real session),
        with changes applied; a value of None removes the claim."""
        now = int(time.time())
        doc = {"iss": self.issuer, "aud": self.audience, "sub": self.user_id,
               "sid": self.login_claims["sid"], "role": "client",
               "iat": now, "nbf": now, "exp": now + 900, "jti": str(uuid.uuid4())}
        for key, value in changes.items():
            if value is None:
                doc.pop(key, None)
            else:
                doc[key] = value
        return doc

    def token(self, **changes):
        return self.signer.token(self.claims(**changes))

    def get(self, path, token=None, headers=None, method="GET"):
        hdrs = dict(headers or {})
        if token is not None:
            hdrs["Authorization"] = f"Bearer {token}"
        return self.request(method, path, headers=hdrs)

    def assert_refused(self, resp, kind="invalid", status=401):
        """The module's own refusal: SPEC §3 body, challenge, headers."""
        code = "forbidden" if status == 403 else "unauthenticated"
        self.assert_error(resp, status, code)
        self.assertEqual(resp.json["error"]["message"], GATEWAY_MESSAGES[kind], repr(resp))
        if status == 401:
            self.assertEqual(resp.header_all("WWW-Authenticate"),
                             [MISSING if kind == "missing" else INVALID], repr(resp))
        else:
            self.assertIsNone(resp.header("WWW-Authenticate"), repr(resp))
        self.assertEqual(resp.header("Cache-Control"), "no-store", repr(resp))

    def assert_security_headers(self, resp):
        self.assertIn("max-age=", resp.header("Strict-Transport-Security", ""), repr(resp))
        self.assertEqual(resp.header("X-Content-Type-Options"), "nosniff", repr(resp))
        self.assertEqual(resp.header("Referrer-Policy"), "no-referrer", repr(resp))
        self.assertIn("default-src 'none'", resp.header("Content-Security-Policy", ""),
                      repr(resp))

    def assert_passed(self, resp):
        """The gateway let the request through to the echo file."""
        self.assertEqual(resp.status, 200, repr(resp))
        self.assertEqual(resp.body, ECHO_BODY, repr(resp))

    def raw_request(self, method, path, header_lines):
        """One request with headers sent exactly as listed (repeats allowed)."""
        conn = http.client.HTTPSConnection("127.0.0.1", self.stack.https_port, timeout=15,
                                           context=self.stack.client.context)
        try:
            conn.putrequest(method, path)
            for name, value in header_lines:
                conn.putheader(name, value)
            conn.endheaders()
            resp = conn.getresponse()
            return Response(resp.status, resp.reason, resp.headers, resp.read(), 0.0)
        finally:
            conn.close()

    # --- 1. the real flow ------------------------------------------------------

    def test_01_login_token_reaches_the_pool(self):
        me = self.assert_ok_json(self.get("/v1/me", self.login_token))
        self.assertEqual(me["email"], self.email)
        self.assertEqual(me["id"], self.user_id)
        # The same token twice more: the repeat comes from the cache and
        # must establish the very same identity.
        for _ in range(2):
            me = self.assert_ok_json(self.get("/v1/me", self.login_token))
            self.assertEqual(me["id"], self.user_id)

    def test_02_missing_token_on_protected_routes(self):
        for path in ("/v1/me", "/v1/me/export", "/v1/auth/sessions", "/v1/auth/logout",
                     "/v1/billing/subscription", "/v1/analytics/metrics",
                     "/v1/admin/webhooks", "/v1/admin/plans", "/v1/admin/billing/invoices",
                     "/v1/updates", "/v1/updates/x/read", "/v1/auth/password/change",
                     "/v1/auth/mfa/totp/enroll", "/v1/auth/api-keys"):
            with self.subTest(path=path):
                resp = self.get(path)
                self.assert_refused(resp, "missing")
                self.assert_security_headers(resp)

    def test_03_public_routes_need_no_token(self):
        cases = [("GET", "/v1/billing/plans", 200), ("GET", "/.well-known/jwks.json", 200),
                 ("GET", "/healthz", 200)]
        for pool in ("auth", "billing", "analytics", "admin"):
            cases += [("GET", f"/v1/{pool}/healthz", 200), ("GET", f"/v1/{pool}/readyz", 200)]
        for method, path, status in cases:
            with self.subTest(path=path):
                self.assertEqual(self.request(method, path).status, status)
        # Routes whose credential is in the body: the pool answers, not the
        # gateway (an empty JSON object is a validation error, not a 401).
        for path in ("/v1/auth/login", "/v1/auth/register", "/v1/auth/refresh",
                     "/v1/auth/verify-email", "/v1/auth/password/forgot",
                     "/v1/auth/password/reset", "/v1/auth/token", "/v1/auth/mfa/verify",
                     "/v1/billing/webhooks/stripe"):
            with self.subTest(path=path):
                resp = self.request("POST", path, body={})
                self.assertNotEqual(resp.status, 401, repr(resp))
                self.assertIsNone(resp.header("WWW-Authenticate"), repr(resp))

    def test_04_error_body_reuses_the_request_id(self):
        resp = self.get("/v1/me", headers={"X-Request-Id": "gateway-test-id.1"})
        self.assert_refused(resp, "missing")
        self.assertEqual(resp.json["request_id"], "gateway-test-id.1")
        # An insane client id is replaced by nginx's own, in body and header.
        resp = self.get("/v1/me", "x.y.z", headers={"X-Request-Id": "bad id {}"})
        self.assert_refused(resp, "invalid")
        self.assertRegex(resp.json["request_id"], r"^[0-9a-f]{32}$")

    # --- 2. the token table --------------------------------------------------------

    def token_table(self):
        s = self.signer
        kid = s.current_kid()
        now = int(time.time())
        valid = self.token()
        h, c, sig = valid.split(".")
        es = {"alg": "ES256", "typ": "JWT", "kid": kid}

        def hs256_with_public_key(data):
            return hmac.new(s.public_pem(), data, hashlib.sha256).digest()

        def der(data):
            return s.der_signature(data)

        long_claims = self.claims(pad="x" * 3200)  # > STOA_JWT_MAX_LEN once encoded
        huge = "A" * 12 * 1024
        return [
            # (label, token, expected: "ok" or the refusal kind)
            ("valid", valid, "ok"),
            ("valid, expired within the leeway", self.token(exp=now - 10), "ok"),
            ("audience list holding ours", self.token(aud=["other", self.audience]), "ok"),
            ("expired", self.token(iat=now - 4000, nbf=now - 4000, exp=now - 3600), "expired"),
            ("not yet valid", self.token(nbf=now + 3600), "early"),
            ("issued in the future", self.token(iat=now + 3600), "early"),
            ("wrong issuer", self.token(iss="https://evil.example"), "invalid"),
            ("no issuer", self.token(iss=None), "invalid"),
            ("wrong audience", self.token(aud="other"), "invalid"),
            ("no audience", self.token(aud=None), "invalid"),
            ("alg none, empty signature", f"{b64url_json({'alg': 'none', 'kid': kid})}.{c}.",
             "invalid"),
            ("alg none, two segments", f"{b64url_json({'alg': 'none'})}.{c}", "invalid"),
            ("HS256 keyed with the public key",
             s.token(self.claims(), header={"alg": "HS256", "typ": "JWT", "kid": kid},
                     signature=hs256_with_public_key), "invalid"),
            ("RS256 header, ES256 signature",
             s.token(self.claims(), header={"alg": "RS256", "typ": "JWT", "kid": kid}),
             "invalid"),
            ("ES384 header", s.token(self.claims(), header=dict(es, alg="ES384")), "invalid"),
            ("unknown kid", s.token(self.claims(), header=dict(es, kid="no-such-key")),
             "invalid"),
            ("no kid", s.token(self.claims(), header={"alg": "ES256", "typ": "JWT"}),
             "invalid"),
            ("critical extension", s.token(self.claims(), header=dict(es, crit=["exp"])),
             "invalid"),
            ("DER signature", s.token(self.claims(), signature=der), "invalid"),
            ("high-S twin of the valid signature",
             f"{h}.{c}.{b64url(high_s(base64.urlsafe_b64decode(sig + '==')))}", "invalid"),
            ("63-byte signature", f"{h}.{c}.{b64url(base64.urlsafe_b64decode(sig + '==')[:63])}",
             "invalid"),
            ("claims changed after signing",
             f"{h}.{b64url_json(dict(jwt_claims(valid), role='admin'))}.{sig}", "invalid"),
            ("truncated signature", valid[:-10], "invalid"),
            ("truncated to half", valid[:len(valid) // 2], "invalid"),
            ("no signature segment", f"{h}.{c}", "invalid"),
            ("extra segment", valid + ".e30", "invalid"),
            ("five segments", f"{h}.{c}.{sig}.{sig}.{sig}", "invalid"),
            ("bad base64url in the claims", f"{h}.{c[:10]}*{c[11:]}.{sig}", "invalid"),
            ("base64 padding", f"{h}.{c}.{sig}==", "invalid"),
            ("no subject", self.token(sub=None), "invalid"),
            ("empty subject", self.token(sub=""), "invalid"),
            ("empty role", self.token(role=""), "invalid"),
            ("no role", self.token(role=None), "invalid"),
            ("no expiry", self.token(exp=None), "invalid"),
            ("expiry as a string", self.token(exp=str(now + 900)), "invalid"),
            ("signed but over 4 KiB", s.token(long_claims), "invalid"),
            ("12 KiB", huge, "invalid"),
            ("not a JWT", "not-a-token", "invalid"),
        ]

    def test_10_token_table_at_the_edge(self):
        for label, token, expected in self.token_table():
            with self.subTest(label):
                resp = self.get("/_gateway_test/echo", token)
                if expected == "ok":
                    self.assert_passed(resp)
                else:
                    self.assert_refused(resp, expected)
                    self.assert_security_headers(resp)

    def test_11_token_table_on_a_pool_route(self):
        # The same verdicts on GET /v1/me; a refused token never reaches
        # the pool (the answer is the module's own).
        for label, token, expected in self.token_table():
            with self.subTest(label):
                resp = self.get("/v1/me", token)
                if expected == "ok":
                    self.assertEqual(self.assert_ok_json(resp)["email"], self.email)
                else:
                    self.assert_refused(resp, expected)

    def test_12_oversized_token_is_refused_without_verification(self):
        # 12 KiB of a would-be token: refused as invalid, quickly, and the
        # worker is fine afterwards.
        t0 = time.monotonic()
        for _ in range(20):
            self.assert_refused(self.get("/_gateway_test/echo", "e" * 12 * 1024))
        self.assertLess(time.monotonic() - t0, 5.0)
        self.assert_passed(self.get("/_gateway_test/echo", self.token()))

    def test_13_authorization_header_forms(self):
        valid = self.token()
        for label, value, expected in [
            ("lower-case scheme", f"bearer {valid}", "ok"),
            ("upper-case scheme", f"BEARER {valid}", "ok"),
            ("several spaces", f"Bearer   {valid}", "ok"),
            ("trailing space", f"Bearer {valid} ", "ok"),
            ("no token", "Bearer ", "scheme"),
            ("no space", f"Bearer{valid}", "scheme"),
            ("two tokens in one header", f"Bearer {valid} {valid}", "scheme"),
            ("Basic", "Basic dXNlcjpwYXNz", "scheme"),
            ("token alone", valid, "scheme"),
        ]:
            with self.subTest(label):
                resp = self.request("GET", "/_gateway_test/echo", headers={"Authorization": value})
                if expected == "ok":
                    self.assert_passed(resp)
                else:
                    self.assert_refused(resp, expected)

    # --- 3. more than one token --------------------------------------------------

    def test_20_more_than_one_token_is_refused(self):
        valid = self.token()
        # Header plus query argument, header plus cookie.
        self.assert_refused(self.get(f"/_gateway_test/echo?access_token={valid}", valid),
                            "multiple")
        self.assert_refused(self.get("/v1/me?a=1&access_token=x", valid), "multiple")
        self.assert_refused(self.get("/_gateway_test/echo", valid,
                                     headers={"Cookie": f"theme=dark; access_token={valid}"}),
                            "multiple")
        # A token only in the query string or a cookie is not a credential.
        self.assert_refused(self.get(f"/v1/me?access_token={valid}"), "missing")
        self.assert_refused(self.get("/v1/me", headers={"Cookie": f"access_token={valid}"}),
                            "missing")

    def test_21_two_authorization_headers(self):
        # nginx itself refuses a repeated Authorization header while reading
        # the request (a 400 in the API's error shape), before any module
        # runs: the token is never looked at.
        valid = self.token()
        for path in ("/_gateway_test/echo", "/v1/me"):
            with self.subTest(path=path):
                resp = self.raw_request("GET", path, [("Authorization", f"Bearer {valid}"),
                                                      ("Authorization", f"Bearer {valid}")])
                self.assert_error(resp, 400, "bad_request")
                self.assertNotEqual(resp.body, ECHO_BODY)

    # --- 4. identity, forgery, roles --------------------------------------------

    def test_30_variables_carry_the_verified_identity(self):
        claims = self.claims()
        resp = self.get("/_gateway_test/echo", self.signer.token(claims))
        self.assert_passed(resp)
        self.assertEqual(resp.header("X-Gateway-Sub"), claims["sub"])
        self.assertEqual(resp.header("X-Gateway-Sid"), claims["sid"])
        self.assertEqual(resp.header("X-Gateway-Role"), "client")
        self.assertEqual(resp.header("X-Gateway-Jti"), claims["jti"])
        self.assertEqual(resp.header("X-Gateway-Exp"), str(claims["exp"]))
        # A public location does not verify, so it has no identity.
        resp = self.get("/_gateway_test/public", self.signer.token(claims))
        self.assert_passed(resp)
        self.assertIsNone(resp.header("X-Gateway-Sub"))

    def test_31_forged_identity_headers_are_ignored(self):
        forged = {"X-Gateway-Sub": self.user_id, "Gateway-Sub": self.user_id,
                  "X-Gateway-Role": "admin", "Gateway-Role": "admin",
                  "Gateway-Sid": self.login_claims["sid"], "X-Gateway-Sid": self.login_claims["sid"],
                  "Gateway-Exp": "9999999999"}
        self.assert_refused(self.get("/v1/me", headers=forged), "missing")
        self.assert_refused(self.get(f"/v1/me?gateway_sub={self.user_id}&GATEWAY_SUB="
                                     f"{self.user_id}&gateway_role=admin", headers=forged),
                            "missing")
        # With a client's token, the forged role does not make an admin,
        # and the forged subject does not change who the pool sees.
        other = self.get("/v1/me", self.token(), headers=dict(forged, **{
            "X-Gateway-Sub": str(uuid.uuid4()), "Gateway-Sub": str(uuid.uuid4())}))
        self.assertEqual(self.assert_ok_json(other)["id"], self.user_id)
        self.assert_refused(self.get("/v1/admin/webhooks", self.token(), headers=forged),
                            "role", status=403)
        # On the optional route, forged headers without a token are passed
        # through as anonymous: whatever the pool answers, it is not a
        # signed-in user's answer.
        resp = self.request("POST", "/v1/analytics/events", body={"events": []},
                            headers=forged)
        self.assertNotIn(resp.status, (200, 202), repr(resp))

    def test_32_roles(self):
        client, finance, admin = (self.token(role=r) for r in ("client", "finance", "admin"))
        # Module-only locations: the verdict is the gateway's alone.
        self.assert_refused(self.get("/_gateway_test/admin", client), "role", status=403)
        self.assert_refused(self.get("/_gateway_test/admin", finance), "role", status=403)
        self.assert_passed(self.get("/_gateway_test/admin", admin))
        self.assert_refused(self.get("/_gateway_test/finance/report", client), "role",
                            status=403)
        self.assert_passed(self.get("/_gateway_test/finance/report", finance))
        self.assert_passed(self.get("/_gateway_test/finance/report", admin))
        # A nested location may lift the inherited roles.
        self.assert_passed(self.get("/_gateway_test/finance/anyone", client))
        # An unknown role is refused wherever roles are listed.
        self.assert_refused(self.get("/_gateway_test/admin", self.token(role="root")), "role",
                            status=403)

        # The real routes.
        for path in ("/v1/admin/webhooks", "/v1/admin/plans", "/v1/admin/plans/x/sync",
                     "/v1/admin/billing/invoices", "/v1/analytics/dashboard"):
            with self.subTest(path=path, role="client"):
                self.assert_refused(self.get(path, client), "role", status=403)
        for path in ("/v1/admin/webhooks", "/v1/admin/plans"):
            with self.subTest(path=path, role="finance"):
                self.assert_refused(self.get(path, finance), "role", status=403)
        for path in ("/v1/admin/billing/invoices", "/v1/analytics/dashboard"):
            with self.subTest(path=path, role="finance"):
                resp = self.get(path, finance)
                self.assertNotEqual(resp.status, 403, repr(resp))
                self.assertNotEqual(resp.status, 401, repr(resp))
        self.assert_ok_json(self.get("/v1/admin/webhooks", admin))

    def test_33_optional_route(self):
        self.assert_passed(self.request("GET", "/_gateway_test/optional"))
        claims = self.claims()
        resp = self.get("/_gateway_test/optional", self.signer.token(claims))
        self.assert_passed(resp)
        self.assertEqual(resp.header("X-Gateway-Sub"), claims["sub"])
        # Present but bad is refused even where a token is optional.
        self.assert_refused(self.get("/_gateway_test/optional", self.token(aud="x")))
        self.assert_refused(self.request("POST", "/v1/analytics/events", body={"events": []},
                                         headers={"Authorization": "Bearer x.y.z"}))
        resp = self.request("POST", "/v1/analytics/events", body={"events": []})
        self.assertNotEqual(resp.json and resp.json.get("error", {}).get("message"),
                            GATEWAY_MESSAGES["missing"], repr(resp))

    def test_34_cache_is_per_verification_profile(self):
        # Verified (and cached) for the stack's issuer, the same token must
        # still fail where another issuer is required.
        token = self.token()
        self.assert_passed(self.get("/_gateway_test/echo", token))
        self.assert_passed(self.get("/_gateway_test/echo", token))
        self.assert_refused(self.get("/_gateway_test/other_issuer", token))
        theirs = self.token(iss="https://elsewhere.example")
        self.assert_passed(self.get("/_gateway_test/other_issuer", theirs))
        self.assert_refused(self.get("/_gateway_test/echo", theirs))

    def test_35_refusal_discards_the_body_and_keeps_the_connection(self):
        c = self.stack.client
        body = "x" * (256 * 1024)
        resp = c.request("POST", "/v1/auth/logout", body=body, raw=True,
                         headers={"Content-Type": "application/json"})
        self.assert_refused(resp, "missing")
        resp = c.request("HEAD", "/v1/me")
        self.assertEqual(resp.status, 401)
        self.assertEqual(resp.body, b"")
        self.assert_ok_json(c.request("GET", "/v1/me",
                                      headers={"Authorization": f"Bearer {self.login_token}"}))

    def test_36_http2(self):
        curl = shutil.which("curl")
        if not curl:
            self.skipTest("curl is not installed")
        out = subprocess.run(
            [curl, "-s", "--http2", "--cacert", self.stack.path("tls", "cert.pem"),
             "-H", "Authorization: Bearer x.y.z", "-w", "\n%{http_version} %{http_code}",
             f"https://127.0.0.1:{self.stack.https_port}/v1/me"],
            stdout=subprocess.PIPE, check=True, timeout=30).stdout.decode()
        body, _, tail = out.rpartition("\n")
        self.assertEqual(tail, "2 401", out)
        self.assertEqual(json.loads(body)["error"]["code"], "unauthenticated")

    # --- 5. per-user limits -----------------------------------------------------------

    def test_40_per_user_limit_is_keyed_on_the_verified_subject(self):
        alice = self.token(sub=str(uuid.uuid4()))
        bob = self.token(sub=str(uuid.uuid4()))
        # 1r/m with a burst of 1: two requests pass, the third is limited.
        self.assert_passed(self.get("/_gateway_test/limited", alice))
        self.assert_passed(self.get("/_gateway_test/limited", alice))
        self.assert_error(self.get("/_gateway_test/limited", alice), 429, "rate_limited")
        # Same address, another user: a budget of its own.
        self.assert_passed(self.get("/_gateway_test/limited", bob))
        # Anonymous and bad tokens are not counted against anyone (empty
        # key), and the gateway still refuses them.
        for _ in range(3):
            self.assert_refused(self.get("/_gateway_test/limited"), "missing")
            self.assert_refused(self.get("/_gateway_test/limited", "a.b.c"))
        # A different token of the same subject shares the budget.
        self.assert_error(self.get("/_gateway_test/limited", self.signer.token(
            dict(jwt_claims(alice), jti=str(uuid.uuid4())))), 429, "rate_limited")

    # --- 6. keys -----------------------------------------------------------------------

    def stoactl(self, *args):
        return subprocess.run([os.path.join(BIN_DIR, "stoactl"), "--config",
                               self.stack.conf_path(), *args], env=self.stack._env,
                              stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, timeout=60, check=True)

    def jwks_kids(self):
        with open(self.stack.path("keys", "jwks.json")) as f:
            return [k["kid"] for k in json.load(f)["keys"]]

    def test_90_rotation_needs_no_reload(self):
        old_kid = self.signer.current_kid()
        old = self.token()
        self.assert_passed(self.get("/_gateway_test/echo", old))
        self.stoactl("keys", "rotate")
        new_kid = self.signer.current_kid()
        self.assertNotEqual(new_kid, old_kid)
        self.assertEqual(set(self.jwks_kids()), {old_kid, new_kid})
        new = self.token()
        # Both workers must pick the new key up, whichever gets the request.
        for _ in range(6):
            self.assert_passed(self.get("/_gateway_test/echo", new))
            self.assert_ok_json(self.get("/v1/me", new))
            self.assert_passed(self.get("/_gateway_test/echo", old))
            self.stack.client.close()  # a fresh connection may hit the other worker
        # A kid that is still unknown stays refused (and costs no re-read).
        self.assert_refused(self.get("/_gateway_test/echo", self.signer.token(
            self.claims(), header={"alg": "ES256", "kid": "still-unknown"})))

    def test_91_rotation_with_reload(self):
        self.stoactl("keys", "rotate")
        self.reload()
        for kid in self.jwks_kids():
            with self.subTest(kid=kid):
                self.assert_passed(self.get("/_gateway_test/echo",
                                            self.signer.token(self.claims(), kid=kid)))

    def test_92_reload_drops_a_withdrawn_key(self):
        current = self.signer.current_kid()
        withdrawn = next(k for k in self.jwks_kids() if k != current)
        token = self.signer.token(self.claims(), kid=withdrawn)
        self.assert_passed(self.get("/_gateway_test/echo", token))
        path = self.stack.path("keys", "jwks.json")
        with open(path) as f:
            doc = json.load(f)
        doc["keys"] = [k for k in doc["keys"] if k["kid"] != withdrawn]
        tmp = path + ".tmp"
        with open(tmp, "w") as f:
            json.dump(doc, f)
        os.rename(tmp, path)
        # Known kid, so no re-read: the running workers keep the key ...
        self.assert_passed(self.get("/_gateway_test/echo", token))
        # ... until nginx -s reload reads the file again.
        self.reload()
        self.assert_refused(self.get("/_gateway_test/echo", token))
        self.assert_passed(self.get("/_gateway_test/echo", self.token()))


class GatewayConfigTest(unittest.TestCase):
    """`nginx -t` with the module: bad gateway configuration is refused with
    a message naming the directive. No stack; a throwaway nginx prefix."""

    @classmethod
    def setUpClass(cls):
        if not os.path.exists(GATEWAY_MODULE):
            raise RuntimeError(f"{GATEWAY_MODULE} is missing (make gateway)")
        cls.dir = tempfile.mkdtemp(prefix="stoa-gw-conf-")
        keys = os.path.join(cls.dir, "keys")
        os.mkdir(keys, 0o700)
        conf = os.path.join(cls.dir, "stoa.conf")
        with open(conf, "w") as f:
            f.write(f"keys_dir = {keys}\nlog_dir = -\n")
        subprocess.run([os.path.join(BIN_DIR, "stoactl"), "--config", conf, "keys", "ensure"],
                       stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, check=True, timeout=60)
        cls.jwks = os.path.join(keys, "jwks.json")
        cls.files = {}
        for name, text in [
            ("not-json.json", "{keys: nope"),
            ("no-keys.json", '{"other":[]}'),
            ("rsa-only.json", '{"keys":[{"kty":"RSA","n":"AQAB","e":"AQAB","kid":"r"}]}'),
            ("off-curve.json", '{"keys":[{"kty":"EC","crv":"P-256","kid":"k",'
                               '"x":"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",'
                               '"y":"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"}]}'),
        ]:
            path = os.path.join(cls.dir, name)
            with open(path, "w") as f:
                f.write(text)
            cls.files[name] = path

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.dir, ignore_errors=True)

    def nginx_t(self, http_conf, location_conf=""):
        prefix = tempfile.mkdtemp(dir=self.dir)
        conf = os.path.join(prefix, "nginx.conf")
        with open(conf, "w") as f:
            f.write(f"""
load_module {GATEWAY_MODULE};
pid {prefix}/nginx.pid;
error_log {prefix}/error.log;
events {{ worker_connections 16; }}
http {{
    client_body_temp_path {prefix}/tmp;
    access_log off;
    {http_conf}
    server {{
        listen 127.0.0.1:1;
        location / {{
            {location_conf}
            return 204;
        }}
    }}
}}
""")
        proc = subprocess.run(["nginx", "-t", "-p", prefix + "/", "-c", conf],
                              stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, timeout=30)
        return proc.returncode, proc.stdout.decode("utf-8", "replace")

    def assert_refused(self, directive, http_conf, location_conf="", detail=None):
        rc, out = self.nginx_t(http_conf, location_conf)
        self.assertNotEqual(rc, 0, out)
        self.assertIn(f'"{directive}"', out)
        if detail:
            self.assertIn(detail, out)

    def test_good_configuration(self):
        rc, out = self.nginx_t(
            f'api_gateway_jwks {self.jwks}; api_gateway_issuer "https://i"; '
            'api_gateway_audience stoa; api_gateway_leeway 1m; api_gateway_cache_size 64;',
            "api_gateway on; api_gateway_roles admin finance support-2;")
        self.assertEqual(rc, 0, out)
        # Enabled without roles, optional, and any.
        for location in ("api_gateway optional;", "api_gateway on; api_gateway_roles any;"):
            rc, out = self.nginx_t(f"api_gateway_jwks {self.jwks};", location)
            self.assertEqual(rc, 0, out)

    def test_missing_jwks_file(self):
        self.assert_refused("api_gateway_jwks", f"api_gateway_jwks {self.dir}/nope.json;",
                            detail="No such file")

    def test_unparsable_jwks(self):
        for name, detail in [("not-json.json", "not valid JSON"),
                             ("no-keys.json", '"keys"'),
                             ("rsa-only.json", "no ES256 key"),
                             ("off-curve.json", "P-256")]:
            with self.subTest(name):
                self.assert_refused("api_gateway_jwks",
                                    f"api_gateway_jwks {self.files[name]};", detail=detail)

    def test_bad_roles(self):
        for roles in ("Admin", "admin Finance", "1st", "a.b", "admin any", "x" * 33, '""'):
            with self.subTest(roles=roles):
                self.assert_refused("api_gateway_roles", f"api_gateway_jwks {self.jwks};",
                                    f"api_gateway on; api_gateway_roles {roles};")

    def test_bad_mode_leeway_and_strings(self):
        self.assert_refused("api_gateway", f"api_gateway_jwks {self.jwks};",
                            "api_gateway maybe;")
        self.assert_refused("api_gateway_leeway", f"api_gateway_jwks {self.jwks};",
                            "api_gateway_leeway soon;")
        self.assert_refused("api_gateway_issuer", f"api_gateway_jwks {self.jwks};",
                            'api_gateway_issuer "";')
        self.assert_refused("api_gateway_cache_size",
                            f"api_gateway_jwks {self.jwks}; api_gateway_cache_size 99999999;")

    def test_enabled_without_keys(self):
        self.assert_refused("api_gateway_jwks", "", "api_gateway on;")
        # Off needs no keys.
        rc, out = self.nginx_t("", "api_gateway off;")
        self.assertEqual(rc, 0, out)


if __name__ == "__main__":
    unittest.main()
