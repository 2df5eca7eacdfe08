// admin.js - the back office: KPIs and charts, users, plans and prices,
// subscriptions and invoices, product updates, outbound webhooks, the audit
// log. Finance sees the read-only parts (the API refuses the rest anyway:
// every control here is only a convenience over its checks).

import * as api from "./api.js";
import {
    h, clear, field, checkbox, form, button, working, resultSlot, section, pagedTable,
    secretBox, badge, dl, when, money, errorBox, notice, safeUrl,
} from "./ui.js";

const isAdmin = () => api.hasRole("admin");

function isoDay(d) {
    return d.toISOString().slice(0, 10);
}

// A filter form above a paged table: values() -> query; rebuild on submit.
function filtered(fields, makeTable) {
    const holder = h("div", {});
    const values = () => {
        const q = {};
        for (const [name, f] of Object.entries(fields)) {
            const v = f.input.value.trim();
            if (v) q[name] = v;
        }
        return q;
    };
    const f = form(Object.values(fields).map((x) => x.wrap), "Search", async () => {
        clear(holder).appendChild(makeTable(values()));
    });
    f.classList.add("filters");
    holder.appendChild(makeTable(values()));
    return h("div", {}, f, holder);
}

// --- dashboard ----------------------------------------------------------------

let charts = [];

export async function dashboard(main) {
    main.appendChild(h("h1", {}, "Dashboard"));
    const range = field("Period", {
        tag: "select", id: "dash-range", value: "30",
        options: [["7", "Last 7 days"], ["30", "Last 30 days"], ["90", "Last 90 days"]],
    });
    const body = h("div", {});
    const slot = resultSlot();
    main.appendChild(h("div", { class: "toolbar" }, range.wrap));
    main.appendChild(slot);
    main.appendChild(body);
    async function load() {
        const days = Number(range.input.value);
        // `to` is exclusive: tomorrow, so that today counts.
        const to = new Date(Date.now() + 86400000);
        const from = new Date(to.getTime() - days * 86400000);
        const d = await working(range.input, slot, () => api.call("GET", "/v1/analytics/dashboard",
            { query: { from: isoDay(from), to: isoDay(to) } }));
        if (!d) return;
        renderDashboard(clear(body), d);
    }
    range.input.addEventListener("change", load);
    await load();
}

function amounts(list) {
    if (!list || !list.length) return money(0, "usd");
    return list.map((a) => money(a.amount, a.currency)).join(" + ");
}

function pct(rate) {
    if (rate === null || rate === undefined) return "—";
    return (Number(rate) * 100).toFixed(1) + " %";
}

function kpi(label, value, id) {
    return h("div", { class: "kpi", id }, h("div", { class: "kpi-value" }, value), h("div", { class: "kpi-label" }, label));
}

function renderDashboard(body, d) {
    for (const c of charts) c.destroy();
    charts = [];
    body.appendChild(h("div", { class: "kpis" },
        kpi("MRR", amounts(d.mrr), "kpi-mrr"),
        kpi("Active subscribers", String(d.active_subscribers ?? 0), "kpi-subscribers"),
        kpi("Trialing", String(d.trialing_subscribers ?? 0)),
        kpi("Signups", String(d.signups?.total ?? 0), "kpi-signups"),
        kpi("DAU / WAU / MAU", `${d.active_users?.dau ?? 0} / ${d.active_users?.wau ?? 0} / ${d.active_users?.mau ?? 0}`),
        kpi("ARPU", amounts(d.arpu)),
        kpi("Churn", pct(d.churn?.rate)),
        kpi("Failed payments", pct(d.failed_payments?.rate)),
        kpi("Revenue", amounts(d.revenue?.total)),
    ));
    body.appendChild(h("p", { class: "muted" }, `${String(d.from).slice(0, 10)} to ${String(d.to).slice(0, 10)}, as of ${when(d.as_of)}`));

    const revenueDays = d.revenue?.by_day || [];
    const currencies = [...new Set(revenueDays.flatMap((r) => (r.amounts || []).map((a) => a.currency)))];
    if (!currencies.length) currencies.push((d.mrr?.[0]?.currency) || "usd");
    const revCanvas = h("canvas", { id: "chart-revenue", role: "img", "aria-label": "Revenue by day" });
    const signCanvas = h("canvas", { id: "chart-signups", role: "img", "aria-label": "Signups by day" });
    body.appendChild(h("div", { class: "grid" },
        section("Revenue by day", h("div", { class: "chart" }, revCanvas)),
        section("Signups by day", h("div", { class: "chart" }, signCanvas))));
    if (typeof window.Chart !== "function") {
        body.appendChild(errorBox(new Error("Charts are unavailable (Chart.js did not load).")));
        return;
    }
    const palette = ["#2457c5", "#1f8a5b", "#b35c00", "#8a2be2"];
    charts.push(new window.Chart(revCanvas, {
        type: "bar",
        data: {
            labels: revenueDays.map((r) => String(r.day).slice(5, 10)),
            datasets: currencies.map((cur, i) => ({
                label: cur.toUpperCase(),
                backgroundColor: palette[i % palette.length],
                data: revenueDays.map((r) => {
                    const a = (r.amounts || []).find((x) => x.currency === cur);
                    return a ? a.amount / 100 : 0;
                }),
            })),
        },
        options: { responsive: true, maintainAspectRatio: false, animation: false },
    }));
    const signDays = d.signups?.by_day || [];
    charts.push(new window.Chart(signCanvas, {
        type: "line",
        data: {
            labels: signDays.map((r) => String(r.day).slice(5, 10)),
            datasets: [{ label: "Signups", data: signDays.map((r) => r.count), borderColor: "#2457c5", backgroundColor: "#2457c5" }],
        },
        options: { responsive: true, maintainAspectRatio: false, animation: false, scales: { y: { beginAtZero: true, ticks: { precision: 0 } } } },
    }));
}

