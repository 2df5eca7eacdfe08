"""The route manifest holds: routes.manifest is the only place a route is
declared, the built pools carry exactly its table, and the stack behaves
as it says for every route, at the edge (nginx + gateway) and in the pool.

The static half needs no stack: the manifest parses, every handler is
defined in the file it names, nginx.conf.in declares no route of its own,
and each pool program's table (`stoa-<pool> --routes`) is the manifest's.
The live half walks every route of the manifest through nginx over TLS:
no token, a token of the wrong role, API-key tokens of the right and the
wrong scope area, and a key token on credential routes.
"""

import json
import os
import re
import subprocess
import unittest
import uuid

from authlib import SourceClientTestCase
from billinglib import create_user, login, unique_email
from harness import BIN_DIR, OPEN_LIMITS

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
MANIFEST = os.path.join(REPO, "routes.manifest")
GEN = os.path.join(REPO, "scripts", "gen-routes.py")
POOL_FLAGS = ("idempotent", "hashes", "bulk")  # what the C table carries
AREAS = ("auth", "billing", "analytics", "admin")


def gen(*args):
    return subprocess.run(["python3", GEN, *args], capture_output=True, text=True,
                          timeout=60, stdin=subprocess.DEVNULL)


def manifest():
    done = gen("json", MANIFEST)
    if done.returncode != 0:
        raise AssertionError(done.stderr)
    return json.loads(done.stdout)


def concrete(path):
    """A request path for a pattern: each {param} a fresh UUID."""
    return re.sub(r"\{[a-z_]+\}", lambda _: str(uuid.uuid4()), path)


def body_for(method):
    return {} if method in ("POST", "PATCH", "PUT") else None


class ManifestStaticTest(unittest.TestCase):
    def test_01_every_handler_is_in_its_file(self):
        done = gen("check", MANIFEST, REPO)
        self.assertEqual(done.returncode, 0, done.stderr)

    def test_02_nginx_template_declares_no_route(self):
        with open(os.path.join(REPO, "nginx", "nginx.conf.in"), encoding="utf-8") as f:
            text = f.read()
        for directive in ("fastcgi_pass", "api_gateway_roles", "api_gateway on",
                          "api_gateway optional"):
            self.assertNotIn(directive, text,
                             f"nginx.conf.in has {directive}: routes belong in routes.manifest")
        self.assertIn("include @RUN@/nginx/routes.conf;", text)

    def test_03_pools_carry_the_manifest_table(self):
        routes = manifest()["routes"]
        for pool in AREAS:
            want = []
            for r in routes:
                if r["pool"] != pool or not r["handler"]:
                    continue
                access = "public" if r["access"] == "optional" else r["access"]
                flags = [f for f in POOL_FLAGS if f in r["flags"]]
                want.append(" ".join([r["method"], r["path"], access,
                                      ",".join(r["roles"]) or "-",
                                      ",".join(flags) or "-", r["scope"]]))
            done = subprocess.run([os.path.join(BIN_DIR, f"stoa-{pool}"), "--routes"],
                                  capture_output=True, text=True, timeout=30,
                                  stdin=subprocess.DEVNULL)
            self.assertEqual(done.returncode, 0, done.stderr)
            with self.subTest(pool=pool):
                self.assertEqual(done.stdout.splitlines(), want)

    def test_04_scopes_follow_the_url(self):
        for r in manifest()["routes"]:
            with self.subTest(route=f"{r['method']} {r['path']}"):
                first = r["path"].split("/")[2] if r["path"].startswith("/v1/") else ""
                # A user's feed and live channel are account data, as /v1/me.
                expected = first if first in AREAS else "auth"
                self.assertEqual(r["scope"], expected)
        # Served by the billing pool, scoped as admin routes.
        plans = [r for r in manifest()["routes"] if r["path"].startswith("/v1/admin/plans")]
        self.assertTrue(plans)
        for r in plans:
            self.assertEqual((r["pool"], r["scope"]), ("billing", "admin"))

    def test_05_disagreements_stop_the_build(self):
        lines = open(MANIFEST, encoding="utf-8").read().splitlines()
        cases = {
            "one path, two pools": "GET /v1/me billing user - - auth_me_get auth/me.c",
            "one path, other roles":
                "GET /v1/admin/plans billing user finance - billing_admin_plan_create "
                "billing/admin_plans.c",
            "a route twice": "GET /v1/me auth user - - auth_me_get auth/me.c",
            "unknown flag": "GET /v1/me/x auth user - fast auth_me_get auth/me.c",
            "roles on a public route": "GET /v1/me/y auth public admin - auth_me_get "
                                       "auth/me.c",
            "outside every scope": "GET /v2/x auth user - - auth_me_get auth/me.c",
        }
        for name, extra in cases.items():
            with self.subTest(case=name):
                path = os.path.join(self.tmp(), "routes.manifest")
                with open(path, "w", encoding="utf-8") as f:
                    f.write("\n".join(lines + [extra]) + "\n")
                for mode in (["nginx", path], ["c", "auth", path]):
                    done = gen(*mode)
                    self.assertEqual(done.returncode, 1, done.stdout)
                    self.assertIn("routes.manifest:", done.stderr)
        # A handler named in the wrong file is found by the check.
        path = os.path.join(self.tmp(), "routes.manifest")
        with open(path, "w", encoding="utf-8") as f:
            f.write("\n".join(lines + ["GET /v1/me/z auth user - - auth_me_get "
                                       "auth/login.c"]) + "\n")
        done = gen("check", path, REPO)
        self.assertEqual(done.returncode, 1)
        self.assertIn("auth_me_get is not defined in modules/auth/login.c", done.stderr)

    def test_06_the_architecture_map_is_current(self):
        with open(os.path.join(REPO, "docs", "architecture.md"), encoding="utf-8") as f:
            doc = f.read()
        m = re.search(r"<!-- routes:begin[^>]*-->\n(.*?)<!-- routes:end -->", doc, re.S)
        self.assertIsNotNone(m, "docs/architecture.md has no generated route map")
        done = gen("markdown", MANIFEST)
        self.assertEqual(done.returncode, 0, done.stderr)
        self.assertEqual(m.group(1), done.stdout,
                         "regenerate the map: python3 scripts/gen-routes.py markdown "
                         "routes.manifest")

    def tmp(self):
        import tempfile
        d = tempfile.mkdtemp(prefix="stoa-routes-")
        self.addCleanup(lambda: subprocess.run(["rm", "-rf", d]))
        return d


