"""The API reference through nginx over TLS: GET /openapi.yaml is
docs/openapi.yaml itself, GET /docs/ its swagger-ui viewer (docs/ui/ and
the pinned swagger-ui-dist that scripts/vendor.sh fetches) under a CSP that
allows only this origin's files and no inline script, and nothing outside
those files is reachable under /docs/. And scripts/vendor.sh, which fetches
that viewer, with npm replaced: the tarball's pinned sha256 is enforced.

Run from tests/integration:
    STOA_BIN_DIR=<repo>/bin python3 -m unittest test_apidocs -v
"""

import hashlib
import html.parser
import os
import re
import subprocess
import tempfile
import unittest

import yaml

from harness import REPO, SANE_REQUEST_ID, StackTestCase

OPENAPI = os.path.join(REPO, "docs", "openapi.yaml")
VENDOR_SH = os.path.join(REPO, "scripts", "vendor.sh")


def content_type(resp):
    return resp.header("Content-Type", "").split(";")[0].strip().lower()


def csp_directives(resp):
    """The Content-Security-Policy of an answer as {directive: [sources]};
    a second policy header would be enforced too, so there must be one."""
    values = resp.header_all("Content-Security-Policy")
    if len(values) != 1:
        raise AssertionError(f"want one Content-Security-Policy: {resp!r}")
    out = {}
    for part in values[0].split(";"):
        words = part.split()
        if words:
            out[words[0].lower()] = words[1:]
    return out


class PageParser(html.parser.HTMLParser):
    """The scripts (with their src, or their inline text) and stylesheets
    of a page, and any inline style or event handler attribute."""

    def __init__(self):
        super().__init__()
        self.scripts = []
        self.inline_scripts = []
        self.stylesheets = []
        self.inline_attributes = []
        self._in_script = False

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        for name in attrs:
            if name == "style" or name.startswith("on"):
                self.inline_attributes.append((tag, name))
        if tag == "script":
            if attrs.get("src"):
                self.scripts.append(attrs["src"])
            self._in_script = True
        elif tag == "style":
            self.inline_attributes.append((tag, "<style>"))
        elif tag == "link" and "stylesheet" in (attrs.get("rel") or "").split():
            self.stylesheets.append(attrs.get("href"))

    def handle_endtag(self, tag):
        if tag == "script":
            self._in_script = False

    def handle_data(self, data):
        if self._in_script and data.strip():
            self.inline_scripts.append(data)


