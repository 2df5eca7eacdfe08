// user.js - the pages of any signed-in user: overview, profile and
// notification preferences, billing, the updates feed, security (sessions
// and MFA), API keys, data export and erasure.

import * as api from "./api.js";
import { qrcode } from "../vendor/qrcode-generator-2.0.4/qrcode.mjs";
import {
    h, clear, field, checkbox, form, button, working, resultSlot, section, table,
    pagedTable, secretBox, badge, dl, when, money, errorBox, notice, safeUrl,
} from "./ui.js";

const PREFS = [
    ["product_updates", "Product updates", "News and announcements (they always reach your feed)."],
    ["billing", "Billing", "Receipts, failed payments and trial reminders."],
    ["marketing", "Marketing", "Offers and newsletters."],
    ["security", "Security", "Sign-ins, password and MFA changes (always sent)."],
];

function unreadChanged(n) {
    document.dispatchEvent(new CustomEvent("stoa-unread", { detail: n }));
}

// --- overview ---------------------------------------------------------------

export async function overview(main) {
    const u = api.user();
    main.appendChild(h("h1", {}, `Welcome, ${u.name || u.email}`));
    const grid = h("div", { class: "grid" });
    main.appendChild(grid);
    const [me, sub, ent, feed] = await Promise.allSettled([
        api.call("GET", "/v1/me"),
        api.call("GET", "/v1/billing/subscription"),
        api.call("GET", "/v1/billing/entitlements"),
        api.call("GET", "/v1/updates", { query: { unread: "true", limit: 5 } }),
    ]);
    grid.appendChild(section("Profile", me.status === "fulfilled" ? dl([
        ["Email", me.value.email],
        ["Name", me.value.name || "—"],
        ["Email verified", me.value.email_verified ? "yes" : "no"],
        ["Two-factor", me.value.mfa_enabled ? "on" : "off"],
    ]) : errorBox(me.reason), h("a", { href: "#/profile" }, "Edit profile")));
    grid.appendChild(section("Subscription", subscriptionFacts(sub, ent), h("a", { href: "#/billing" }, "Billing")));
    grid.appendChild(section("Unread updates", feed.status === "fulfilled"
        ? (feed.value.data.length ? h("ul", { class: "plain" }, feed.value.data.map((i) => h("li", {}, i.title)))
            : h("p", { class: "muted" }, "You are all caught up."))
        : errorBox(feed.reason), h("a", { href: "#/updates" }, "All updates")));
}

function subscriptionFacts(sub, ent) {
    if (sub.status === "rejected") {
        if (sub.reason.status === 404) return h("p", { class: "muted" }, "No subscription: you are on the free tier.");
        return errorBox(sub.reason);
    }
    const s = sub.value;
    const plan = s.plan && typeof s.plan === "object" ? s.plan.name || s.plan.key : s.plan;
    const facts = [["Plan", plan || "—"], ["Status", badge(s.status, s.status)],
        ["Renews / ends", when(s.current_period_end)]];
    if (s.cancel_at_period_end) facts.push(["Cancels", "at period end"]);
    if (s.trial_end) facts.push(["Trial ends", when(s.trial_end)]);
    const out = [dl(facts)];
    if (ent && ent.status === "fulfilled") out.push(features(ent.value.features));
    return out;
}

function features(f) {
    const entries = Object.entries(f || {});
    if (!entries.length) return h("p", { class: "muted" }, "No features.");
    return h("ul", { class: "features" }, entries.map(([k, v]) =>
        h("li", {}, h("span", { class: "feature" }, k), ": ", typeof v === "object" ? JSON.stringify(v) : String(v))));
}

// --- profile ----------------------------------------------------------------

