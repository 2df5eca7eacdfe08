"""GET /v1/me is served from each pool process's own copy (hostcache.h),
and still reads its own writes across every process of the host: a change
through one process is what the next read through any process answers.

The stack runs four auth processes; each read goes over a fresh TLS
connection, so nginx spreads them over its kept upstream connections and
with them over the processes, every one of which holds a warm copy before
the change.
"""

import subprocess
import time
import uuid

from authlib import SourceClient, mailed_tokens
from harness import Client, StackTestCase

PASSWORD = "Tq7#vLp2!xRz-9mW"
READERS = 24
ROUNDS = 12


def new_account(case, tag):
    """A registered account named "Before", logged in on a client of its own:
    (client, email, access token)."""
    c = SourceClient(case.stack)
    case.addCleanup(c.close)
    email = f"{tag}.{uuid.uuid4().hex[:12]}@example.com"
    case.assertEqual(c.request("POST", "/v1/auth/register", {
        "email": email, "password": PASSWORD, "name": "Before"}).status, 201)
    login = c.request("POST", "/v1/auth/login", {"email": email, "password": PASSWORD})
    case.assertEqual(login.status, 200, repr(login))
    return c, email, login.json["access_token"]


class ProfileCacheTest(StackTestCase):
    pool_processes = 4
    stack_env = {"STOA_RATE_API": "100000r/s", "STOA_BURST_API": "100000",
                 "STOA_RATE_AUTH": "1000r/s", "STOA_BURST_AUTH": "1000"}

    def account(self):
        return new_account(self, "cache")

    def reads(self, token, n=READERS):
        """n reads of /v1/me, each on a connection of its own."""
        out = []
        for _ in range(n):
            c = Client("127.0.0.1", self.stack.https_port, self.stack.path("tls", "cert.pem"))
            try:
                resp = c.request("GET", "/v1/me", headers={"Authorization": f"Bearer {token}"})
            finally:
                c.close()
            self.assertEqual(resp.status, 200, repr(resp))
            out.append(resp.json)
        return out

    def test_01_a_change_is_read_at_once_by_every_process(self):
        c, _, token = self.account()
        for i in range(ROUNDS):
            # Warm copies everywhere, then change through one process.
            self.reads(token, 8)
            name = f"Name {i} {uuid.uuid4().hex[:6]}"
            resp = c.request("PATCH", "/v1/me", {"name": name}, token=token)
            self.assertEqual(resp.status, 200, repr(resp))
            seen = [doc["name"] for doc in self.reads(token)]
            self.assertEqual(seen, [name] * len(seen), f"round {i}: stale reads")

    def test_02_other_handlers_drop_the_copies_too(self):
        c, email, token = self.account()
        for doc in self.reads(token, 8):
            self.assertIs(doc["email_verified"], False)
        [link_token] = mailed_tokens(self.stack, email, "verify_email")
        self.assertEqual(c.request("POST", "/v1/auth/verify-email",
                                   {"token": link_token}).status, 200)
        for doc in self.reads(token):
            self.assertIs(doc["email_verified"], True, doc)

    def test_03_the_host_cache_file_is_the_stacks(self):
        conf = self.stack.conf_path()
        with open(conf, encoding="utf-8") as f:
            lines = [l for l in f if l.startswith("host_cache_file")]
        self.assertEqual(len(lines), 1, lines)
        path = lines[0].split("=", 1)[1].strip()
        self.assertTrue(path.startswith(self.stack.run), path)
        # Every auth process maps it.
        pids = self.stack.pool_children("auth")
        self.assertEqual(len(pids), self.pool_processes)
        for pid in pids:
            with open(f"/proc/{pid}/maps", encoding="utf-8") as f:
                self.assertIn(path, f.read(), f"auth {pid} does not map {path}")


class NoHostCacheTest(StackTestCase):
    """Without host_cache_file every read asks Redis, as before."""
    stack_env = {"STOA_HOST_CACHE_FILE": ""}

    def test_01_reads_and_writes(self):
        c, _, token = new_account(self, "nocache")
        self.assertEqual(c.request("GET", "/v1/me", token=token).json["name"], "Before")
        self.assertEqual(c.request("PATCH", "/v1/me", {"name": "After"}, token=token).status, 200)
        self.assertEqual(c.request("GET", "/v1/me", token=token).json["name"], "After")
        for pid in self.stack.pool_children("auth"):
            with open(f"/proc/{pid}/maps", encoding="utf-8") as f:
                self.assertNotIn("host-cache", f.read())