class ApiDocsTest(StackTestCase):
    def get_page(self):
        resp = self.request("GET", "/docs/")
        self.assertEqual(resp.status, 200, repr(resp))
        page = PageParser()
        page.feed(resp.body.decode("utf-8"))
        return resp, page

    def assert_edge_headers(self, resp):
        """The headers of every other answer (security_headers.conf)."""
        self.assertIn("max-age=", resp.header("Strict-Transport-Security", ""), repr(resp))
        self.assertEqual(resp.header("X-Content-Type-Options"), "nosniff", repr(resp))
        self.assertEqual(resp.header("Referrer-Policy"), "no-referrer", repr(resp))
        ids = resp.header_all("X-Request-Id")
        self.assertEqual(len(ids), 1, repr(resp))
        self.assertRegex(ids[0], SANE_REQUEST_ID)

    def test_01_the_viewer_page_comes_over_tls_with_its_csp(self):
        self.assertIn(self.stack.client.tls_version(), ("TLSv1.2", "TLSv1.3"))
        resp, page = self.get_page()
        self.assertEqual(content_type(resp), "text/html", repr(resp))
        self.assert_edge_headers(resp)
        csp = csp_directives(resp)
        self.assertEqual(csp.get("default-src"), ["'self'"], csp)
        self.assertEqual(csp.get("frame-ancestors"), ["'none'"], csp)
        # Scripts fall back to default-src 'self': no directive may widen
        # them, and nothing anywhere is inline or eval'd.
        self.assertNotIn("script-src", csp)
        for directive, sources in csp.items():
            for source in sources:
                self.assertNotIn(source, ("'unsafe-inline'", "'unsafe-eval'", "*", "https:",
                                          "http:"), f"{directive} {sources}")
        # The page itself keeps to it: no inline script, style or handler.
        self.assertEqual(page.inline_scripts, [])
        self.assertEqual(page.inline_attributes, [])
        self.assertIn("vendor/swagger-ui-bundle.js", page.scripts)

    def test_02_its_scripts_and_stylesheet_load(self):
        _, page = self.get_page()
        assets = [(src, ("text/javascript", "application/javascript")) for src in page.scripts]
        assets += [(href, ("text/css",)) for href in page.stylesheets]
        self.assertEqual(len(assets), 3, assets)
        bodies = {}
        for ref, types in assets:
            with self.subTest(asset=ref):
                self.assertFalse(ref.startswith(("/", "http:", "https:", "//")), ref)
                resp = self.request("GET", "/docs/" + ref)
                self.assertEqual(resp.status, 200, repr(resp))
                self.assertIn(content_type(resp), types, repr(resp))
                self.assert_edge_headers(resp)
                bodies[ref] = resp.body
        self.assertIn(b"SwaggerUIBundle", bodies["vendor/swagger-ui-bundle.js"])
        self.assertGreater(len(bodies["vendor/swagger-ui-bundle.js"]), 500_000)
        self.assertIn(b".swagger-ui", bodies["vendor/swagger-ui.css"])
        # The page's own script points the viewer at the served document.
        self.assertIn(b'"/openapi.yaml"', bodies["init.js"])

    def test_03_openapi_yaml_is_the_repository_document(self):
        resp = self.request("GET", "/openapi.yaml")
        self.assertEqual(resp.status, 200, repr(resp))
        self.assertIn(content_type(resp), ("application/yaml", "text/yaml"), repr(resp))
        self.assert_edge_headers(resp)
        served = yaml.safe_load(resp.body.decode("utf-8"))
        with open(OPENAPI, encoding="utf-8") as f:
            ours = yaml.safe_load(f)
        self.assertEqual(sorted(served["paths"]), sorted(ours["paths"]))
        self.assertEqual(served, ours)
        # Data, not a page: the API's own strict policy.
        self.assertEqual(csp_directives(resp).get("default-src"), ["'none'"])

    def test_04_the_bare_name_redirects_to_the_viewer(self):
        resp = self.request("GET", "/docs")
        self.assertEqual(resp.status, 301, repr(resp))
        self.assertTrue(resp.header("Location", "").endswith("/docs/"), repr(resp))

    def test_05_api_answers_keep_the_strict_policy(self):
        # The looser policy is for /docs/ alone, not for look-alike paths.
        self.assertEqual(csp_directives(self.get_page()[0]).get("default-src"), ["'self'"])
        for path in ("/v1/auth/healthz", "/healthz", "/docsx/", "/v1/docs/", "/nope"):
            with self.subTest(path=path):
                resp = self.request("GET", path)
                csp = csp_directives(resp)
                self.assertEqual(csp.get("default-src"), ["'none'"], repr(resp))

    def test_06_no_other_vendored_file_is_served(self):
        # swagger-ui-dist ships its own demo page (inline script, a remote
        # petstore document), an initializer and source maps: not ours.
        self.assertEqual(self.request("GET", "/docs/vendor/swagger-ui.css").status, 200)
        for name in ("index.html", "swagger-initializer.js", "package.json",
                     "swagger-ui-bundle.js.map", "swagger-ui.js", ".stoa-pin"):
            with self.subTest(name=name):
                resp = self.request("GET", "/docs/vendor/" + name)
                self.assert_error(resp, 404, "not_found")

    def test_07_path_traversal_under_docs_does_not_escape(self):
        # Files outside docs/ui/ that exist: the repository's own and the
        # system's. Whatever nginx makes of each path, none of them comes
        # back.
        with open(os.path.join(REPO, "Makefile"), "rb") as f:
            makefile = f.read(200)
        secrets = (b"root:x:0:0", makefile, b"recommended-strict", b"routes.manifest -")
        # The location exists and serves its own files.
        self.assertEqual(self.request("GET", "/docs/init.js").status, 200)
        attempts = [
            "/docs/../Makefile",
            "/docs/../../../../../../etc/passwd",
            "/docs/%2e%2e/Makefile",
            "/docs/%2e%2e/%2e%2e/%2e%2e/%2e%2e/etc/passwd",
            "/docs/..%2f..%2fMakefile",
            "/docs/..%2fredocly.yaml",
            "/docs/vendor/..%2f..%2f..%2f..%2fMakefile",
            "/docs/vendor/..%2f..%2f..%2f..%2f..%2fetc/passwd",
            "/docs/ui/../../routes.manifest",
            "/docs/%2e%2e%5c%2e%2e%5cMakefile",
            "/docs//../../Makefile",
            "/docs../Makefile",
            "/docs/vendor/swagger-ui.css/../../../Makefile",
        ]
        for path in attempts:
            with self.subTest(path=path):
                resp = self.request("GET", path)
                self.assertIn(resp.status, (400, 404), repr(resp))
                self.assertEqual(content_type(resp), "application/json", repr(resp))
                for secret in secrets:
                    self.assertNotIn(secret, resp.body, path)