export async function profile(main) {
    main.appendChild(h("h1", {}, "Profile"));
    const me = await api.call("GET", "/v1/me");
    const name = field("Name", { value: me.name || "", autocomplete: "name", id: "profile-name" });
    main.appendChild(section("Your details", dl([["Email", me.email], ["Member since", when(me.created_at)],
        ["Role", me.role]]),
    form([name.wrap], "Save", async (_f, slot) => {
        const u = await api.call("PATCH", "/v1/me", { body: { name: name.input.value.trim() } });
        api.setUser(u);
        slot.show("Saved.");
    })));

    const boxes = PREFS.map(([key, label, help]) => {
        // A preference never set is on (the mailer reads it so).
        // Security mails always go (SPEC §8): shown, not offered.
        const c = checkbox(`${label} — ${help}`, key === "security" || !me.notification_prefs || me.notification_prefs[key] !== false,
            { id: "pref-" + key, name: key, disabled: key === "security" });
        return [key, c];
    });
    const prefs = form(boxes.map(([, c]) => c.wrap), "Save preferences", async (_f, slot) => {
        const body = { notification_prefs: {} };
        for (const [key, c] of boxes) if (!c.input.disabled) body.notification_prefs[key] = c.input.checked;
        const u = await api.call("PATCH", "/v1/me", { body });
        api.setUser(u);
        for (const [key, c] of boxes) if (!c.input.disabled) c.input.checked = u.notification_prefs[key] !== false;
        slot.show("Preferences saved.");
    });
    prefs.id = "prefs-form";
    main.appendChild(section("Email notifications", prefs));

    const cur = field("Current password", { type: "password", autocomplete: "current-password" });
    const next = field("New password (12 characters or more; a passphrase works well)",
        { type: "password", autocomplete: "new-password" });
    main.appendChild(section("Password", form([cur.wrap, next.wrap], "Change password", async (f, slot) => {
        await api.call("POST", "/v1/auth/password/change",
            { body: { current_password: cur.input.value, new_password: next.input.value } });
        f.reset();
        slot.show("Password changed; your other sessions were signed out.");
    })));
}

// --- billing ----------------------------------------------------------------

// Stripe's pages (Checkout, the billing portal) open in a new tab: this tab,
// whose tokens live only in memory, stays signed in and shows the new
// subscription as soon as Stripe reports it (subscription.updated on the
// live channel). The tab is opened at the click (a popup blocker allows
// that) and sent to Stripe once the API has answered; it gets no opener.
async function openStripe(btn, slot, fetchSession) {
    const tab = window.open("", "_blank");
    if (tab) tab.opener = null;
    const r = await working(btn, slot, fetchSession);
    const url = r && safeUrl(r.url);
    if (!url) {
        if (tab) tab.close();
        if (r) slot.show(new Error("The billing service answered no usable address."));
        return;
    }
    if (tab) {
        tab.location.href = url;
        slot.show("Stripe opened in a new tab. This page follows what happens there.");
    } else {
        location.assign(url);
    }
}