// --- users ----------------------------------------------------------------------

function statusBadge(s) {
    return badge(s, s === "active" ? "ok" : s === "suspended" ? "warn" : "");
}

export async function users(main) {
    main.appendChild(h("h1", {}, "Users"));
    const fields = {
        email: field("Email starts with", { type: "search", id: "users-email" }),
        role: field("Role", { tag: "select", options: [["", "any"], ["client", "client"], ["finance", "finance"], ["admin", "admin"]] }),
        status: field("Status", { tag: "select", options: [["", "any"], ["active", "active"], ["suspended", "suspended"], ["deleted", "deleted"]] }),
        plan: field("Plan key", {}),
        created_from: field("Created from", { type: "date" }),
        created_to: field("Created before", { type: "date" }),
    };
    main.appendChild(section("Search", filtered(fields, (q) => pagedTable(
        ["Email", "Name", "Role", "Status", "Plan", "Created", "Email verified"],
        (cursor) => api.call("GET", "/v1/admin/users", { query: { ...q, cursor, limit: 20 } }),
        (u) => h("tr", {}, h("td", {}, h("a", { href: `#/admin/users/${u.id}` }, u.email)),
            h("td", {}, u.name || "—"), h("td", {}, u.role), h("td", {}, statusBadge(u.status)),
            h("td", {}, u.plan ? `${u.plan} (${u.subscription_status || "?"})` : "—"),
            h("td", {}, when(u.created_at)), h("td", {}, u.email_verified_at ? "yes" : "no")),
        "No user matches."))));
}

