// app.js - the console's shell: sign-in, the header and navigation, the
// hash router, the live badge of unread updates. Pages live in user.js and
// admin.js; every page is a function (main, params) that fills main.

import * as api from "./api.js";
import { live, start as startLive, stop as stopLive } from "./live.js";
import { h, clear, field, form, errorBox, notice } from "./ui.js";
import * as userPages from "./user.js";
import * as adminPages from "./admin.js";

const main = document.getElementById("main");
const nav = document.getElementById("nav");
const who = document.getElementById("who");
const progress = document.getElementById("progress");
const liveState = document.getElementById("live-state");
const toasts = document.getElementById("toasts");

let signOutReason = null;
let unread = 0;

// Path pattern -> [page, roles allowed (null: any signed-in user), title].
const ROUTES = [
    ["/", userPages.overview, null, "Overview"],
    ["/profile", userPages.profile, null, "Profile"],
    ["/billing", userPages.billing, null, "Billing"],
    ["/updates", userPages.updates, null, "Updates"],
    ["/security", userPages.security, null, "Security"],
    ["/api-keys", userPages.apiKeys, null, "API keys"],
    ["/privacy", userPages.privacy, null, "Data & account"],
    ["/admin", adminPages.dashboard, ["admin", "finance"], "Dashboard"],
    ["/admin/users", adminPages.users, ["admin", "finance"], "Users"],
    ["/admin/users/:id", adminPages.userDetail, ["admin", "finance"], "User"],
    ["/admin/plans", adminPages.plans, ["admin", "finance"], "Plans"],
    ["/admin/billing", adminPages.finance, ["admin", "finance"], "Subscriptions"],
    ["/admin/updates", adminPages.updates, ["admin"], "Send updates"],
    ["/admin/webhooks", adminPages.webhooks, ["admin"], "Webhooks"],
    ["/admin/audit", adminPages.audit, ["admin"], "Audit log"],
];

const USER_NAV = [["/", "Overview"], ["/profile", "Profile"], ["/billing", "Billing"],
    ["/updates", "Updates"], ["/security", "Security"], ["/api-keys", "API keys"],
    ["/privacy", "Data & account"]];
const ADMIN_NAV = [["/admin", "Dashboard", ["admin", "finance"]],
    ["/admin/users", "Users", ["admin", "finance"]], ["/admin/plans", "Plans", ["admin", "finance"]],
    ["/admin/billing", "Subscriptions", ["admin", "finance"]],
    ["/admin/updates", "Send updates", ["admin"]], ["/admin/webhooks", "Webhooks", ["admin"]],
    ["/admin/audit", "Audit log", ["admin"]]];

function match(path) {
    for (const [pattern, page, roles, title] of ROUTES) {
        const names = [];
        const re = new RegExp("^" + pattern.replace(/:[a-z]+/g, (m) => {
            names.push(m.slice(1));
            return "([^/]+)";
        }) + "$");
        const m = re.exec(path);
        if (m) {
            const params = {};
            names.forEach((n, i) => { params[n] = decodeURIComponent(m[i + 1]); });
            return { page, roles, title, params };
        }
    }
    return null;
}

// Pages for a signed-out visitor: the mailed links and the forgotten
// password form.
const PUBLIC_ROUTES = {
    "/verify-email": userPages.verifyEmail,
    "/reset-password": userPages.resetPassword,
    "/forgot-password": userPages.forgotPassword,
};

// The query of the fragment (#/reset-password?token=...).
function hashQuery() {
    const q = location.hash.split("?")[1] || "";
    return new URLSearchParams(q);
}

