"""The browser console (/console/) in a real browser: Debian's headless
Chromium driven by Selenium (chromium, chromium-driver, python3-selenium,
installed by scripts/deps.sh) against a throwaway stack, through nginx and
TLS like any client.

A user signs in by keyboard, reads the profile and changes a notification
preference (checked through the API); an update an admin sends through the
API shows in the open console without a reload (badge and feed); the admin
suspends the user and the open console goes back to sign-in. The admin's
pages (dashboard with its charts, users) render, two refreshes at once send
one refresh request, no token is kept in storage, the console's own CSP is
sent and nothing breaks it, and the pages fit 360 px.

Screenshots of the main pages land in build/screenshots/ on every run.
Not skipped anywhere: without Chromium the class fails and says what to
install.
"""

import base64
import hashlib
import hmac
import os
import re
import shutil
import struct
import sys
import time
import unittest
import uuid

import billinglib as bl
import secrets

from authlib import SourceClient, SourceClientTestCase, mailed_links
from billinglib import StripeFake
from harness import OPEN_LIMITS, wait_until

REPO_DIR = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
SCREENSHOTS = os.path.join(REPO_DIR, "build", "screenshots")
GOOD_PASSWORD = bl.GOOD_PASSWORD
STRIPE_SECRET_KEY = "sk_test_" + secrets.token_hex(12)
STRIPE_WEBHOOK_SECRET = "whsec_" + secrets.token_hex(16)
# Generous: the waits end as soon as the page is there, and a loaded
# 2-core machine can take seconds to start Chromium and draw a page.
WAIT_S = 30
# The fan-out goes through the outbox and stoa-jobs, then nchan.
LIVE_S = 30


def totp(secret_b32, step):
    """RFC 6238 (SHA-1, 6 digits, 30 s) at a given step, as an app does."""
    text = secret_b32.strip().replace(" ", "").upper()
    key = base64.b32decode(text + "=" * (-len(text) % 8))
    mac = hmac.new(key, struct.pack(">Q", step), hashlib.sha1).digest()
    offset = mac[-1] & 0x0F
    value = struct.unpack(">I", mac[offset:offset + 4])[0] & 0x7FFFFFFF
    return str(value % 10 ** 6).zfill(6)


def _import_selenium():
    """Selenium from Debian's python3-selenium, also when this interpreter
    is not Debian's own (its dist-packages is then not on the path)."""
    try:
        import selenium  # noqa: F401  (only: is it there?)
    except ImportError:
        sys.path.append("/usr/lib/python3/dist-packages")
    from selenium import webdriver
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support import expected_conditions as EC
    from selenium.webdriver.support.ui import WebDriverWait
    return webdriver, TimeoutException, By, Keys, EC, WebDriverWait


def _browser_missing():
    missing = [name for name in ("chromium", "chromedriver") if shutil.which(name) is None]
    try:
        _import_selenium()
    except ImportError:
        missing.append("python3-selenium")
    return missing