export async function userDetail(main, { id }) {
    main.appendChild(h("p", {}, h("a", { href: "#/admin/users" }, "← Users")));
    const u = await api.call("GET", `/v1/admin/users/${encodeURIComponent(id)}`);
    main.appendChild(h("h1", {}, u.email));
    const facts = h("div", {});
    const draw = (x) => clear(facts).appendChild(dl([
        ["Name", x.name || "—"], ["Role", x.role], ["Status", statusBadge(x.status)],
        ["Plan", x.plan ? `${x.plan} (${x.subscription_status || "?"})` : "—"],
        ["Created", when(x.created_at)], ["Email verified", when(x.email_verified_at)],
        ["Last login", x.last_login ? `${when(x.last_login.at)} from ${x.last_login.ip || "?"}` : "never"],
        ["Live sessions", String(x.sessions)], ["Two-factor", x.mfa_enabled ? "on" : "off"],
        ["API keys", String(x.api_keys)], ["Id", h("code", {}, x.id)],
    ]));
    draw(u);
    main.appendChild(section("Account", facts));
    if (!isAdmin()) return;

    const slot = resultSlot();
    const patch = async (body, btn) => working(btn, slot, async () => {
        const x = await api.call("PATCH", `/v1/admin/users/${u.id}`, { body });
        Object.assign(u, x);
        draw(u);
        statusButton.textContent = u.status === "suspended" ? "Reactivate" : "Suspend";
        slot.show("Saved.");
    });
    const statusButton = button(u.status === "suspended" ? "Reactivate" : "Suspend", () => {
        const next = u.status === "suspended" ? "active" : "suspended";
        if (next === "suspended" && !confirm(`Suspend ${u.email}? Every session and API key stops at once.`)) return;
        patch({ status: next }, statusButton);
    }, { class: "danger", id: "user-status-toggle" });
    const role = field("Role", { tag: "select", value: u.role, id: "user-role",
        options: [["client", "client"], ["finance", "finance"], ["admin", "admin"]] });
    const roleButton = button("Change role", () => patch({ role: role.input.value }, roleButton));
    const exportButton = button("Export data", () => working(exportButton, slot, async () => {
        const doc = await api.call("GET", `/v1/admin/users/${u.id}/export`);
        const a = h("a", { href: URL.createObjectURL(new Blob([JSON.stringify(doc, null, 2)], { type: "application/json" })),
            download: `user-${u.id}.json` });
        document.body.appendChild(a);
        a.click();
        a.remove();
    }));
    const eraseButton = button("Erase account", () => {
        if (!confirm(`Erase ${u.email}? Personal data is removed for good.`)) return;
        working(eraseButton, slot, async () => {
            await api.call("DELETE", `/v1/admin/users/${u.id}`);
            slot.show("Account erased.");
        });
    }, { class: "danger" });
    main.appendChild(section("Actions", h("div", { class: "actions" }, statusButton),
        h("div", { class: "inline" }, role.wrap, roleButton),
        h("div", { class: "actions" }, exportButton, eraseButton), slot));
}

// --- plans and prices -------------------------------------------------------

function parseFeatures(text) {
    const t = text.trim();
    if (!t) return {};
    try {
        const v = JSON.parse(t);
        if (v && typeof v === "object" && !Array.isArray(v)) return v;
    } catch (_) { /* below */ }
    throw new Error('Features must be a JSON object, such as {"seats": 5, "api": true}.');
}

export async function plans(main) {
    main.appendChild(h("h1", {}, "Plans and prices"));
    const list = h("div", { class: "plans" });
    const slot = resultSlot();
    main.appendChild(section("Catalogue", h("p", { class: "muted" }, "The public catalogue (active plans)."), slot, list));
    async function load() {
        const doc = await working(null, slot, () => api.call("GET", "/v1/billing/plans"));
        if (!doc) return;
        clear(list);
        for (const p of doc.data || []) list.appendChild(planCard(p, load));
    }
    if (isAdmin()) {
        const key = field("Key (a-z, 0-9, -)", { id: "plan-key" });
        const name = field("Name", { id: "plan-name" });
        const description = field("Description", {});
        const features = field("Features (JSON object)", { tag: "textarea", value: "{}" });
        const create = form([key.wrap, name.wrap, description.wrap, features.wrap], "Create plan", async (f, s) => {
            const body = { key: key.input.value.trim(), name: name.input.value.trim(), features: parseFeatures(features.input.value) };
            if (description.input.value.trim()) body.description = description.input.value.trim();
            await api.call("POST", "/v1/admin/plans", { body, idempotent: true });
            f.reset();
            s.show("Plan created. Add a price, then sync it to Stripe.");
            await load();
        });
        create.id = "plan-create";
        main.appendChild(section("New plan", create));
    }
    await load();
}

