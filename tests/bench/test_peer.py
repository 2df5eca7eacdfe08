"""The peers of the benchmarks (FastAPI, Go net/http) do the work of GET
/v1/me, or the comparison means nothing: on a throwaway stack, each peer behind the same
nginx must answer exactly as stoa does (the cached profile and the one read
from Postgres), refuse what stoa refuses (no token, a forged signature,
another algorithm, a revoked session) and follow a profile change.

Needs Debian's python3-fastapi stack and golang with its drivers
(scripts/deps.sh bench); each peer's class is skipped without them. Run: python3 -m unittest discover -s tests/bench -p 'test_*.py'
"""

import base64
import json
import os
import shutil
import subprocess
import unittest

import benchlib as b
import peer

PYTHON = os.environ.get("PEER_PYTHON", "/usr/bin/python3")


def peer_stack_available():
    try:
        done = subprocess.run([PYTHON, "-c", "import fastapi, uvicorn, jwt, redis, asyncpg"],
                              capture_output=True, timeout=60)
    except OSError:
        return False
    return done.returncode == 0


def go_peer_available():
    return shutil.which("go") is not None and all(
        os.path.isdir(t) for t in peer.GO_LINKS.values())


class PeerDoesTheSameWork:
    kind = None

    @classmethod
    def setUpClass(cls):
        cls.stack = b.BenchStack(processes=2)
        cls.stack.__enter__()
        try:
            cls.path = peer.start_peer(cls.stack, cls.kind)
            cls.user_id, cls.email, cls.token, cls.login = cls.stack.register_and_login("peer")
            cls.stack.wait_for(cls.path,
                               headers={"Authorization": f"Bearer {cls.token}"}, timeout=30)
        except BaseException:
            cls.stack.__exit__(None, None, None)
            raise

    @classmethod
    def tearDownClass(cls):
        cls.stack.__exit__(None, None, None)

    def setUp(self):
        self.client = self.stack.new_client()
        self.addCleanup(self.client.close)

    def get(self, path, token):
        headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
        return self.client.request("GET", path, headers=headers)

    def both(self, token):
        return self.get("/v1/me", token), self.get(self.path, token)

    def drop_cached_profile(self):
        subprocess.run(["redis-cli", "-s", self.stack.redis_socket(), "DEL",
                        f"me:{self.user_id}"], check=True, capture_output=True)

    def test_the_cached_profile_is_the_same(self):
        ours, theirs = self.both(self.token)
        self.assertEqual(ours.status, 200, ours)
        self.assertEqual(theirs.status, 200, theirs)
        self.assertEqual(theirs.json, ours.json)
        self.assertEqual(theirs.json["id"], self.user_id)

    def test_the_profile_read_from_postgres_is_the_same(self):
        self.drop_cached_profile()
        theirs = self.get(self.path, self.token)
        self.drop_cached_profile()
        ours = self.get("/v1/me", self.token)
        self.assertEqual((ours.status, theirs.status), (200, 200))
        self.assertEqual(theirs.json, ours.json)
        self.assertEqual(theirs.body, ours.body)

    def test_a_profile_change_reaches_both(self):
        r = self.client.request("PATCH", "/v1/me", body={"name": "Renamed Bench"},
                                headers={"Authorization": f"Bearer {self.token}"})
        self.assertEqual(r.status, 200, r)
        ours, theirs = self.both(self.token)
        self.assertEqual(theirs.json["name"], "Renamed Bench")
        self.assertEqual(theirs.json, ours.json)

    def test_bad_tokens_are_refused_alike(self):
        header, payload, signature = self.token.split(".")
        forged_claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        forged_claims["role"] = "admin"
        forged = base64.urlsafe_b64encode(json.dumps(forged_claims).encode()).rstrip(b"=")
        head = json.loads(base64.urlsafe_b64decode(header + "=" * (-len(header) % 4)))
        head["alg"] = "none"
        none_head = base64.urlsafe_b64encode(json.dumps(head).encode()).rstrip(b"=")
        cases = {
            "no token": None,
            "garbage": "not-a-token",
            "forged claims": f"{header}.{forged.decode()}.{signature}",
            "alg none": f"{none_head.decode()}.{payload}.",
        }
        for name, token in cases.items():
            with self.subTest(name):
                ours, theirs = self.both(token)
                self.assertEqual(ours.status, 401, ours)
                self.assertEqual(theirs.status, 401, theirs)
                self.assertEqual(theirs.json["error"]["code"], "unauthenticated")
                self.assertIn("request_id", theirs.json)

    def test_a_revoked_session_is_refused_by_both(self):
        r = self.client.request("POST", "/v1/auth/login",
                                body={"email": self.email, "password": b.PASSWORD})
        self.assertEqual(r.status, 200, r)
        token = r.json["access_token"]
        self.assertEqual([x.status for x in self.both(token)], [200, 200])
        r = self.client.request("POST", "/v1/auth/logout",
                                headers={"Authorization": f"Bearer {token}"})
        self.assertIn(r.status, (200, 204), r)
        # stoa refuses within 1 s (its per-process cache); the peer at once.
        theirs = self.get(self.path, token)
        self.assertEqual(theirs.status, 401, theirs)
        self.assertEqual(theirs.json["error"]["code"], "unauthenticated")


@unittest.skipUnless(peer_stack_available(), "the FastAPI peer's packages are missing "
                     "(scripts/deps.sh bench)")
class FastAPIPeerDoesTheSameWork(PeerDoesTheSameWork, unittest.TestCase):
    kind = "fastapi"


@unittest.skipUnless(go_peer_available(), "the Go peer's packages are missing "
                     "(scripts/deps.sh bench)")
class GoPeerDoesTheSameWork(PeerDoesTheSameWork, unittest.TestCase):
    kind = "go"


if __name__ == "__main__":
    unittest.main()