class ConsoleTest(SourceClientTestCase):
    stack_env = OPEN_LIMITS

    @classmethod
    def setUpClass(cls):
        missing = _browser_missing()
        if missing:
            # A failure, never a skip: deps.sh installs these.
            raise RuntimeError("the console test needs Chromium: missing " + ", ".join(missing)
                               + " (run scripts/deps.sh: chromium chromium-driver python3-selenium)")
        (cls.webdriver, cls.TimeoutException, cls.By, cls.Keys, cls.EC,
         cls.WebDriverWait) = _import_selenium()
        # Billing talks to the fake Stripe (tests/fakes), as in test_billing.
        cls.fake = StripeFake(secret_key=STRIPE_SECRET_KEY, webhook_secret=STRIPE_WEBHOOK_SECRET)
        base = cls.fake.start()
        cls.addClassCleanup(cls.fake.stop)
        cls.stack_env = dict(OPEN_LIMITS, STOA_STRIPE_API_BASE=base,
                             STOA_STRIPE_SECRET_KEY=STRIPE_SECRET_KEY,
                             STOA_STRIPE_WEBHOOK_SECRET=STRIPE_WEBHOOK_SECRET)
        super().setUpClass()
        try:
            cls.fake.webhook_url = f"https://127.0.0.1:{cls.stack.https_port}" + bl.WEBHOOK_PATH
            os.makedirs(SCREENSHOTS, exist_ok=True)
            cls.base = f"https://127.0.0.1:{cls.stack.https_port}/console/"
            cls.admin_email = bl.unique_email("console-admin")
            proc = bl.create_user(cls.stack, cls.admin_email, "admin")
            if proc.returncode != 0:
                raise RuntimeError(proc.stderr)
            c = SourceClient(cls.stack)
            cls.user_email = bl.unique_email("console-user")
            resp = c.request("POST", "/v1/auth/register",
                             {"email": cls.user_email, "password": GOOD_PASSWORD, "name": "Ada Console"})
            if resp.status != 201:
                raise RuntimeError(f"register: {resp.status} {resp.body!r}")
            cls.user_id = resp.json["user"]["id"]
            c.close()
            opts = cls.webdriver.ChromeOptions()
            for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                        "--window-size=1280,900", "--disable-gpu", "--no-first-run",
                        "--disable-extensions", "--lang=en-US",
                        # No name but the stack's address resolves: a page
                        # sent to Stripe (the fake's URLs) stays on this
                        # machine, and no lookup leaves it.
                        "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1"):
                opts.add_argument(arg)
            # The stack's certificate is self-signed.
            opts.accept_insecure_certs = True
            opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
            cls.driver = cls.webdriver.Chrome(options=opts)
            cls.addClassCleanup(cls.driver.quit)
            cls.driver.set_script_timeout(WAIT_S)
        except BaseException:
            cls._failed = True
            raise

    # --- helpers -------------------------------------------------------------

    def wait(self, timeout=WAIT_S):
        return self.WebDriverWait(self.driver, timeout)

    def find(self, css, timeout=WAIT_S):
        try:
            return self.wait(timeout).until(
                self.EC.visibility_of_element_located((self.By.CSS_SELECTOR, css)))
        except self.TimeoutException:
            # What the page showed and logged, to tell a slow page from a
            # broken one.
            self.shot("failed-" + self.id().rsplit(".", 1)[-1])
            logs = [e["message"] for e in self.driver.get_log("browser")]
            main = self.text_of("body")[:500]
            self.fail(f"{css} did not show within {timeout}s at {self.driver.current_url}; "
                      f"page: {main!r}; browser log: {logs}")

    def shot(self, name):
        path = os.path.join(SCREENSHOTS, name + ".png")
        self.driver.save_screenshot(path)
        return path

    def api_token(self, email):
        c = self.client()
        token, resp = bl.login(c, email)
        self.assertIsNotNone(token, f"login {email}: {resp.status} {resp.body!r}")
        return c, token

    def register(self, tag, name):
        """A new client account (through the API); returns its email."""
        email = bl.unique_email(tag)
        resp = self.client().request("POST", "/v1/auth/register",
                                     {"email": email, "password": GOOD_PASSWORD, "name": name})
        self.assertEqual(resp.status, 201, resp.body)
        return email

    def open_console(self):
        """A fresh page: memory-only tokens mean signed out."""
        self.driver.get(self.base)
        return self.find("#signin-email")

    def sign_in(self, email, password=GOOD_PASSWORD):
        email_input = self.open_console()
        # By keyboard: type, Tab to the password, Enter submits.
        email_input.click()
        email_input.send_keys(email, self.Keys.TAB)
        active = self.driver.switch_to.active_element
        self.assertEqual(active.get_attribute("id"), "signin-password", "Tab reaches the password")
        active.send_keys(password, self.Keys.ENTER)
        self.find("#sign-out")
        self.wait().until(lambda d: self.text_of("#who-email") == email)

    def go(self, path):
        """Opens a page of the console and waits until it has drawn."""
        self.driver.execute_script("location.hash = arguments[0]", path)
        self.wait().until(lambda d: d.execute_script(
            "const m = document.getElementById('main');"
            "return m.dataset.route === arguments[0] && m.dataset.ready === '1'", path.split("?")[0]),
            f"{path} did not finish drawing")

    def csp_violations(self):
        return [e["message"] for e in self.driver.get_log("browser")
                if "Content Security Policy" in e.get("message", "")
                or "Refused to" in e.get("message", "")]

    def wait_live_open(self):
        self.wait().until(lambda d: d.find_element(self.By.ID, "live-state").get_attribute("data-state") == "open",
                          "the live channel did not open")

    # --- tests -----------------------------------------------------------------

    def test_01_headers_and_files(self):
        c = self.client()
        page = c.request("GET", "/console/")
        self.assertEqual(page.status, 200)
        self.assertEqual(page.header("Content-Type"), "text/html")
        csp = page.header("Content-Security-Policy")
        self.assertIn("default-src 'self'", csp)
        self.assertIn("frame-ancestors 'none'", csp)
        self.assertNotIn("unsafe-inline", csp)
        self.assertNotIn("unsafe-eval", csp)
        # The API's own headers on the console too.
        api = c.request("GET", "/healthz")
        for name in ("Strict-Transport-Security", "X-Content-Type-Options", "Referrer-Policy"):
            self.assertEqual(page.header(name), api.header(name), name)
        # Only one policy (a second would also apply and block the page).
        self.assertEqual(len(page.header_all("Content-Security-Policy")), 1)
        self.assertNotIn(b"<script>", page.body, "no inline script")
        self.assertNotIn(b"style=", page.body, "no inline style")
        js = c.request("GET", "/console/js/app.js")
        self.assertEqual(js.status, 200)
        self.assertEqual(js.header("Content-Type"), "text/javascript", "modules need a JS type")
        chart = c.request("GET", "/console/lib/chart.js/chart.min.js")
        self.assertEqual(chart.status, 200, "Chart.js from libjs-chart.js")
        self.assertIn(b"Chart.js v3", chart.body[:200])
        self.assertEqual(c.request("GET", "/console/nothing.js").status, 404)
        # Text from the API only ever goes in as text: no script of the
        # console writes HTML or evaluates strings.
        js_dir = os.path.join(REPO_DIR, "console", "js")
        for name in sorted(os.listdir(js_dir)):
            with open(os.path.join(js_dir, name)) as f:
                source = f.read()
            for risky in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "new Function"):
                self.assertNotIn(risky, source, f"console/js/{name}")
        # The vendored QR library is the pinned file its licence note names.
        vendor = os.path.join(REPO_DIR, "console", "vendor", "qrcode-generator-2.0.4")
        with open(os.path.join(vendor, "qrcode.mjs"), "rb") as f:
            digest = hashlib.sha256(f.read()).hexdigest()
        with open(os.path.join(vendor, "LICENSE")) as f:
            self.assertIn(f"sha256 {digest}", f.read())
        qr = c.request("GET", "/console/vendor/qrcode-generator-2.0.4/qrcode.mjs")
        self.assertEqual((qr.status, hashlib.sha256(qr.body).hexdigest()), (200, digest))

    def test_02_sign_in_errors_show_the_api_message(self):
        email_input = self.open_console()
        self.shot("sign-in")
        email_input.send_keys(self.user_email)
        self.driver.find_element(self.By.ID, "signin-password").send_keys("wrong password here", self.Keys.ENTER)
        err = self.find("#signin-form .error")
        self.assertIn("invalid_credentials", err.text)
        self.assertIn("HTTP 401", err.text)

    def test_03_user_profile_preference_live_update_and_suspension(self):
        d = self.driver
        self.sign_in(self.user_email)
        self.find(".grid .card")
        self.wait().until(lambda d: "Ada Console" in self.text_of("main h1"))
        self.wait_live_open()
        self.shot("user-overview")
        # No token in any storage the page can reach (memory only).
        stored = d.execute_script(
            "return [localStorage.length, sessionStorage.length, document.cookie]")
        self.assertEqual(stored, [0, 0, ""], "tokens are kept in memory only")

        # Profile: read it, change a notification preference.
        self.go("/profile")
        box = self.find("#pref-marketing")
        self.assertEqual(self.find("#profile-name").get_attribute("value"), "Ada Console")
        c, user_token = self.api_token(self.user_email)
        before = c.request("GET", "/v1/me", token=user_token).json["notification_prefs"].get("marketing", True)
        self.assertEqual(box.is_selected(), before, "a preference never set shows as on")
        box.send_keys(self.Keys.SPACE)  # by keyboard
        d.find_element(self.By.CSS_SELECTOR, "#prefs-form button[type=submit]").click()
        self.wait().until(lambda d: "Preferences saved" in self.text_of("#prefs-form .result"))
        after = c.request("GET", "/v1/me", token=user_token).json["notification_prefs"].get("marketing")
        self.assertEqual(after, not before, "the console's change reached the API")

        # A live update: the admin sends it through the API while the
        # user's console is open; the badge shows it without a reload.
        self.go("/")
        self.wait_live_open()
        d.execute_script("window.__stoaNoReload = 42")
        ac, admin_token = self.api_token(self.admin_email)
        title = "Live " + uuid.uuid4().hex[:8]
        sent = ac.request("POST", "/v1/admin/updates",
                          {"title": title, "body": "Arrives by itself", "audience": {"user_ids": [self.user_id]},
                           "action_required": True},
                          headers={"Idempotency-Key": str(uuid.uuid4())}, token=admin_token)
        self.assertEqual(sent.status, 201, sent.body)
        self.wait(LIVE_S).until(lambda d: self.text_of("#unread-badge") == "1",
                                "the unread badge did not count the live update")
        self.go("/updates")
        item = self.find(f"#feed [data-id='{sent.json['id']}']")
        self.assertIn(title, item.text)
        # A second update while the feed is open: it appears at the top.
        title2 = "Live " + uuid.uuid4().hex[:8]
        sent2 = ac.request("POST", "/v1/admin/updates",
                           {"title": title2, "body": "Also live", "audience": {"user_ids": [self.user_id]}},
                           headers={"Idempotency-Key": str(uuid.uuid4())}, token=admin_token)
        self.assertEqual(sent2.status, 201, sent2.body)
        first = self.wait(LIVE_S).until(
            lambda d: (lambda el: el if el.get_attribute("data-id") == sent2.json["id"] else False)(
                d.find_element(self.By.CSS_SELECTOR, "#feed > li")),
            "the second live update did not appear at the top of the open feed")
        self.assertIn(title2, first.text)
        self.wait().until(lambda d: self.text_of("#unread-badge") == "2")
        self.assertEqual(d.execute_script("return window.__stoaNoReload"), 42, "no reload happened")
        self.shot("user-updates")
        # Read and done go to the API.
        first.find_element(self.By.XPATH, ".//button[normalize-space()='Mark read']").click()
        self.wait().until(lambda d: self.text_of("#unread-badge") == "1")
        feed = {i["id"]: i for i in c.request("GET", "/v1/updates", token=user_token).json["data"]}
        self.assertIsNotNone(feed[sent2.json["id"]]["read_at"])
        self.assertIsNone(feed[sent.json["id"]]["read_at"])

        # The admin suspends the user: the open console signs out by itself.
        resp = ac.request("PATCH", f"/v1/admin/users/{self.user_id}", {"status": "suspended"}, token=admin_token)
        self.assertEqual(resp.status, 200, resp.body)
        try:
            self.find("#signin-email", timeout=LIVE_S)
            self.assertEqual(d.find_elements(self.By.ID, "sign-out"), [])
            self.assertEqual(d.execute_script("return window.__stoaNoReload"), 42,
                             "signed out by the page itself, not by a reload")
        finally:
            resp = ac.request("PATCH", f"/v1/admin/users/{self.user_id}", {"status": "active"}, token=admin_token)
            self.assertEqual(resp.status, 200, resp.body)
        self.assertEqual(self.csp_violations(), [])

    def test_04_admin_dashboard_and_users(self):
        d = self.driver
        self.sign_in(self.admin_email)
        self.go("/admin")
        self.find("#kpi-mrr")
        # Chart.js drew both charts (a canvas Chart.js owns has a chart).
        self.wait().until(lambda d: d.execute_script(
            "return !!(window.Chart && Chart.getChart('chart-revenue') && Chart.getChart('chart-signups'))"),
            "the dashboard's charts were not drawn")
        # Today counts: the accounts this test made today are signups.
        self.assertGreaterEqual(int(self.text_of("#kpi-signups .kpi-value")), 1, "today's signups")
        self.shot("admin-dashboard")
        self.go("/admin/users")
        search = self.find("#users-email")
        self.wait().until(lambda d: len(d.find_elements(self.By.CSS_SELECTOR, "main tbody tr")) >= 2)
        search.send_keys("console-user", self.Keys.ENTER)
        self.wait().until(lambda d: [r.text.split()[0] for r in d.find_elements(self.By.CSS_SELECTOR, "main tbody tr")]
                          == [self.user_email], "the email search did not narrow the list")
        self.shot("admin-users")
        d.find_element(self.By.LINK_TEXT, self.user_email).click()
        self.wait().until(lambda d: self.text_of("main h1") == self.user_email)
        self.find("#user-status-toggle")
        # Admins hear new signups live.
        self.wait_live_open()
        newcomer = bl.unique_email("console-newcomer")
        resp = self.client().request("POST", "/v1/auth/register",
                                     {"email": newcomer, "password": GOOD_PASSWORD, "name": "New"})
        self.assertEqual(resp.status, 201, resp.body)
        self.wait(LIVE_S).until(lambda d: newcomer in self.text_of("#toasts"), "no live notice of the signup")
        self.assertEqual(self.csp_violations(), [])

    def test_05_one_refresh_in_flight(self):
        self.sign_in(self.user_email)
        # Count the refresh requests the page sends while two refreshes and
        # two calls with an expired access token race.
        result = self.driver.execute_async_script("""
            const done = arguments[arguments.length - 1];
            (async () => {
                const api = await import('/console/js/api.js');
                let refreshes = 0;
                const real = window.fetch;
                window.fetch = (u, o) => {
                    if (String(u).startsWith('/v1/auth/refresh')) refreshes++;
                    return real(u, o);
                };
                try {
                    const [a, b] = await Promise.all([api.refreshTokens(), api.refreshTokens()]);
                    const me = await Promise.all([api.call('GET', '/v1/me'), api.call('GET', '/v1/me')]);
                    done({refreshes, same: a === b, emails: me.map((m) => m.email), signedIn: api.signedIn()});
                } catch (e) {
                    done({error: String(e && e.message || e)});
                } finally {
                    window.fetch = real;
                }
            })();
        """)
        self.assertNotIn("error", result, result)
        self.assertEqual(result["refreshes"], 1, f"two refreshes at once must send one request: {result}")
        self.assertTrue(result["same"])
        self.assertEqual(result["emails"], [self.user_email] * 2)
        self.assertTrue(result["signedIn"])
        # The session is still alive afterwards: a call through the page works.
        self.go("/security")
        self.find("#sign-out-others")
        self.wait().until(lambda d: any("this session" in r for r in self.row_texts()))
        # A second session, then "sign out everywhere": both end, this
        # console returns to sign-in.
        c, other = self.api_token(self.user_email)
        self.assertEqual(c.request("GET", "/v1/me", token=other).status, 200)
        self.find("#sign-out-everywhere").click()
        self.find("#signin-email")
        deadline = time.monotonic() + 5
        while c.request("GET", "/v1/me", token=other).status != 401 and time.monotonic() < deadline:
            time.sleep(0.1)
        self.assertEqual(c.request("GET", "/v1/me", token=other).status, 401, "the other session ended")

    def test_06_narrow_screen(self):
        d = self.driver
        d.set_window_size(360, 800)
        try:
            self.sign_in(self.admin_email)
            for path in ("/", "/profile", "/billing", "/updates", "/security", "/admin", "/admin/users"):
                self.go(path)
                self.find("main h1")
                self.wait().until(lambda d: not d.find_element(self.By.ID, "progress").is_displayed())
                over = d.execute_script("return document.documentElement.scrollWidth - window.innerWidth")
                self.assertLessEqual(over, 0, f"{path} overflows 360 px by {over} px")
            self.go("/")
            self.find("main h1")
            self.shot("narrow-overview")
        finally:
            d.set_window_size(1280, 900)

    def text_of(self, css):
        """The text of the first element matching css, read at once ("" when
        none): safe while the page replaces elements."""
        return self.driver.execute_script(
            "const e = document.querySelector(arguments[0]); return e ? e.textContent : ''", css)

    def row_texts(self):
        """The text of each row of the page's tables, read at once (rows
        are replaced as lists reload)."""
        return self.driver.execute_script(
            "return [...document.querySelectorAll('main tbody tr')].map((r) => r.textContent)")

    def js_errors(self):
        """Uncaught script errors the page logged (network answers such as
        an expected 404 are the API's business, not the page's)."""
        return [e["message"] for e in self.driver.get_log("browser")
                if e.get("level") == "SEVERE" and e.get("source") != "network"]

    def test_07_every_page_renders_for_an_admin(self):
        d = self.driver
        self.sign_in(self.admin_email)
        d.get_log("browser")
        pages = ["/", "/profile", "/billing", "/updates", "/security", "/api-keys", "/privacy",
                 "/admin", "/admin/users", f"/admin/users/{self.user_id}", "/admin/plans",
                 "/admin/billing", "/admin/updates", "/admin/webhooks", "/admin/audit"]
        for path in pages:
            with self.subTest(path=path):
                self.go(path)
                self.find("main h1")
                self.wait().until(lambda d: not d.find_element(self.By.ID, "progress").is_displayed())
                errors = [e.text for e in d.find_elements(self.By.CSS_SELECTOR, "main .error")]
                self.assertEqual(errors, [], f"{path} shows an error")
                # No value the page failed to format (JSON shown as code aside).
                texts = d.execute_script("""
                    const out = [];
                    const walk = document.createTreeWalker(document.querySelector('main'), NodeFilter.SHOW_TEXT);
                    for (let n = walk.nextNode(); n; n = walk.nextNode())
                        if (!n.parentElement.closest('code, pre')) out.push(n.nodeValue);
                    return out;""")
                bad = [t for t in texts if re.search(r"\b(null|undefined|NaN)\b|\[object Object\]", t)]
                self.assertEqual(bad, [], f"{path} shows an unformatted value")
        self.assertEqual(self.js_errors(), [])
        self.assertEqual(self.csp_violations(), [])
        # The audit log lists what happened (newest first, the console's
        # sign-ins among them) and filters by action.
        self.go("/admin/audit")
        self.find("#audit-action").send_keys("login.succeeded", self.Keys.ENTER)
        self.wait().until(lambda d: (lambda rows: rows and all("login.succeeded" in r for r in rows))(
            self.row_texts()), "the action filter")

    def test_08_api_key_and_webhook_secrets_shown_once(self):
        d = self.driver
        self.sign_in(self.admin_email)
        self.go("/api-keys")
        self.find("#key-name").send_keys("console ci", self.Keys.ENTER)
        key = self.find(".secret-box code.secret").text
        self.assertTrue(key.startswith("stoa_"), key)
        c = self.client()
        resp = c.request("POST", "/v1/auth/token", {"grant_type": "api_key", "api_key": key})
        self.assertEqual(resp.status, 200, "the key shown works")
        self.wait().until(lambda d: any("console ci" in r for r in self.row_texts()))
        self.assertFalse(any(key in r for r in self.row_texts()), "listed by prefix only")
        row = next(r for r in d.find_elements(self.By.CSS_SELECTOR, "main tbody tr") if "console ci" in r.text)
        d.execute_script("window.confirm = () => true")
        row.find_element(self.By.XPATH, ".//button[normalize-space()='Revoke']").click()
        self.wait().until(lambda d: not any("console ci" in r for r in self.row_texts()), "the revoked key left the list")
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            resp = c.request("POST", "/v1/auth/token", {"grant_type": "api_key", "api_key": key})
            if resp.status == 401:
                break
        self.assertEqual(resp.status, 401, "the revoked key no longer works")

        self.go("/admin/webhooks")
        self.find("#webhook-url").send_keys("http://127.0.0.1:9/hook")
        d.find_element(self.By.CSS_SELECTOR, "main form button[type=submit]").click()
        box = self.find(".secret-box code.secret")
        self.assertTrue(box.text.startswith("whsec_"), box.text)
        first = box.text
        self.wait().until(lambda d: any("127.0.0.1:9/hook" in r for r in self.row_texts()))
        row = next(r for r in d.find_elements(self.By.CSS_SELECTOR, "main tbody tr") if "127.0.0.1:9/hook" in r.text)
        row.find_element(self.By.XPATH, ".//button[normalize-space()='Rotate secret']").click()
        self.wait().until(lambda d: self.text_of(".secret-box code.secret") not in ("", first))
        row.find_element(self.By.XPATH, ".//button[normalize-space()='Deliveries']").click()
        self.find("main section:last-of-type h2")

    def test_09_lists_page_by_cursor(self):
        d = self.driver
        c = self.client()
        tag = "console-page-" + uuid.uuid4().hex[:6]
        for i in range(22):
            resp = c.request("POST", "/v1/auth/register",
                             {"email": f"{tag}.{i}@example.com", "password": GOOD_PASSWORD, "name": f"P {i}"})
            self.assertEqual(resp.status, 201, resp.body)
        self.sign_in(self.admin_email)
        self.go("/admin/users")
        self.find("#users-email").send_keys(tag, self.Keys.ENTER)
        rows = lambda d: d.find_elements(self.By.CSS_SELECTOR, "main tbody tr")  # noqa: E731
        self.wait().until(lambda d: len(rows(d)) == 20, "the first page holds 20")
        more = self.find("main button.more")
        more.click()
        self.wait().until(lambda d: len(rows(d)) == 22, "Load more fetched the next page")
        self.wait().until(lambda d: not d.find_element(self.By.CSS_SELECTOR, "main button.more").is_displayed())
        emails = {r.text.split()[0] for r in rows(d)}
        self.assertEqual(emails, {f"{tag}.{i}@example.com" for i in range(22)}, "each user once")

    def test_10_mfa_enrolment_and_sign_in_with_a_code(self):
        d = self.driver
        c = self.client()
        email = self.register("console-mfa", "Mo")
        self.sign_in(email)
        self.go("/security")
        self.find("#mfa-password").send_keys(GOOD_PASSWORD, self.Keys.ENTER)
        secret = self.find("#mfa-secret").text
        # The QR code was drawn (dark modules on the canvas).
        dark = d.execute_script("""
            const c = document.querySelector('canvas.qr');
            const px = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
            let n = 0; for (let i = 0; i < px.length; i += 4) if (px[i] < 128) n++;
            return n;""")
        self.assertGreater(dark, 1000, "the QR code has modules")
        step = int(time.time()) // 30
        self.find("#mfa-confirm-code").send_keys(totp(secret, step), self.Keys.ENTER)
        codes = self.find(".secret-box code.secret").text.split()
        self.assertEqual(len(codes), 10, "ten recovery codes shown")
        resp = c.request("POST", "/v1/auth/login", {"email": email, "password": GOOD_PASSWORD})
        self.assertEqual(resp.status, 401)
        self.assertEqual(resp.json["error"]["code"], "mfa_required", "MFA is on for the API too")
        # Sign in again through the console: the second step asks for a code.
        email_input = self.open_console()
        email_input.send_keys(email)
        d.find_element(self.By.ID, "signin-password").send_keys(GOOD_PASSWORD, self.Keys.ENTER)
        code_input = self.find("#mfa-code")
        self.assertEqual(d.switch_to.active_element.get_attribute("id"), "mfa-code", "focus moves to the code")
        code_input.send_keys("000000", self.Keys.ENTER)
        self.find("#mfa-form .error")
        code_input.clear()
        code_input.send_keys(totp(secret, step + 1), self.Keys.ENTER)
        self.find("#sign-out")
        self.assertEqual(d.find_element(self.By.ID, "who-email").text, email)

    def test_11_admin_plans_and_updates(self):
        d = self.driver
        self.sign_in(self.admin_email)
        # A plan and a price made in the console reach the public catalogue.
        self.go("/admin/plans")
        key = "cons" + uuid.uuid4().hex[:6]
        self.find("#plan-key").send_keys(key)
        d.find_element(self.By.ID, "plan-name").send_keys("Console plan")
        self.find("#plan-create button[type=submit]").click()
        self.wait().until(lambda d: "Plan created" in self.text_of("#plan-create .result"))
        card = self.find(f"[data-plan='{key}']")
        card.find_element(self.By.XPATH, ".//summary[normalize-space()='Add a price']").click()
        card = self.find(f"[data-plan='{key}']")
        card.find_element(self.By.CSS_SELECTOR, "form.price input[type=number]").send_keys("1500")
        card.find_element(self.By.CSS_SELECTOR, "form.price button[type=submit]").click()
        self.wait().until(lambda d: "15.00" in self.text_of(f"[data-plan='{key}']"), "the price shows")
        plans = self.client().request("GET", "/v1/billing/plans").json["data"]
        mine = [p for p in plans if p["key"] == key]
        self.assertEqual(len(mine), 1, "the plan is in the catalogue")
        self.assertEqual([(p["amount"], p["interval"]) for p in mine[0]["prices"]], [(1500, "month")])
        # Sync pushes it to (the fake) Stripe.
        self.find(f"[data-plan='{key}']").find_element(
            self.By.XPATH, ".//button[normalize-space()='Sync to Stripe']").click()
        self.wait().until(lambda d: "Stripe product prod_" in self.text_of(f"[data-plan='{key}']"),
                          "the synced plan shows its Stripe product")
        self.assertEqual(len(bl.fake_objects(self.fake, "product", metadata__plan_key=key)), 1)

        # An update composed in the console: sent, then its delivery shows.
        self.go("/admin/updates")
        title = "Composed " + uuid.uuid4().hex[:6]
        self.find("#update-title").send_keys(title)
        d.find_element(self.By.ID, "update-body").send_keys("From the console")
        self.find("#update-audience option[value=user_ids]").click()
        d.find_element(self.By.ID, "update-audience-value").send_keys(self.user_id)
        d.find_element(self.By.CSS_SELECTOR, "#update-form button[type=submit]").click()
        self.wait().until(lambda d: "Sent to 1 recipient" in self.text_of("#update-form .result"))
        self.wait(LIVE_S).until(lambda d: any(title in r and "1/1" in r and "fanning out" not in r
                                              for r in self.row_texts()),
                                "the delivery status did not reach 1/1")
        c, token = self.api_token(self.user_email)
        feed = c.request("GET", "/v1/updates", token=token).json["data"]
        item = next(i for i in feed if i["title"] == title)
        self.assertEqual(c.request("POST", f"/v1/updates/{item['id']}/read", token=token).status, 200)
        row = next(r for r in d.find_elements(self.By.CSS_SELECTOR, "main tbody tr") if title in r.text)
        row.find_element(self.By.XPATH, ".//button[normalize-space()='Delivery status']").click()
        self.wait().until(lambda d: "Read1" in self.text_of("#update-detail").replace(" ", ""),
                          "the delivery status counts the read")

    def test_12_finance_sees_the_read_only_parts(self):
        d = self.driver
        email = bl.unique_email("console-finance")
        proc = bl.create_user(self.stack, email, "finance")
        self.assertEqual(proc.returncode, 0, proc.stderr)
        self.sign_in(email)
        nav = d.find_element(self.By.ID, "nav").text
        for shown in ("Dashboard", "Users", "Plans", "Subscriptions"):
            self.assertIn(shown, nav)
        for hidden in ("Send updates", "Webhooks", "Audit log"):
            self.assertNotIn(hidden, nav)
        self.go("/admin")
        self.find("#kpi-mrr")
        self.go(f"/admin/users/{self.user_id}")
        self.wait().until(lambda d: self.text_of("main h1") == self.user_email)
        self.assertEqual(d.find_elements(self.By.ID, "user-status-toggle"), [], "no suspend for finance")
        self.go("/admin/plans")
        self.find("main .plan")
        self.assertEqual(d.find_elements(self.By.ID, "plan-key"), [], "no plan editing for finance")
        self.go("/admin/audit")
        self.wait().until(lambda d: "Forbidden" in self.text_of("main h1"))

    def mailed_link(self, to, path):
        links = []

        def arrived():
            links[:] = mailed_links(self.stack, to, path)
            return bool(links)
        ok, _ = wait_until(arrived, LIVE_S, interval=0.1)
        self.assertTrue(ok, f"no {path} link was mailed to {to}")
        return f"https://127.0.0.1:{self.stack.https_port}{links[-1]}"

    def test_13_mailed_links_open_the_console(self):
        d = self.driver
        c = self.client()
        email = self.register("console-links", "Lin")
        # The verification link: the console verifies the address.
        d.get(self.mailed_link(email, "/verify-email"))
        self.wait().until(lambda d: "verified" in self.text_of(".signin .result"), "the address was not verified")
        self.assertNotIn("token=", d.current_url, "the token leaves the address bar")
        _, token = self.api_token(email)
        self.assertTrue(c.request("GET", "/v1/me", token=token).json["email_verified"])

        # Forgotten password, from the sign-in page to a new password.
        self.open_console()
        self.find("#forgot-link").click()
        self.find("#forgot-email").send_keys(email, self.Keys.ENTER)
        self.wait().until(lambda d: "on its way" in self.text_of("#forgot-form .result"))
        d.get(self.mailed_link(email, "/reset-password"))
        field = self.find("#reset-password")
        self.assertNotIn("token=", d.current_url)
        field.send_keys("too short", self.Keys.ENTER)
        err = self.find("#reset-form .error")
        self.assertIn("password", err.text, "the field the API refused is named")
        field.clear()
        new_password = "correct horse battery staple " + uuid.uuid4().hex[:4]
        field.send_keys(new_password, self.Keys.ENTER)
        self.wait().until(lambda d: "password was changed" in self.text_of("#reset-form .result"))
        self.sign_in(email, new_password)

    def test_14_change_plan_in_a_new_tab_and_see_it_live(self):
        d = self.driver
        c = self.client()
        _, admin = self.api_token(self.admin_email)
        pro = {p["key"]: p for p in c.request("GET", "/v1/billing/plans").json["data"]}["pro"]
        resp = c.request("POST", f"/v1/admin/plans/{pro['id']}/sync", token=admin)
        self.assertEqual(resp.status, 200, resp.body)
        self.assertTrue(self.fake.flush(30), "the fake's webhooks did not drain")
        email = self.register("console-payer", "Pay")
        self.sign_in(email)
        self.go("/billing")
        self.wait_live_open()
        d.execute_script("window.__stoaNoReload = 7")
        console_tab = d.current_window_handle

        def stripe_tab(prefix):
            self.wait().until(lambda d: len(d.window_handles) == 2, "no new tab for Stripe")
            other = next(h for h in d.window_handles if h != console_tab)
            d.switch_to.window(other)
            try:
                self.wait().until(lambda d: d.current_url.startswith(prefix), f"the tab did not go to {prefix}")
                return d.current_url
            finally:
                d.close()
                d.switch_to.window(console_tab)

        self.find("[data-plan='pro'] button.primary").click()
        url = stripe_tab("https://checkout.stripe.test/c/pay/")
        done = self.fake.complete_checkout(url.rsplit("/", 1)[1])
        self.assertTrue(all(ev["status"] == 200 for ev in done["events"]), done["events"])
        # The console tab, still signed in, shows the subscription by itself.
        self.wait(LIVE_S).until(lambda d: self.text_of(".card .badge.active") == "active",
                                "the new subscription did not show without a reload")
        self.assertEqual(d.execute_script("return window.__stoaNoReload"), 7, "no reload happened")
        self.wait().until(lambda d: "your plan" in self.text_of("[data-plan='pro']"), "pro is marked as the plan")

        # The first invoice reaches the payment history (invoice.paid is
        # applied after the subscription: look again until it is there).
        def invoice_listed(d):
            self.go("/profile")
            self.go("/billing")
            return any("paid" in r for r in self.row_texts())
        self.wait(LIVE_S).until(invoice_listed, "the paid invoice is not listed")
        links = [a.get_attribute("href") for a in d.find_elements(self.By.CSS_SELECTOR, "main tbody tr a")]
        self.assertTrue(links and all(u.startswith("https://") for u in links), links)
        d.execute_script("document.querySelector('main tbody tr').scrollIntoView()")
        self.shot("user-billing")
        d.find_element(self.By.XPATH, "//button[normalize-space()='Manage billing']").click()
        stripe_tab("https://billing.stripe.test/p/session/")
        self.assertTrue(d.execute_script("return !!document.getElementById('sign-out')"), "still signed in")


if __name__ == "__main__":
    unittest.main()
