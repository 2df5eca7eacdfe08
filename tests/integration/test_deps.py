"""scripts/deps.sh on its install path, with apt-get and dpkg-query replaced
by recorders: a machine missing packages, with and without a policy-rc.d of
its own (Debian's cloud and container images ship one), and a failing apt.

The real install runs on a fresh machine; these cases pin the script's own
logic (exit status, the policy file created, kept or removed) without one.
Python 3.11 standard library only.
"""

import os
import stat
import subprocess
import tempfile
import unittest

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
DEPS_SH = os.path.join(REPO, "scripts", "deps.sh")

FAKE_DPKG_QUERY = """#!/bin/sh
# Every package is missing unless DEPS_ALL_PRESENT is set.
if [ -n "$DEPS_ALL_PRESENT" ]; then printf 'install ok installed'; exit 0; fi
exit 1
"""

# Records its arguments, and whether service starts were forbidden while it
# ran (the policy file exists, is executable and answers 101).
FAKE_APT_GET = """#!/bin/sh
echo "$*" >> "$DEPS_LOG"
if [ -x "$STOA_POLICY_RC" ]; then "$STOA_POLICY_RC"; echo "policy=$?" >> "$DEPS_LOG"
else echo "policy=absent" >> "$DEPS_LOG"; fi
case "$1" in install) exit "${DEPS_INSTALL_STATUS:-0}";; esac
exit 0
"""


@unittest.skipUnless(os.geteuid() == 0, "deps.sh installs as root")
class DepsInstallPathTest(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="stoa-deps-")
        self.addCleanup(subprocess.run, ["rm", "-rf", self.dir])
        self.bin = os.path.join(self.dir, "bin")
        os.mkdir(self.bin)
        for name, text in (("dpkg-query", FAKE_DPKG_QUERY), ("apt-get", FAKE_APT_GET)):
            path = os.path.join(self.bin, name)
            with open(path, "w") as f:
                f.write(text)
            os.chmod(path, 0o755)
        self.policy = os.path.join(self.dir, "policy-rc.d")
        self.log = os.path.join(self.dir, "apt.log")

    def run_deps(self, *args, **env):
        full = dict(os.environ, PATH=self.bin + ":" + os.environ["PATH"],
                    STOA_POLICY_RC=self.policy, DEPS_LOG=self.log, **env)
        return subprocess.run(["bash", DEPS_SH, *args], env=full, capture_output=True,
                              text=True, timeout=60, stdin=subprocess.DEVNULL)

    def apt_log(self):
        if not os.path.exists(self.log):
            return []
        with open(self.log) as f:
            return f.read().splitlines()

    def test_an_existing_policy_file_is_kept_and_the_run_succeeds(self):
        own = "#!/bin/sh\n# the image's own\nexit 101\n"
        with open(self.policy, "w") as f:
            f.write(own)
        os.chmod(self.policy, 0o755)
        done = self.run_deps()
        self.assertEqual(done.returncode, 0, done.stderr)
        with open(self.policy) as f:
            self.assertEqual(f.read(), own)
        log = self.apt_log()
        self.assertTrue(any(line.startswith("install ") for line in log), log)
        self.assertIn("policy=101", log)

    def test_a_policy_file_is_made_for_the_install_and_removed_after(self):
        done = self.run_deps()
        self.assertEqual(done.returncode, 0, done.stderr)
        self.assertFalse(os.path.exists(self.policy))
        log = self.apt_log()
        install = [line for line in log if line.startswith("install ")]
        self.assertEqual(len(install), 1, log)
        # Every package the build needs is asked for, zxcvbn-c among them.
        for pkg in ("libfcgi-dev", "nginx-dev", "postgresql-15", "libzxcvbn-dev"):
            self.assertIn(pkg, install[0].split())
        self.assertEqual(log.count("policy=101"), len(log) // 2, log)

    def test_a_failed_install_fails_and_still_cleans_up(self):
        done = self.run_deps(DEPS_INSTALL_STATUS="100")
        self.assertNotEqual(done.returncode, 0)
        self.assertFalse(os.path.exists(self.policy))

    def test_nothing_missing_means_no_apt_and_success(self):
        done = self.run_deps(DEPS_ALL_PRESENT="1")
        self.assertEqual(done.returncode, 0, done.stderr)
        self.assertEqual(self.apt_log(), [])
        self.assertFalse(os.path.exists(self.policy))

    def test_the_bench_packages_come_only_with_the_bench_argument(self):
        bench_only = ("python3-fastapi", "python3-uvicorn", "python3-asyncpg",
                      "python3-redis", "python3-jwt")
        done = self.run_deps()
        self.assertEqual(done.returncode, 0, done.stderr)
        plain = [line for line in self.apt_log() if line.startswith("install ")]
        os.remove(self.log)
        done = self.run_deps("bench")
        self.assertEqual(done.returncode, 0, done.stderr)
        bench = [line for line in self.apt_log() if line.startswith("install ")]
        self.assertEqual((len(plain), len(bench)), (1, 1))
        for pkg in bench_only:
            self.assertNotIn(pkg, plain[0].split())
            self.assertIn(pkg, bench[0].split())
        # The build's own packages still come with the bench list.
        self.assertIn("libfcgi-dev", bench[0].split())

    def test_an_unknown_argument_is_refused(self):
        done = self.run_deps("everything")
        self.assertEqual(done.returncode, 2)
        self.assertEqual(self.apt_log(), [])


if __name__ == "__main__":
    unittest.main()