function currentPath() {
    const p = location.hash.replace(/^#/, "").split("?")[0];
    return p || "/";
}

export function go(path) {
    if (location.hash === "#" + path) route();
    else location.hash = "#" + path;
}

function navLink(path, text) {
    const active = currentPath() === path;
    const a = h("a", { href: "#" + path, "aria-current": active ? "page" : null }, text);
    if (path === "/updates") {
        a.appendChild(h("span", {
            class: "count", id: "unread-badge", hidden: unread === 0,
            "aria-label": `${unread} unread`,
        }, String(unread)));
    }
    return h("li", {}, a);
}

function renderNav() {
    clear(nav);
    clear(who);
    if (!api.signedIn()) return;
    const u = api.user();
    nav.appendChild(h("ul", { "aria-label": "Account" }, USER_NAV.map(([p, t]) => navLink(p, t))));
    const adminItems = ADMIN_NAV.filter(([, , roles]) => roles.includes(u.role));
    if (adminItems.length) {
        nav.appendChild(h("h2", { class: "nav-title" }, u.role === "admin" ? "Admin" : "Finance"));
        nav.appendChild(h("ul", { "aria-label": "Admin" }, adminItems.map(([p, t]) => navLink(p, t))));
    }
    who.appendChild(h("span", { class: "email", id: "who-email" }, u.email));
    who.appendChild(h("span", { class: "badge" }, u.role));
    who.appendChild(h("button", { type: "button", id: "sign-out", onclick: () => api.signOut() }, "Sign out"));
}

export function setUnread(n) {
    unread = Math.max(0, n);
    const b = document.getElementById("unread-badge");
    if (b) {
        b.textContent = String(unread);
        b.hidden = unread === 0;
        b.setAttribute("aria-label", `${unread} unread`);
    }
}

async function refreshUnread() {
    try {
        const page = await api.call("GET", "/v1/updates", { query: { unread: "true", limit: 100 } });
        setUnread((page.data || []).length);
    } catch (_) {
        // The badge is a hint; the feed page shows any error.
    }
}

function signInPage() {
    document.title = "Sign in · stoa console";
    clear(main);
    const email = field("Email", { type: "email", name: "email", autocomplete: "username", required: true, id: "signin-email" });
    const password = field("Password", { type: "password", name: "password", autocomplete: "current-password", required: true, id: "signin-password" });
    const box = h("div", { class: "signin card" }, h("h1", {}, "Sign in"),
        signOutReason ? notice(signOutReason) : null);
    const f = form([email.wrap, password.wrap], "Sign in", async (_f, slot) => {
        const r = await api.signIn(email.input.value.trim(), password.input.value);
        if (r.mfaToken) {
            password.input.value = "";
            box.replaceChild(mfaForm(r.mfaToken), f);
        }
        slot.show(null);
    });
    f.id = "signin-form";
    box.appendChild(f);
    box.appendChild(h("p", {}, h("a", { href: "#/forgot-password", id: "forgot-link" }, "Forgot your password?")));
    main.appendChild(box);
    email.input.focus();
}

function mfaForm(mfaToken) {
    const code = field("Authentication code", {
        inputmode: "numeric", autocomplete: "one-time-code", id: "mfa-code", required: true,
    });
    const recovery = h("input", { type: "checkbox", id: "mfa-recovery" });
    const f = form([
        h("p", {}, "This account has two-factor authentication. Enter the 6-digit code from your authenticator app."),
        code.wrap,
        h("div", { class: "check" }, recovery, h("label", { for: "mfa-recovery" }, "Use a recovery code instead")),
    ], "Verify", async () => {
        await api.verifyMfa(mfaToken, code.input.value.trim(), recovery.checked);
    });
    f.id = "mfa-form";
    setTimeout(() => code.input.focus(), 0);
    return f;
}

async function route() {
    // The page being drawn; "ready" once its first data is in (tests and
    // assistive tools can tell a finished page from one still loading).
    const path = currentPath();
    main.dataset.route = path;
    main.removeAttribute("data-ready");
    try {
        await draw();
    } finally {
        if (main.dataset.route === path) main.dataset.ready = "1";
    }
}

async function draw() {
    renderNav();
    const publicPage = PUBLIC_ROUTES[currentPath()];
    if (publicPage) {
        clear(main);
        const params = Object.fromEntries(hashQuery());
        // The token leaves the address bar (and the history) at once.
        if (params.token) history.replaceState(null, "", location.pathname + "#" + currentPath());
        await publicPage(main, params);
        return;
    }
    if (!api.signedIn()) {
        signInPage();
        return;
    }
    const m = match(currentPath());
    clear(main);
    if (!m) {
        main.appendChild(h("div", { class: "card" }, h("h1", {}, "Not found"),
            h("p", {}, "No such page. "), h("a", { href: "#/" }, "Go to the overview")));
        return;
    }
    if (m.roles && !api.hasRole(...m.roles)) {
        main.appendChild(h("div", { class: "card" }, h("h1", {}, "Forbidden"),
            h("p", {}, "Your role cannot open this page.")));
        return;
    }
    document.title = `${m.title} · stoa console`;
    try {
        await m.page(main, m.params);
    } catch (err) {
        main.appendChild(errorBox(err));
    }
    const heading = main.querySelector("h1");
    if (heading) {
        heading.setAttribute("tabindex", "-1");
        heading.focus({ preventScroll: true });
    }
}

api.events.addEventListener("busy", (ev) => {
    progress.hidden = ev.detail === 0;
});

api.events.addEventListener("signedin", () => {
    signOutReason = null;
    startLive();
    refreshUnread();
    if (currentPath() === "/signin" || PUBLIC_ROUTES[currentPath()]) go("/");
    else route();
});

api.events.addEventListener("signedout", (ev) => {
    stopLive();
    unread = 0;
    signOutReason = ev.detail.reason;
    route();
});

live.addEventListener("state", (ev) => {
    liveState.dataset.state = ev.detail;
    liveState.textContent = ev.detail === "open" ? "live" : ev.detail === "connecting" ? "connecting…" : "offline";
    liveState.title = "Live updates: " + liveState.textContent;
});

// A short live notice (new signup, failed payment, plan change).
function toast(text) {
    // One notice for events that come together (subscription.updated and
    // entitlements.changed).
    if ([...toasts.children].some((t) => t.textContent === text)) return;
    const el = h("div", { class: "toast", role: "status" }, text);
    toasts.appendChild(el);
    setTimeout(() => el.remove(), 8000);
}

live.addEventListener("event", (ev) => {
    const { type, data } = ev.detail;
    if (type === "update.created") {
        setUnread(unread + 1);
        userPages.onLiveUpdate(data);
        toast("New update: " + (data.title || ""));
    } else if (type === "user.created") {
        toast("New signup: " + (data.email || data.id || ""));
    } else if (type === "invoice.payment_failed") {
        toast("A payment failed" + (data.customer_email ? ": " + data.customer_email : ""));
    } else if (type === "subscription.updated" || type === "entitlements.changed") {
        toast("Your subscription changed.");
        // The pages that show it read it again.
        if (["/", "/billing"].includes(currentPath())) route();
    }
    document.dispatchEvent(new CustomEvent("stoa-live", { detail: ev.detail }));
});

window.addEventListener("hashchange", route);
document.addEventListener("stoa-unread", (ev) => setUnread(ev.detail));
route();
