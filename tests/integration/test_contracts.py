"""The strings programs must agree on are defined once (no stack needed).

Each contract has one header in modules/common/include/stoa/: the API
error codes (err.h, and the list in docs/openapi.yaml), the Redis keys
shared between programs (cache_keys.h), the templated-mail job
(mail.h) and the domain-event names (events.h). These tests read the
sources: a literal spelled again in a handler, or a code missing from the
API description, fails here before it drifts in production.
"""

import glob
import os
import re
import unittest

import yaml

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
COMMON = os.path.join(REPO, "modules", "common")
HEADERS = os.path.join(COMMON, "include", "stoa")
OPENAPI = os.path.join(REPO, "docs", "openapi.yaml")


def read(path):
    with open(path, encoding="utf-8") as f:
        return f.read()


def sources():
    """(relative path, text) of every C file of modules/ (the gateway module
    lives in gateway/, with its own small set of codes)."""
    for path in sorted(glob.glob(os.path.join(REPO, "modules", "*", "*.[ch]")) +
                       glob.glob(os.path.join(HEADERS, "*.h"))):
        yield os.path.relpath(path, REPO), read(path)


def strip_comments(text):
    return re.sub(r"/\*.*?\*/", "", text, flags=re.S)


def error_table():
    """{code: status} from the table of modules/common/err.c."""
    text = read(os.path.join(COMMON, "err.c"))
    rows = re.findall(r'\[(STOA_ERR_\w+)\]\s*=\s*\{\s*"([a-z0-9_]+)",\s*(\d+)', text)
    return {code: int(status) for _, code, status in rows}


def event_table():
    text = read(os.path.join(HEADERS, "events.h"))
    return dict(re.findall(r'#define (STOA_EVENT_\w+) "([a-z_.]+)"', text))


class ErrorCodesTest(unittest.TestCase):

    def test_table_is_read(self):
        table = error_table()
        # The table of the code: every enum member has its row.
        ids = re.findall(r"^\s*(STOA_ERR_[A-Z_]+),", read(os.path.join(HEADERS, "err.h")),
                         flags=re.M)
        self.assertGreaterEqual(len(table), 30)
        self.assertEqual(len(table), len(ids), "one row per stoa_err_t")
        self.assertEqual(table["not_found"], 404)
        self.assertEqual(table["invalid_token"], 401)

    def test_every_code_is_in_openapi_with_its_status(self):
        doc = yaml.safe_load(read(OPENAPI))
        code = doc["components"]["schemas"]["Error"]["properties"]["error"][
            "properties"]["code"]
        listed = code.get("x-error-codes")
        self.assertIsInstance(listed, dict, "Error.error.code lists x-error-codes")
        table = error_table()
        for name, status in table.items():
            with self.subTest(code=name):
                self.assertIn(name, listed, f"{name} missing from docs/openapi.yaml")
                self.assertEqual(listed[name], status, f"{name}: status differs")
        self.assertEqual(sorted(set(listed) - set(table)), [],
                         "docs/openapi.yaml lists codes the table does not have")

    def test_codes_appear_in_openapi_text(self):
        text = read(OPENAPI)
        for name in error_table():
            with self.subTest(code=name):
                self.assertRegex(text, r"\b" + re.escape(name) + r"\b")

    def test_handlers_answer_by_id(self):
        """No handler answers an error by status and code text: the table
        decides both."""
        literal = re.compile(r'stoa_http_error(?:_details)?\(\s*[^,]+,\s*\d+\s*,\s*"')
        for path, text in sources():
            with self.subTest(path=path):
                self.assertEqual(literal.findall(strip_comments(text)), [],
                                 f"{path} answers an error by literal code")


class CacheKeysTest(unittest.TestCase):
    # Shared Redis keys, as literals: only stoa/cache_keys.h spells them.
    KEY_LITERAL = re.compile(r'"(?:me:|rv:|billing:(?:plans|ent:|entgen))')
    OWNERS = {"modules/common/include/stoa/cache_keys.h"}

    def test_shared_keys_spelled_once(self):
        for path, text in sources():
            if path in self.OWNERS:
                continue
            with self.subTest(path=path):
                self.assertEqual(self.KEY_LITERAL.findall(strip_comments(text)), [],
                                 f"{path} spells a shared Redis key")

    def test_header_defines_them(self):
        text = read(os.path.join(HEADERS, "cache_keys.h"))
        for key in ('"me:"', '"rv:u:"', '"rv:s:"', '"rv:synced"', '"billing:plans"',
                    '"billing:ent:"', '"billing:entgen:"', '"billing:entgen"'):
            self.assertIn(key, text)


class MailJobTest(unittest.TestCase):

    def test_kind_spelled_once(self):
        """The mail job's kind is STOA_MAIL_JOB_KIND; only the worker's
        SQL statement that mails every admin writes it in SQL."""
        allowed = {"modules/common/include/stoa/mail.h",
                   "modules/jobs/statements.c"}
        for path, text in sources():
            if path in allowed:
                continue
            with self.subTest(path=path):
                self.assertNotIn('"email.send"', strip_comments(text))

    def test_producers_use_the_one_enqueue(self):
        """Nobody but mail.c writes a mail's payload: the members
        "template" and "to" are written nowhere else."""
        writer = re.compile(r'stoa_jw_kv_string\(\s*\w+\s*,\s*"(?:template|to)"')
        for path, text in sources():
            if path == "modules/common/mail.c":
                continue
            with self.subTest(path=path):
                self.assertEqual(writer.findall(text), [],
                                 f"{path} builds an email.send payload itself")


class EventNamesTest(unittest.TestCase):

    def test_no_bare_event_names_at_call_sites(self):
        names = set(event_table().values())
        self.assertIn("user.created", names)
        call = re.compile(r'(?:stoa_outbox_event\(\s*[^,]+,\s*[^,]+,\s*|domain_event\(\s*\w+\s*,\s*)"([a-z_.]+)"',
                          flags=re.S)
        for path, text in sources():
            with self.subTest(path=path):
                found = [n for n in call.findall(strip_comments(text))]
                self.assertEqual(found, [], f"{path} emits an event by a bare name")

    def test_webhook_validation_uses_the_table(self):
        text = strip_comments(read(os.path.join(REPO, "modules", "admin", "webhooks.c")))
        for name in event_table().values():
            self.assertNotIn(f'"{name}"', text)
        self.assertIn("stoa_event_find", text)

    def test_openapi_lists_every_event(self):
        doc = yaml.safe_load(read(OPENAPI))
        listed = doc["components"]["schemas"]["WebhookEvent"]["enum"]
        self.assertEqual(sorted(listed), sorted(["*"] + list(event_table().values())))


if __name__ == "__main__":
    unittest.main()