// One plan of the catalogue. The public catalogue does not say what is in
// Stripe; the admin routes' answers do (stripe_*_id, null when not yet), so
// a card redrawn from an answer of edit, price or sync tells.
function planCard(p, reload, message) {
    const inStripe = (id) => (id === undefined ? "" : id ? " (in Stripe)" : " (not in Stripe yet)");
    const card = h("div", { class: "plan", dataset: { plan: p.key } }, h("h3", {}, p.name, " ", h("code", {}, p.key)),
        p.description ? h("p", {}, p.description) : null,
        h("pre", { class: "json" }, JSON.stringify(p.features || {}, null, 1)),
        h("ul", { class: "plain" }, (p.prices || []).map((pr) => h("li", {},
            `${money(pr.amount, pr.currency)} / ${pr.interval}`, inStripe(pr.stripe_price_id)))));
    if (!isAdmin()) return card;
    const slot = resultSlot();
    const redraw = (answer, text) => card.replaceWith(planCard(answer, reload, text));
    const name = field("Name", { value: p.name });
    const description = field("Description", { value: p.description || "" });
    const features = field("Features (JSON object)", { tag: "textarea", value: JSON.stringify(p.features || {}) });
    const active = checkbox("Active (in the catalogue)", p.active !== false);
    const edit = form([name.wrap, description.wrap, features.wrap, active.wrap], "Save plan", async () => {
        redraw(await api.call("PATCH", `/v1/admin/plans/${p.id}`, { body: {
            name: name.input.value.trim(), description: description.input.value.trim(),
            features: parseFeatures(features.input.value), active: active.input.checked,
        } }), "Plan saved.");
    });
    const amount = field("Amount (minor units, e.g. 1900 = 19.00)", { type: "number", min: "0", step: "1" });
    const currency = field("Currency", { value: "usd", maxlength: "3" });
    const interval = field("Interval", { tag: "select", options: [["month", "month"], ["year", "year"]] });
    const price = form([amount.wrap, currency.wrap, interval.wrap], "Add price", async () => {
        redraw(await api.call("POST", `/v1/admin/plans/${p.id}/prices`, { idempotent: true, body: {
            amount: Number(amount.input.value), currency: currency.input.value.trim().toLowerCase(), interval: interval.input.value,
        } }), "Price added.");
    });
    price.classList.add("price");
    const sync = button("Sync to Stripe", () => working(sync, slot, async () => {
        redraw(await api.call("POST", `/v1/admin/plans/${p.id}/sync`), "Synced to Stripe.");
    }), { class: "primary" });
    card.append(h("details", {}, h("summary", {}, "Edit"), edit),
        h("details", {}, h("summary", {}, "Add a price"), price),
        h("div", { class: "actions" }, sync), slot,
        p.stripe_product_id === undefined ? "" : h("p", { class: "muted" },
            p.stripe_product_id ? ["Stripe product ", h("code", {}, p.stripe_product_id)] : "Not in Stripe yet"));
    if (message) slot.show(message);
    return card;
}

// --- subscriptions and invoices (finance) ------------------------------------------

export async function finance(main) {
    main.appendChild(h("h1", {}, "Subscriptions and invoices"));
    main.appendChild(section("Subscriptions", filtered({
        status: field("Status", { tag: "select", options: [["", "any"], ...["trialing", "active", "past_due", "canceled", "unpaid", "incomplete", "incomplete_expired", "paused"].map((s) => [s, s])] }),
        plan: field("Plan key", {}),
    }, (q) => pagedTable(["Customer", "Plan", "Status", "Period end", "Updated"],
        (cursor) => api.call("GET", "/v1/admin/billing/subscriptions", { query: { ...q, cursor } }),
        (s) => h("tr", {}, h("td", {}, s.user_id ? h("a", { href: `#/admin/users/${s.user_id}` }, s.email || s.user_id) : s.email || "—"),
            h("td", {}, s.plan || "—"), h("td", {}, badge(s.status, s.status)),
            h("td", {}, when(s.current_period_end), s.cancel_at_period_end ? " (cancels)" : ""), h("td", {}, when(s.updated_at))),
        "No subscriptions."))));
    main.appendChild(section("Invoices", filtered({
        status: field("Status", { tag: "select", options: [["", "any"], ...["draft", "open", "paid", "uncollectible", "void"].map((s) => [s, s])] }),
        from: field("From", { type: "date" }),
        to: field("To", { type: "date" }),
    }, (q) => pagedTable(["Number", "Customer", "Date", "Due", "Paid", "Status", ""],
        (cursor) => api.call("GET", "/v1/admin/billing/invoices", { query: { ...q, cursor } }),
        (i) => h("tr", {}, h("td", {}, i.number || "—"), h("td", {}, i.email || "—"), h("td", {}, when(i.created)),
            h("td", {}, money(i.amount_due, i.currency)), h("td", {}, money(i.amount_paid, i.currency)),
            h("td", {}, badge(i.status, i.status)),
            h("td", {}, safeUrl(i.hosted_invoice_url) ? h("a", { href: safeUrl(i.hosted_invoice_url), target: "_blank", rel: "noopener noreferrer" }, "View") : null)),
        "No invoices."))));
}

// --- product updates ----------------------------------------------------------------

function audienceText(a) {
    if (!a) return "—";
    if (a.all) return "everyone";
    if (a.role) return `role ${a.role}`;
    if (a.plan) return `plan ${a.plan}`;
    if (a.user_ids) return `${a.user_ids.length} user(s)`;
    return JSON.stringify(a);
}