# Stands in for npm: records its arguments; `pack` writes a tarball shaped
# like swagger-ui-dist's (package/...) whose bytes are not the pinned ones.
FAKE_NPM = """#!/bin/sh
echo "$*" >> "$NPM_LOG"
case "$1" in
pack) mkdir -p package && echo 'tampered' > package/swagger-ui-bundle.js &&
      tar -czf "$(echo "$3" | sed 's/@/-/').tgz" package ;;
*) exit 1 ;;
esac
"""


class VendorScriptTest(unittest.TestCase):
    """scripts/vendor.sh with npm replaced: the pinned hash is enforced and
    a tree already fetched at its pin is not fetched again."""

    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="stoa-vendor-")
        self.addCleanup(subprocess.run, ["rm", "-rf", self.dir])
        self.bin = os.path.join(self.dir, "bin")
        os.mkdir(self.bin)
        with open(os.path.join(self.bin, "npm"), "w") as f:
            f.write(FAKE_NPM)
        os.chmod(os.path.join(self.bin, "npm"), 0o755)
        self.vendor = os.path.join(self.dir, "vendor")
        self.log = os.path.join(self.dir, "npm.log")
        with open(VENDOR_SH) as f:
            text = f.read()
        self.version = re.search(r"^readonly SWAGGER_UI_VERSION=(\S+)$", text, re.M).group(1)
        self.sha256 = re.search(r"^readonly SWAGGER_UI_SHA256=(\S+)$", text, re.M).group(1)

    def run_vendor(self):
        env = dict(os.environ, PATH=self.bin + ":" + os.environ["PATH"],
                   STOA_VENDOR_DIR=self.vendor, NPM_LOG=self.log)
        return subprocess.run(["bash", VENDOR_SH], env=env, capture_output=True, text=True,
                              timeout=60, stdin=subprocess.DEVNULL)

    def npm_calls(self):
        if not os.path.exists(self.log):
            return []
        with open(self.log) as f:
            return f.read().splitlines()

    def pin(self, name, text):
        os.makedirs(os.path.join(self.vendor, name), exist_ok=True)
        with open(os.path.join(self.vendor, name, ".stoa-pin"), "w") as f:
            f.write(text + "\n")

    def redocly_pin(self):
        digest = hashlib.sha256()
        for name in ("package.json", "package-lock.json"):
            with open(os.path.join(REPO, "scripts", "npm", name), "rb") as f:
                digest.update(f.read())
        return "redocly " + digest.hexdigest()

    def test_a_tarball_without_the_pinned_hash_is_refused(self):
        done = self.run_vendor()
        self.assertEqual(done.returncode, 1, done.stdout + done.stderr)
        self.assertIn("pinned sha256", done.stderr)
        self.assertEqual(self.npm_calls(), [f"pack --silent swagger-ui-dist@{self.version}"])
        # Nothing was put in place, and the download was cleaned up.
        self.assertEqual(os.listdir(self.vendor), [])

    def test_a_tree_fetched_at_its_pin_is_kept(self):
        self.pin("swagger-ui-dist", f"swagger-ui-dist {self.version} {self.sha256}")
        self.pin("redocly", self.redocly_pin())
        done = self.run_vendor()
        self.assertEqual((done.returncode, done.stdout, done.stderr), (0, "", ""))
        self.assertEqual(self.npm_calls(), [])

    def test_a_tree_of_another_pin_is_fetched_again(self):
        self.pin("swagger-ui-dist", f"swagger-ui-dist 5.0.0 {self.sha256}")
        self.pin("redocly", self.redocly_pin())
        done = self.run_vendor()
        self.assertEqual(done.returncode, 1, done.stdout + done.stderr)
        self.assertEqual(self.npm_calls(), [f"pack --silent swagger-ui-dist@{self.version}"])
        # The old tree stays until a good one replaces it.
        self.assertTrue(os.path.isdir(os.path.join(self.vendor, "swagger-ui-dist")))


if __name__ == "__main__":
    unittest.main()