class ManifestLiveTest(SourceClientTestCase):
    stack_env = OPEN_LIMITS

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.routes = manifest()["routes"]

    def account(self, c, role):
        email = unique_email(f"routes-{role}")
        done = create_user(self.stack, email, role)
        self.assertEqual(done.returncode, 0, done.stderr)
        token, resp = login(c, email)
        self.assertTrue(token, repr(resp))
        return token

    def key_token(self, c, token, scopes):
        key = self.assert_ok_json(c.request("POST", "/v1/auth/api-keys",
                                            {"name": "routes", "scopes": scopes},
                                            token=token), 201)["key"]
        return self.assert_ok_json(c.request(
            "POST", "/v1/auth/token", {"grant_type": "api_key", "api_key": key}))["access_token"]

    def call(self, c, r, token=None):
        return c.request(r["method"], concrete(r["path"]), body_for(r["method"]), token=token)

    def test_01_the_edge_and_the_pool_agree_on_access(self):
        c = self.client()
        for r in self.routes:
            with self.subTest(route=f"{r['method']} {r['path']}"):
                resp = self.call(c, r)
                if r["access"] in ("user", "login"):
                    self.assert_error(resp, 401, "unauthenticated")
                else:
                    self.assertNotEqual(resp.status, 401, repr(resp))
                    self.assertLess(resp.status, 500, repr(resp))

    def test_02_roles_are_refused_wherever_listed(self):
        c = self.client()
        client_token = self.account(c, "client")
        finance_token = self.account(c, "finance")
        for r in self.routes:
            if not r["roles"]:
                continue
            for role, token in (("client", client_token), ("finance", finance_token)):
                if role in r["roles"]:
                    continue
                with self.subTest(route=f"{r['method']} {r['path']}", role=role):
                    self.assert_error(self.call(c, r, token), 403, "forbidden")

    def test_03_key_tokens_follow_the_url_scope(self):
        c = self.client()
        admin = self.account(c, "admin")
        for area in AREAS:
            own = self.key_token(c, admin, [f"{area}:*"])
            others = [a for a in AREAS if a != area]
            other = self.key_token(c, admin, [f"{a}:*" for a in others])
            for r in self.routes:
                if r["scope"] != area or r["access"] not in ("user", "login") \
                        or not r["handler"]:
                    continue
                name = f"{r['method']} {r['path']}"
                with self.subTest(route=name, scope="other areas"):
                    self.assert_error(self.call(c, r, other), 403, "insufficient_scope")
                with self.subTest(route=name, scope=f"{area}:*"):
                    if r["access"] == "login":
                        self.assert_error(self.call(c, r, own), 403, "forbidden")
                    elif r["method"] == "GET" or r["path"].startswith("/v1/admin/plans"):
                        # Reads, and pricing with an empty body (refused
                        # by the handler's validation, past the scope).
                        resp = self.call(c, r, own)
                        self.assertNotIn(resp.status, (401, 403), repr(resp))
                        self.assertLess(resp.status, 500, repr(resp))

    def test_04_unknown_paths_in_an_area(self):
        c = self.client()
        token = self.account(c, "client")
        for prefix in ("/v1/auth/", "/v1/billing/", "/v1/analytics/", "/v1/updates/",
                       "/v1/me/"):
            with self.subTest(prefix=prefix):
                self.assert_error(c.request("GET", prefix + "nothing-here"), 401,
                                  "unauthenticated")
                self.assert_error(c.request("GET", prefix + "nothing-here", token=token),
                                  404, "not_found")
        self.assert_error(c.request("GET", "/v1/admin/nothing-here", token=token), 403,
                          "forbidden")
        self.assert_error(c.request("GET", "/.well-known/nothing-here"), 404, "not_found")


if __name__ == "__main__":
    unittest.main()