export async function updates(main) {
    main.appendChild(h("h1", {}, "Send updates"));
    const title = field("Title", { id: "update-title", required: true, maxlength: "200" });
    const body = field("Message (Markdown)", { tag: "textarea", id: "update-body", required: true });
    const kind = field("Audience", { tag: "select", id: "update-audience", options: [
        ["all", "Everyone"], ["role", "A role"], ["plan", "A plan"], ["user_ids", "Some users (ids)"]] });
    const value = field("Role, plan key, or user ids (comma-separated)", { id: "update-audience-value" });
    const action = checkbox("Action required (recipients mark it done)", false, { id: "update-action" });
    let list;
    const compose = form([title.wrap, body.wrap, kind.wrap, value.wrap, action.wrap], "Send", async (f, slot) => {
        const k = kind.input.value;
        const v = value.input.value.trim();
        const audience = k === "all" ? { all: true } : k === "user_ids"
            ? { user_ids: v.split(/[\s,]+/).filter(Boolean) } : { [k]: v };
        const sent = await api.call("POST", "/v1/admin/updates", { idempotent: true, body: {
            title: title.input.value.trim(), body: body.input.value, audience, action_required: action.input.checked,
        } });
        f.reset();
        slot.show(`Sent to ${sent.recipients} recipient(s); delivery shows below.`);
        list.reload();
        watchDelivery(sent.id, () => list.reload());
    });
    compose.id = "update-form";
    main.appendChild(section("Compose", compose));
    const detail = h("div", { id: "update-detail" });
    list = pagedTable(["Title", "Audience", "Sent", "Recipients", "Delivered", ""],
        (cursor) => api.call("GET", "/v1/admin/updates", { query: { cursor } }),
        (u) => {
            const slot = resultSlot();
            const more = button("Delivery status", () => working(more, slot, async () => {
                const x = await api.call("GET", `/v1/admin/updates/${u.id}`);
                clear(detail).appendChild(section("Delivery of " + x.title, dl([
                    ["Audience", audienceText(x.audience)], ["Recipients", String(x.recipients)],
                    ["Delivered", progressBar(x.delivered, x.recipients)],
                    ["Finished", x.delivered_at ? when(x.delivered_at) : "fanning out…"],
                    ["Mailed", String(x.mailed ?? "—")], ["Read", String(x.read ?? "—")],
                    ["Done", x.action_required ? String(x.done ?? "—") : "no action asked"],
                ])));
                detail.scrollIntoView();
            }));
            return h("tr", {}, h("td", {}, u.title, u.action_required ? [" ", badge("action", "warn")] : null),
                h("td", {}, audienceText(u.audience)), h("td", {}, when(u.created_at)),
                h("td", {}, String(u.recipients ?? "—")),
                h("td", {}, progressBar(u.delivered, u.recipients), u.delivered_at ? "" : " (fanning out…)"),
                h("td", {}, more, slot));
        },
        "No updates sent yet.");
    main.appendChild(section("Sent", list));
    main.appendChild(detail);
}

function progressBar(done, total) {
    const p = h("progress", { max: String(total || 1), value: String(done || 0), "aria-label": "delivered" });
    return h("span", { class: "progress-cell" }, p, ` ${done ?? 0}/${total ?? 0}`);
}

// Polls an update's delivery until the fan-out finished (long work shows
// progress), for at most two minutes.
function watchDelivery(id, onChange) {
    const deadline = Date.now() + 120000;
    const tick = async () => {
        try {
            const u = await api.call("GET", `/v1/admin/updates/${id}`);
            onChange();
            if (u.delivered_at || Date.now() > deadline) return;
        } catch (_) {
            return;
        }
        setTimeout(tick, 1500);
    };
    setTimeout(tick, 1000);
}

// --- outbound webhooks ------------------------------------------------------------------

const WEBHOOK_EVENTS = ["*", "user.created", "user.updated", "user.deleted", "user.suspended",
    "subscription.updated", "invoice.paid", "invoice.payment_failed", "entitlements.changed"];