export async function billing(main) {
    main.appendChild(h("h1", {}, "Billing"));
    const [sub, ent, plans] = await Promise.allSettled([
        api.call("GET", "/v1/billing/subscription"),
        api.call("GET", "/v1/billing/entitlements"),
        api.call("GET", "/v1/billing/plans"),
    ]);
    const portalSlot = resultSlot();
    const portal = button("Manage billing", () => openStripe(portal, portalSlot,
        () => api.call("POST", "/v1/billing/portal")));
    const subCard = section("Subscription", subscriptionFacts(sub, ent), h("div", { class: "actions" }, portal), portalSlot);
    if (sub.status === "fulfilled" && !sub.value.cancel_at_period_end
        && ["active", "trialing", "past_due"].includes(sub.value.status)) {
        const cancelSlot = resultSlot();
        const cancel = button("Cancel at period end", () => {
            if (!confirm("Cancel the subscription at the end of the current period?")) return;
            working(cancel, cancelSlot, async () => {
                await api.call("POST", "/v1/billing/subscription/cancel");
                cancelSlot.show("The subscription will end at the end of the period.");
            });
        }, { class: "danger" });
        subCard.appendChild(h("div", { class: "actions" }, cancel));
        subCard.appendChild(cancelSlot);
    }
    main.appendChild(subCard);

    const plansCard = section("Change plan");
    if (plans.status === "rejected") plansCard.appendChild(errorBox(plans.reason));
    else {
        const slot = resultSlot();
        const grid = h("div", { class: "plans" });
        const current = sub.status === "fulfilled" && ["active", "trialing", "past_due"].includes(sub.value.status)
            ? sub.value.plan : null;
        const isCurrent = (p) => current !== null && (current === p.key || current === p.name
            || (typeof current === "object" && (current.key === p.key || current.id === p.id)));
        for (const p of plans.value.data || []) {
            if (isCurrent(p)) {
                grid.appendChild(h("div", { class: "plan current", dataset: { plan: p.key } }, h("h3", {}, p.name, " ", badge("your plan", "ok")),
                    p.description ? h("p", {}, p.description) : null, features(p.features),
                    h("p", { class: "muted" }, "Change or cancel it in Manage billing.")));
                continue;
            }
            const prices = (p.prices || []).filter((pr) => pr.active !== false);
            grid.appendChild(h("div", { class: "plan", dataset: { plan: p.key } }, h("h3", {}, p.name),
                p.description ? h("p", {}, p.description) : null, features(p.features),
                prices.map((pr) => {
                    const b = button(`Choose ${money(pr.amount, pr.currency)} / ${pr.interval}`, () =>
                        openStripe(b, slot, () => {
                            const back = location.origin + "/console/#/billing";
                            return api.call("POST", "/v1/billing/checkout", {
                                body: { price_id: pr.id, success_url: back, cancel_url: back },
                                idempotent: true,
                            });
                        }), { class: "primary" });
                    return b;
                }),
                prices.length ? null : h("p", { class: "muted" }, "Free")));
        }
        plansCard.appendChild(grid);
        plansCard.appendChild(slot);
    }
    main.appendChild(plansCard);

    main.appendChild(section("Payment history", pagedTable(["Number", "Date", "Amount", "Status", "Invoice"],
        (cursor) => api.call("GET", "/v1/billing/invoices", { query: { cursor, limit: 20 } }),
        (inv) => h("tr", {}, h("td", {}, inv.number || "—"), h("td", {}, when(inv.created)),
            h("td", {}, money(inv.amount_paid || inv.amount_due, inv.currency)),
            h("td", {}, badge(inv.status, inv.status)),
            h("td", {}, safeUrl(inv.hosted_invoice_url) ? h("a", { href: safeUrl(inv.hosted_invoice_url), rel: "noopener noreferrer", target: "_blank" }, "View")
                : null, safeUrl(inv.invoice_pdf) ? [" · ", h("a", { href: safeUrl(inv.invoice_pdf), rel: "noopener noreferrer", target: "_blank" }, "PDF")] : null)),
        "No payments yet.")));
}

// --- updates ----------------------------------------------------------------

let feedList = null;

function feedItem(item) {
    const li = h("li", { class: "update" + (item.read_at ? "" : " unread"), dataset: { id: item.id } });
    const slot = resultSlot();
    const read = item.read_at ? null : button("Mark read", () => working(read, slot, async () => {
        const r = await api.call("POST", `/v1/updates/${item.id}/read`);
        li.replaceWith(feedItem(r || { ...item, read_at: new Date().toISOString() }));
        recountUnread();
    }));
    const done = item.action_required && !item.done_at ? button("Mark done", () => working(done, slot, async () => {
        const r = await api.call("POST", `/v1/updates/${item.id}/done`);
        li.replaceWith(feedItem(r || { ...item, done_at: new Date().toISOString(), read_at: new Date().toISOString() }));
        recountUnread();
    }), { class: "primary" }) : null;
    li.append(
        h("div", { class: "update-head" }, h("h3", {}, item.title),
            item.read_at ? null : badge("new", "new"),
            item.action_required ? badge(item.done_at ? "done" : "action required", item.done_at ? "ok" : "warn") : null),
        h("div", { class: "muted" }, when(item.created_at)),
        h("p", { class: "update-body" }, item.body || item.body_preview || ""),
        h("div", { class: "actions" }, read, done), slot);
    return li;
}

