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

import json
import os
import shutil
import sys
import unittest
import uuid

import billinglib as bl
from authlib import SourceClient, SourceClientTestCase
from harness import OPEN_LIMITS

REPO_DIR = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
SCREENSHOTS = os.path.join(REPO_DIR, "build", "screenshots")
GOOD_PASSWORD = bl.GOOD_PASSWORD
WAIT_S = 15
# The fan-out goes through the outbox and stoa-jobs, then nchan.
LIVE_S = 20


def _import_selenium():
    """Selenium from Debian's python3-selenium, also when this interpreter
    is not Debian's own (its dist-packages is then not on the path)."""
    try:
        import selenium  # noqa: F401
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
        super().setUpClass()
        try:
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
                        "--disable-extensions", "--lang=en-US"):
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
        return self.wait(timeout).until(
            self.EC.visibility_of_element_located((self.By.CSS_SELECTOR, css)),
            f"{css} did not show within {timeout}s")

    def shot(self, name):
        path = os.path.join(SCREENSHOTS, name + ".png")
        self.driver.save_screenshot(path)
        return path

    def api_token(self, email):
        c = self.client()
        token, resp = bl.login(c, email)
        self.assertIsNotNone(token, f"login {email}: {resp.status} {resp.body!r}")
        return c, token

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
        self.wait().until(lambda d: d.find_element(self.By.ID, "who-email").text == email)

    def go(self, path):
        self.driver.execute_script("location.hash = arguments[0]", path)

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
        self.assertEqual(c.request("GET", "/console/../stoa.conf").status in (400, 404), True)

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
        self.wait().until(lambda d: "Ada Console" in d.find_element(self.By.CSS_SELECTOR, "main h1").text)
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
        self.wait().until(lambda d: "Preferences saved" in d.find_element(self.By.CSS_SELECTOR, "#prefs-form .result").text)
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
        self.wait(LIVE_S).until(lambda d: d.find_element(self.By.ID, "unread-badge").text == "1",
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
        self.wait().until(lambda d: d.find_element(self.By.ID, "unread-badge").text == "2")
        self.assertEqual(d.execute_script("return window.__stoaNoReload"), 42, "no reload happened")
        self.shot("user-updates")
        # Read and done go to the API.
        first.find_element(self.By.XPATH, ".//button[normalize-space()='Mark read']").click()
        self.wait().until(lambda d: d.find_element(self.By.ID, "unread-badge").text == "1")
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
        self.shot("admin-dashboard")
        self.go("/admin/users")
        search = self.find("#users-email")
        self.wait().until(lambda d: len(d.find_elements(self.By.CSS_SELECTOR, "main tbody tr")) >= 2)
        search.send_keys("console-user", self.Keys.ENTER)
        self.wait().until(lambda d: [r.text.split()[0] for r in d.find_elements(self.By.CSS_SELECTOR, "main tbody tr")]
                          == [self.user_email], "the email search did not narrow the list")
        self.shot("admin-users")
        d.find_element(self.By.LINK_TEXT, self.user_email).click()
        self.wait().until(lambda d: d.find_element(self.By.CSS_SELECTOR, "main h1").text == self.user_email)
        self.find("#user-status-toggle")
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
        self.wait().until(lambda d: any("this session" in r.text for r in d.find_elements(self.By.CSS_SELECTOR, "main tbody tr")))

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


if __name__ == "__main__":
    unittest.main()
