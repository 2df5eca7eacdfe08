"""End-to-end tests of the transaction shape every writing handler follows
(begin, statements, audit, commit, then the answer), through nginx over
TLS: a login whose commit is refused answers a 5xx error and hands out no
token that works, and the paged lists keep their answers and errors.

A commit is made to fail with a deferred constraint trigger in the test's
own throwaway database (it fires at COMMIT, after every statement of the
handler succeeded).

Run from tests/integration:
    STOA_BIN_DIR=<worktree>/bin python3 -m unittest test_transactions -v
"""

import unittest

from authlib import count_rows, query_json
from test_auth import AuthStackTestCase

REFUSED_AGENT = "commit-refused-agent"


class CommitRefusedTest(AuthStackTestCase):
    """Sessions started by a client with REFUSED_AGENT cannot commit."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        query_json(cls.stack, f"""
            CREATE FUNCTION public.refuse_commit() RETURNS trigger
                LANGUAGE plpgsql AS $$
                BEGIN RAISE EXCEPTION 'commit refused'; END $$;
            CREATE CONSTRAINT TRIGGER refuse_commit AFTER INSERT ON auth.sessions
                DEFERRABLE INITIALLY DEFERRED FOR EACH ROW
                WHEN (NEW.user_agent = '{REFUSED_AGENT}')
                EXECUTE FUNCTION public.refuse_commit();
            SELECT to_json(1)""")

    def test_01_login_whose_commit_fails_answers_no_tokens(self):
        email = self.unique_email("commitfail")
        plain = self.client()
        user = self.register(plain, email)
        refused = self.client(user_agent=REFUSED_AGENT)
        resp = self.login_response(refused, email)
        self.assert_error(resp, 500, "internal")
        self.assertNotIn("access_token", resp.body.decode())
        self.assertNotIn("refresh_token", resp.body.decode())
        # Nothing of the login was kept: no session, no audit entry.
        self.assertEqual(count_rows(self.stack, """
            SELECT 1 FROM auth.sessions WHERE user_id = :'id'::uuid""",
                                    id=user["id"]), 0)
        self.assertEqual(count_rows(self.stack, """
            SELECT 1 FROM admin.audit_log WHERE target_id = :'id'::uuid
                AND action = 'login.succeeded'""", id=user["id"]), 0)
        # The same account signs in from an ordinary client.
        tokens = self.login(plain, email)
        self.assertIn("access_token", tokens)
        self.assertEqual(tokens["user"]["id"], user["id"])

    def test_02_session_list_and_key_list_keep_their_shape(self):
        c = self.client(user_agent="list-agent")
        email, tokens = self.new_account(c, "lists")
        resp = c.request("GET", "/v1/auth/sessions", token=tokens["access_token"])
        doc = self.assert_ok_json(resp)
        self.assertEqual(set(doc), {"data", "next_cursor"})
        self.assertIsNone(doc["next_cursor"])
        self.assertEqual(len(doc["data"]), 1)
        self.assertTrue(doc["data"][0]["current"])
        self.assertEqual(doc["data"][0]["user_agent"], "list-agent")
        resp = c.request("GET", "/v1/auth/api-keys", token=tokens["access_token"])
        doc = self.assert_ok_json(resp)
        self.assertEqual(doc, {"data": [], "next_cursor": None})


if __name__ == "__main__":
    unittest.main()