async function recountUnread() {
    try {
        const page = await api.call("GET", "/v1/updates", { query: { unread: "true", limit: 100 } });
        unreadChanged(page.data.length);
    } catch (_) { /* the badge is a hint */ }
}

export async function updates(main) {
    main.appendChild(h("h1", {}, "Updates"));
    const list = h("ul", { class: "feed", id: "feed" });
    feedList = list;
    const onlyUnread = checkbox("Unread only", false, { id: "feed-unread" });
    const slot = resultSlot();
    const more = h("button", { type: "button", class: "more", hidden: true }, "Load more");
    const empty = h("p", { class: "muted", hidden: true }, "No updates yet.");
    let cursor = null;
    async function load(reset) {
        if (reset) {
            clear(list);
            cursor = null;
        }
        const page = await working(more, slot, () => api.call("GET", "/v1/updates",
            { query: { cursor, limit: 20, unread: onlyUnread.input.checked ? "true" : null } }));
        if (!page) return;
        for (const item of page.data) list.appendChild(feedItem(item));
        cursor = page.next_cursor;
        more.hidden = !cursor;
        empty.hidden = list.childElementCount > 0;
    }
    onlyUnread.input.addEventListener("change", () => load(true));
    more.addEventListener("click", () => load(false));
    main.appendChild(section("Your feed", onlyUnread.wrap, list, empty, slot, more));
    await load(true);
}

// An update.created event: the open feed shows it at the top at once.
export function onLiveUpdate(data) {
    if (!feedList || !feedList.isConnected || !data || !data.id) return;
    if (feedList.querySelector(`[data-id="${CSS.escape(data.id)}"]`)) return;
    feedList.prepend(feedItem({
        id: data.id, title: data.title, body: data.body_preview + (data.body_truncated ? "…" : ""),
        action_required: data.action_required, created_at: data.created_at || new Date().toISOString(),
        read_at: null, done_at: null,
    }));
    const empty = feedList.parentNode && feedList.parentNode.querySelector("p.muted");
    if (empty) empty.hidden = true;
}

// --- security: sessions and MFA ----------------------------------------------

export async function security(main) {
    main.appendChild(h("h1", {}, "Security"));
    const sessions = pagedTable(["Signed in", "Last used", "Device", "Address", ""],
        (cursor) => api.call("GET", "/v1/auth/sessions", { query: { cursor } }),
        (s) => {
            const slot = resultSlot();
            const end = s.current ? badge("this session", "ok") : button("Sign out", () =>
                working(end, slot, async () => {
                    await api.call("DELETE", `/v1/auth/sessions/${s.id}`);
                    sessions.reload();
                }));
            return h("tr", {}, h("td", {}, when(s.created_at)), h("td", {}, when(s.last_used_at)),
                h("td", { class: "wrap" }, s.user_agent || "—"), h("td", {}, s.ip || "—"), h("td", {}, end, slot));
        });
    const allSlot = resultSlot();
    const all = button("Sign out everywhere else", () => working(all, allSlot, async () => {
        await api.call("DELETE", "/v1/auth/sessions");
        allSlot.show("Every other session was signed out.");
        sessions.reload();
    }), { class: "danger", id: "sign-out-others" });
    const everywhere = button("Sign out everywhere", () => working(everywhere, allSlot, async () => {
        await api.call("DELETE", "/v1/auth/sessions");
        await api.signOut();
    }), { class: "danger", id: "sign-out-everywhere" });
    main.appendChild(section("Sessions", sessions, h("div", { class: "actions" }, all, everywhere), allSlot));

    const me = await api.call("GET", "/v1/me");
    main.appendChild(section("Two-factor authentication", me.mfa_enabled ? mfaOff() : mfaOn()));
}

