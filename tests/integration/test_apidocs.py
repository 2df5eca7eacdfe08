"""The API reference through nginx over TLS: GET /openapi.yaml is
docs/openapi.yaml itself, GET /docs/ its swagger-ui viewer (docs/ui/ and
the pinned swagger-ui-dist that scripts/vendor.sh fetches) under a CSP that
allows only this origin's files and no inline script, and nothing outside
those files is reachable under /docs/.

Run from tests/integration:
    STOA_BIN_DIR=<repo>/bin python3 -m unittest test_apidocs -v
"""

import html.parser
import os
import unittest

import yaml

from harness import REPO, SANE_REQUEST_ID, StackTestCase

OPENAPI = os.path.join(REPO, "docs", "openapi.yaml")


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


if __name__ == "__main__":
    unittest.main()
