"""make check-openapi's two checks, each held to a copy of the repository's
files broken on purpose: scripts/gen-routes.py openapi (every manifest
route documented with its method and path, nothing documented that no
route declares) and the pinned OpenAPI linter with docs/redocly.yaml.

Run by make check-openapi (STOA_REDOCLY names the linter it fetched).
Python 3.11 standard library and PyYAML.
"""

import copy
import importlib.util
import os
import shutil
import subprocess
import tempfile
import unittest

import yaml

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
GEN_ROUTES = os.path.join(REPO, "scripts", "gen-routes.py")
MANIFEST = os.path.join(REPO, "routes.manifest")
OPENAPI = os.path.join(REPO, "docs", "openapi.yaml")
REDOCLY = os.environ.get(
    "STOA_REDOCLY", os.path.join(REPO, "build", "vendor", "redocly", "node_modules", ".bin",
                                 "redocly"))


def load_gen_routes():
    spec = importlib.util.spec_from_file_location("gen_routes", GEN_ROUTES)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


gen_routes = load_gen_routes()


class OpenapiMatchesManifestTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.routes = gen_routes.parse(MANIFEST)
        cls.document = gen_routes.load_openapi(OPENAPI)

    def problems(self, document, routes=None):
        return gen_routes.check_openapi(self.routes if routes is None else routes, document)

    def test_the_repository_files_agree(self):
        self.assertEqual(self.problems(self.document), [])

    def test_a_route_left_out_of_the_document_is_found(self):
        doc = copy.deepcopy(self.document)
        del doc["paths"]["/v1/auth/sessions/{id}"]["delete"]
        found = self.problems(doc)
        self.assertEqual(len(found), 1, found)
        self.assertIn("DELETE /v1/auth/sessions/{id}", found[0])
        self.assertIn("not documented", found[0])

    def test_an_operation_under_the_wrong_method_is_found_both_ways(self):
        doc = copy.deepcopy(self.document)
        item = doc["paths"]["/v1/billing/plans"]
        item["post"] = item.pop("get")
        found = self.problems(doc)
        self.assertEqual(len(found), 2, found)
        self.assertTrue(any("GET /v1/billing/plans" in p and "not documented" in p
                            for p in found), found)
        self.assertTrue(any("POST /v1/billing/plans is documented but no route" in p
                            for p in found), found)

    def test_a_documented_path_no_route_declares_is_found(self):
        doc = copy.deepcopy(self.document)
        doc["paths"]["/v1/auth/nothing"] = {"get": {"responses": {"200": {"description": "x"}}}}
        found = self.problems(doc)
        self.assertEqual(found, ["GET /v1/auth/nothing is documented but no route declares it"])

    def test_a_parameter_renamed_in_the_document_is_found(self):
        doc = copy.deepcopy(self.document)
        doc["paths"]["/v1/admin/users/{user_id}"] = doc["paths"].pop("/v1/admin/users/{id}")
        found = self.problems(doc)
        # GET, PATCH and DELETE share the path.
        self.assertEqual(len(found), 3, found)
        self.assertTrue(all("documented as /v1/admin/users/{user_id}" in p for p in found))

    def test_paths_under_webhooks_are_not_routes(self):
        # An operation misplaced under webhooks: is not a documented path.
        doc = copy.deepcopy(self.document)
        doc["webhooks"]["/v1/updates"] = doc["paths"].pop("/v1/updates")
        found = self.problems(doc)
        self.assertEqual(len(found), 1, found)
        self.assertIn("GET /v1/updates", found[0])

    def test_the_allow_list_is_kept_honest(self):
        doc = copy.deepcopy(self.document)
        del doc["paths"]["/healthz"]
        found = self.problems(doc)
        self.assertEqual(len(found), 1, found)
        self.assertIn("GET /healthz is in OPENAPI_ONLY", found[0])
        # And an allowed path is allowed only through the list.
        found = gen_routes.check_openapi(self.routes, self.document, allowed={})
        self.assertEqual(found, ["GET /healthz is documented but no route declares it"])

    def test_a_route_added_to_the_manifest_alone_is_found(self):
        routes = self.routes + [dict(self.routes[0], line=999, method="PUT", path="/v1/me")]
        found = self.problems(self.document, routes)
        self.assertEqual(found, ["PUT /v1/me (manifest line 999) is not documented"])

    def test_the_command_fails_on_a_broken_copy(self):
        doc = copy.deepcopy(self.document)
        del doc["paths"]["/v1/me/export"]
        with tempfile.TemporaryDirectory() as tmp:
            broken = os.path.join(tmp, "openapi.yaml")
            with open(broken, "w", encoding="utf-8") as f:
                yaml.dump(doc, f, Dumper=getattr(yaml, "CSafeDumper", yaml.SafeDumper))
            done = subprocess.run(["python3", GEN_ROUTES, "openapi", MANIFEST, broken],
                                  capture_output=True, text=True, timeout=60)
            self.assertEqual(done.returncode, 1, done.stderr)
            self.assertIn("GET /v1/me/export", done.stderr)
            done = subprocess.run(["python3", GEN_ROUTES, "openapi", MANIFEST, OPENAPI],
                                  capture_output=True, text=True, timeout=60)
            self.assertEqual((done.returncode, done.stderr), (0, ""))


class OpenapiLinterTest(unittest.TestCase):
    """The linter is real: it passes the repository's document with the
    repository's rules and fails a copy broken in a way only it sees."""

    def lint(self, directory):
        env = dict(os.environ, REDOCLY_TELEMETRY="off", REDOCLY_SUPPRESS_UPDATE_NOTICE="true")
        return subprocess.run([REDOCLY, "lint", "--config", os.path.join(directory, "redocly.yaml"),
                               os.path.join(directory, "openapi.yaml")],
                              capture_output=True, text=True, timeout=120, env=env,
                              stdin=subprocess.DEVNULL)

    def test_a_broken_copy_fails_the_lint(self):
        self.assertTrue(os.access(REDOCLY, os.X_OK), f"no {REDOCLY} (scripts/deps.sh fetches it)")
        with tempfile.TemporaryDirectory() as tmp:
            for name in ("openapi.yaml", "redocly.yaml", ".redocly.lint-ignore.yaml"):
                shutil.copy(os.path.join(REPO, "docs", name), tmp)
            with open(os.path.join(tmp, "openapi.yaml"), encoding="utf-8") as f:
                text = f.read()
            # A response reference to a component that does not exist, and
            # an operation that states no security at all.
            text = text.replace("$ref: '#/components/responses/PoolDown'",
                                "$ref: '#/components/responses/PoolGone'", 1)
            lines = text.split("\n")
            at = lines.index("      operationId: listPlans")
            sec = next(i for i in range(at, at + 20) if lines[i] == "      security: []")
            del lines[sec]
            with open(os.path.join(tmp, "openapi.yaml"), "w", encoding="utf-8") as f:
                f.write("\n".join(lines))
            done = self.lint(tmp)
            self.assertNotEqual(done.returncode, 0, done.stdout + done.stderr)
            out = done.stdout + done.stderr
            self.assertIn("no-unresolved-refs", out)
            self.assertIn("security-defined", out)


if __name__ == "__main__":
    unittest.main()