function mfaOn() {
    const wrap = h("div", {}, h("p", {}, "Two-factor authentication is off. Turn it on to ask for a code from an authenticator app at each sign-in."));
    const pw = field("Your password", { type: "password", autocomplete: "current-password", id: "mfa-password" });
    const start = form([pw.wrap], "Set up two-factor", async () => {
        const password = pw.input.value;
        const r = await api.call("POST", "/v1/auth/mfa/totp/enroll", { body: { password } });
        const canvas = h("canvas", { class: "qr", role: "img", "aria-label": "QR code for your authenticator app" });
        drawQr(canvas, r.otpauth_uri);
        const code = field("Code from the app", { inputmode: "numeric", autocomplete: "one-time-code", id: "mfa-confirm-code" });
        const confirmForm = form([code.wrap], "Confirm", async () => {
            const c = await api.call("POST", "/v1/auth/mfa/totp/confirm",
                { body: { code: code.input.value.trim(), password } });
            clear(wrap).appendChild(h("div", {}, notice("Two-factor authentication is on."),
                secretBox("Recovery codes", (c.recovery_codes || []).join("\n"))));
        });
        clear(wrap).append(h("p", {}, "Scan this code with your authenticator app, or enter the key by hand, then type the 6-digit code it shows."),
            canvas, h("p", {}, "Key: ", h("code", { class: "secret", id: "mfa-secret" }, r.secret)), confirmForm);
    });
    wrap.appendChild(start);
    return wrap;
}

function mfaOff() {
    const code = field("A code from your app (or your password below)", { inputmode: "numeric", autocomplete: "one-time-code" });
    const pw = field("Password", { type: "password", autocomplete: "current-password" });
    return h("div", {}, h("p", {}, "Two-factor authentication is on."),
        form([code.wrap, pw.wrap], "Turn off two-factor", async (_f, slot) => {
            const body = code.input.value.trim() ? { code: code.input.value.trim() } : { password: pw.input.value };
            await api.call("DELETE", "/v1/auth/mfa/totp", { body });
            slot.show("Two-factor authentication is off.");
        }, { danger: true }));
}

// A QR code drawn module by module on a canvas (no image URL, no inline
// style: the CSP allows neither).
function drawQr(canvas, text) {
    const qr = qrcode(0, "M");
    qr.addData(text);
    qr.make();
    const n = qr.getModuleCount();
    const scale = 6;
    const quiet = 4;
    canvas.width = canvas.height = (n + 2 * quiet) * scale;
    const g = canvas.getContext("2d");
    g.fillStyle = "#fff";
    g.fillRect(0, 0, canvas.width, canvas.height);
    g.fillStyle = "#000";
    for (let r = 0; r < n; r++) {
        for (let c = 0; c < n; c++) {
            if (qr.isDark(r, c)) g.fillRect((c + quiet) * scale, (r + quiet) * scale, scale, scale);
        }
    }
}

// --- API keys -----------------------------------------------------------------

export async function apiKeys(main) {
    main.appendChild(h("h1", {}, "API keys"));
    const shown = h("div", {});
    const list = pagedTable(["Name", "Prefix", "Scopes", "Created", "Last used", "Expires", ""],
        (cursor) => api.call("GET", "/v1/auth/api-keys", { query: { cursor } }),
        (k) => {
            const slot = resultSlot();
            const revoke = button("Revoke", () => {
                if (!confirm(`Revoke the key "${k.name}"? Programs using it stop working.`)) return;
                working(revoke, slot, async () => {
                    await api.call("DELETE", `/v1/auth/api-keys/${k.id}`);
                    list.reload();
                });
            }, { class: "danger" });
            return h("tr", {}, h("td", {}, k.name), h("td", {}, h("code", {}, k.prefix)),
                h("td", {}, (k.scopes || []).join(", ") || "all"), h("td", {}, when(k.created_at)),
                h("td", {}, when(k.last_used_at)), h("td", {}, when(k.expires_at)), h("td", {}, revoke, slot));
        }, "No API keys.");
    const name = field("Name", { required: true, id: "key-name" });
    const expires = field("Expires (optional)", { type: "date", id: "key-expires" });
    const create = form([name.wrap, expires.wrap], "Create key", async (f) => {
        const body = { name: name.input.value.trim() };
        if (expires.input.value) body.expires_at = new Date(expires.input.value + "T23:59:59Z").toISOString().replace(/\.\d+Z$/, "Z");
        const k = await api.call("POST", "/v1/auth/api-keys", { body, idempotent: true });
        clear(shown).appendChild(secretBox(`New key "${k.name}"`, k.key));
        f.reset();
        list.reload();
    });
    main.appendChild(section("Create a key", h("p", {}, "A key lets a script or an agent call the API as you. It cannot manage your credentials."), create, shown));
    main.appendChild(section("Your keys", list));
}