export async function webhooks(main) {
    main.appendChild(h("h1", {}, "Webhooks"));
    const shown = h("div", {});
    const url = field("Endpoint URL (https://…)", { type: "url", id: "webhook-url", required: true });
    const description = field("Description", {});
    const boxes = WEBHOOK_EVENTS.map((e) => [e, checkbox(e === "*" ? "every event" : e, e === "*")]);
    let list;
    const create = form([url.wrap, description.wrap, h("fieldset", {}, h("legend", {}, "Events"), boxes.map(([, b]) => b.wrap))],
        "Add endpoint", async (f) => {
            const body = { url: url.input.value.trim(), events: boxes.filter(([, b]) => b.input.checked).map(([e]) => e) };
            if (description.input.value.trim()) body.description = description.input.value.trim();
            const w = await api.call("POST", "/v1/admin/webhooks", { body, idempotent: true });
            clear(shown).appendChild(secretBox("Signing secret of " + w.url, w.secret));
            f.reset();
            list.reload();
        });
    main.appendChild(section("New endpoint", create, shown));
    const detail = h("div", {});
    list = pagedTable(["URL", "Events", "State", ""],
        (cursor) => api.call("GET", "/v1/admin/webhooks", { query: { cursor } }),
        (w) => {
            const slot = resultSlot();
            const log = button("Deliveries", () => showDeliveries(detail, w));
            const rotate = button("Rotate secret", () => {
                if (!confirm("Rotate the signing secret? The old one stays valid for 24 hours.")) return;
                working(rotate, slot, async () => {
                    const r = await api.call("POST", `/v1/admin/webhooks/${w.id}/rotate-secret`, { body: { previous_valid_for_s: 86400 } });
                    clear(shown).appendChild(secretBox(`New secret (the old one works until ${when(r.previous_valid_until)})`, r.secret));
                    shown.scrollIntoView();
                });
            });
            const del = button("Delete", () => {
                if (!confirm(`Delete the endpoint ${w.url}?`)) return;
                working(del, slot, async () => {
                    await api.call("DELETE", `/v1/admin/webhooks/${w.id}`);
                    list.reload();
                });
            }, { class: "danger" });
            const state = w.disabled_at ? badge("disabled", "warn") : w.failing_since ? badge("failing", "warn") : badge("ok", "ok");
            return h("tr", {}, h("td", { class: "wrap" }, w.url, w.description ? h("div", { class: "muted" }, w.description) : null),
                h("td", {}, (w.events || []).join(", ")), h("td", {}, state, w.last_success_at ? h("div", { class: "muted" }, "last ok " + when(w.last_success_at)) : null),
                h("td", {}, h("div", { class: "actions" }, log, rotate, del), slot));
        }, "No endpoints.");
    main.appendChild(section("Endpoints", list));
    main.appendChild(detail);
}

function showDeliveries(holder, w) {
    clear(holder).appendChild(section("Deliveries to " + w.url, pagedTable(["When", "Event", "Attempt", "Status", "Latency", "Error"],
        (cursor) => api.call("GET", `/v1/admin/webhooks/${w.id}/deliveries`, { query: { cursor } }),
        (d) => h("tr", {}, h("td", {}, when(d.at)), h("td", {}, d.event_type), h("td", {}, String(d.attempt)),
            h("td", {}, d.status === null ? "—" : badge(String(d.status), d.status >= 200 && d.status < 300 ? "ok" : "warn")),
            h("td", {}, d.latency_ms === null ? "—" : `${d.latency_ms} ms`), h("td", { class: "wrap" }, d.error || "")),
        "No deliveries yet.")));
    holder.scrollIntoView();
}

// --- audit log ----------------------------------------------------------------------------

export async function audit(main) {
    main.appendChild(h("h1", {}, "Audit log"));
    const fields = {
        actor: field("Actor (user id)", { id: "audit-actor" }),
        action: field("Action (e.g. login.succeeded)", { id: "audit-action" }),
        target: field("Target (id)", {}),
        from: field("From", { type: "date" }),
        to: field("To", { type: "date" }),
    };
    main.appendChild(section("Entries", filtered(fields, (q) => pagedTable(["When", "Actor", "Action", "Target", "Address", "Details"],
        (cursor) => api.call("GET", "/v1/admin/audit-log", { query: { ...q, cursor } }),
        (e) => h("tr", {}, h("td", {}, when(e.at)),
            h("td", { class: "wrap" }, e.actor || "—", e.actor_id ? h("div", { class: "muted" }, e.actor_id) : null),
            h("td", {}, h("code", {}, e.action)), h("td", { class: "wrap" }, e.target_id || "—"), h("td", {}, e.ip || "—"),
            h("td", { class: "wrap" }, h("code", { class: "json" }, JSON.stringify(e.details || {})))),
        "No entries match."))));
    main.appendChild(notice("The audit log is append-only: the database refuses to change or delete an entry."));
}