// --- data export and erasure ------------------------------------------------

export async function privacy(main) {
    main.appendChild(h("h1", {}, "Data & account"));
    const slot = resultSlot();
    const exp = button("Download my data (JSON)", () => working(exp, slot, async () => {
        const doc = await api.call("GET", "/v1/me/export");
        const blob = new Blob([JSON.stringify(doc, null, 2)], { type: "application/json" });
        const a = h("a", { href: URL.createObjectURL(blob), download: "stoa-export.json" });
        document.body.appendChild(a);
        a.click();
        a.remove();
        slot.show("Export downloaded.");
    }), { class: "primary" });
    main.appendChild(section("Export", h("p", {}, "Everything stored about you, as one JSON file."), exp, slot));

    const pw = field("Password", { type: "password", autocomplete: "current-password", id: "erase-password" });
    main.appendChild(section("Delete my account",
        h("p", {}, "Your personal data is removed or anonymised and every session and API key ends. Invoices are kept as the law requires. This cannot be undone."),
        form([pw.wrap], "Delete my account", async () => {
            if (!confirm("Delete your account for good?")) return;
            await api.call("DELETE", "/v1/me", { body: { password: pw.input.value } });
            api.forget("Your account was deleted.");
        }, { danger: true })));
}

// --- signed-out pages: the mailed links, the forgotten password --------------

function publicCard(main, title, ...children) {
    document.title = `${title} · stoa console`;
    const card = h("div", { class: "signin card" }, h("h1", {}, title), children,
        h("p", {}, h("a", { href: "#/" }, "Back to sign in")));
    main.appendChild(card);
    return card;
}

export async function verifyEmail(main, { token }) {
    const slot = resultSlot();
    publicCard(main, "Verify your email", slot);
    if (!token) {
        slot.show(new Error("This link has no token: open the link from the mail again."));
        return;
    }
    await working(null, slot, async () => {
        await api.call("POST", "/v1/auth/verify-email", { body: { token }, anonymous: true });
        slot.show("Your email address is verified.");
    });
}

export async function resetPassword(main, { token }) {
    const pw = field("New password (12 characters or more; a passphrase works well)",
        { type: "password", autocomplete: "new-password", id: "reset-password", required: true });
    const f = form([pw.wrap], "Set the new password", async (_f, slot) => {
        if (!token) throw new Error("This link has no token: open the link from the mail again.");
        await api.call("POST", "/v1/auth/password/reset",
            { body: { token, password: pw.input.value }, anonymous: true });
        _f.querySelector("button[type=submit]").hidden = true;
        slot.show("Your password was changed and every session signed out. Sign in with the new password.");
    });
    f.id = "reset-form";
    publicCard(main, "Choose a new password", f);
    pw.input.focus();
}

export async function forgotPassword(main) {
    const email = field("Email", { type: "email", autocomplete: "username", id: "forgot-email", required: true });
    const f = form([email.wrap], "Send a reset link", async (_f, slot) => {
        await api.call("POST", "/v1/auth/password/forgot",
            { body: { email: email.input.value.trim() }, anonymous: true });
        slot.show("If an account has this address, a link to reset its password is on its way (valid 1 hour).");
    });
    f.id = "forgot-form";
    publicCard(main, "Forgotten password", f);
    email.input.focus();
}
