// ui.js - small DOM helpers shared by the pages. Text from the API always
// goes in through textContent (h() children), never as HTML, so no answer
// can inject markup; styling is by class only (the CSP has no inline style).

import { ApiError } from "./api.js";

// h("p", {class: "x", onclick: f}, "text", child...) -> element.
export function h(tag, attrs, ...children) {
    const el = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
        if (v === undefined || v === null || v === false) continue;
        if (k.startsWith("on") && typeof v === "function") el.addEventListener(k.slice(2), v);
        else if (k === "class") el.className = v;
        else if (k === "dataset") Object.assign(el.dataset, v);
        else if (v === true) el.setAttribute(k, "");
        else el.setAttribute(k, String(v));
    }
    append(el, children);
    return el;
}

function append(el, children) {
    for (const c of children) {
        if (c === undefined || c === null || c === false) continue;
        if (Array.isArray(c)) append(el, c);
        else if (c instanceof Node) el.appendChild(c);
        else el.appendChild(document.createTextNode(String(c)));
    }
}

export function clear(el) {
    while (el.firstChild) el.removeChild(el.firstChild);
    return el;
}

let fieldSeq = 0;

// A labelled input: returns {wrap, input}.
export function field(label, attrs = {}) {
    const id = attrs.id || "f" + ++fieldSeq;
    const input = attrs.tag === "textarea" ? h("textarea", { ...attrs, id, tag: null })
        : attrs.tag === "select" ? h("select", { ...attrs, id, tag: null, options: null },
            (attrs.options || []).map(([value, text]) => h("option", { value }, text)))
            : h("input", { type: "text", ...attrs, id });
    if (attrs.value !== undefined && attrs.tag === "textarea") input.value = attrs.value;
    if (attrs.value !== undefined && attrs.tag === "select") input.value = attrs.value;
    const wrap = h("div", { class: "field" }, h("label", { for: id }, label), input);
    return { wrap, input };
}

export function checkbox(label, checked, attrs = {}) {
    const id = attrs.id || "f" + ++fieldSeq;
    const input = h("input", { type: "checkbox", ...attrs, id });
    input.checked = !!checked;
    return { wrap: h("div", { class: "check" }, input, h("label", { for: id }, label)), input };
}

// An error box for any failure: the API's message, the field list of a
// validation error, its code and request id (what support asks for).
export function errorBox(err) {
    if (!(err instanceof ApiError)) {
        return h("div", { class: "error", role: "alert" }, String(err && err.message || err));
    }
    const fields = err.fieldList();
    return h("div", { class: "error", role: "alert" },
        h("strong", {}, err.message),
        fields.length ? h("ul", {}, fields.map((f) => h("li", {}, f))) : null,
        h("div", { class: "meta" }, `${err.code}${err.status ? " · HTTP " + err.status : ""}`
            + (err.requestId ? ` · request ${err.requestId}` : "")));
}

export function notice(text) {
    return h("div", { class: "notice", role: "status" }, text);
}

// A slot for a form's result: show(err|text|node) replaces what it showed.
export function resultSlot() {
    const el = h("div", { class: "result", "aria-live": "polite" });
    el.show = (what) => {
        clear(el);
        if (what === null || what === undefined) return;
        if (what instanceof Error) el.appendChild(errorBox(what));
        else if (what instanceof Node) el.appendChild(what);
        else el.appendChild(notice(what));
    };
    return el;
}

// Runs fn while the button shows that work is going on (disabled,
// aria-busy, a spinner by CSS); errors land in slot when given.
export async function working(button, slot, fn) {
    if (button) {
        button.disabled = true;
        button.setAttribute("aria-busy", "true");
    }
    if (slot) slot.show(null);
    try {
        return await fn();
    } catch (err) {
        if (slot) slot.show(err);
        else throw err;
        return undefined;
    } finally {
        if (button) {
            button.disabled = false;
            button.removeAttribute("aria-busy");
        }
    }
}

export function button(text, onclick, attrs = {}) {
    return h("button", { type: "button", ...attrs, onclick }, text);
}

// A form whose submit runs fn(form) with the submit button busy.
export function form(children, submitText, fn, attrs = {}) {
    const slot = resultSlot();
    const submit = h("button", { type: "submit", class: attrs.danger ? "danger" : "primary" }, submitText);
    const f = h("form", { class: "form", novalidate: attrs.novalidate }, children,
        h("div", { class: "actions" }, submit), slot);
    f.addEventListener("submit", (ev) => {
        ev.preventDefault();
        working(submit, slot, () => fn(f, slot));
    });
    f.slot = slot;
    return f;
}

// A link target from data (invoice links from Stripe): https only, so no
// javascript: or data: URL ever becomes a link. null otherwise.
export function safeUrl(url) {
    try {
        const u = new URL(url);
        return u.protocol === "https:" ? u.href : null;
    } catch (_) {
        return null;
    }
}

export function when(iso) {
    if (!iso) return "—";
    const d = new Date(iso);
    if (Number.isNaN(d.getTime())) return String(iso);
    return d.toLocaleString(undefined, { dateStyle: "medium", timeStyle: "short" });
}

export function money(amount, currency) {
    if (amount === null || amount === undefined) return "—";
    const cur = (currency || "usd").toUpperCase();
    try {
        const digits = new Intl.NumberFormat(undefined, { style: "currency", currency: cur })
            .resolvedOptions().maximumFractionDigits;
        return new Intl.NumberFormat(undefined, { style: "currency", currency: cur })
            .format(amount / 10 ** digits);
    } catch (_) {
        return `${amount} ${cur}`;
    }
}

export function section(title, ...children) {
    return h("section", { class: "card" }, h("h2", {}, title), children);
}

export function table(headers, rows) {
    return h("div", { class: "table-wrap" },
        h("table", {}, h("thead", {}, h("tr", {}, headers.map((t) => h("th", { scope: "col" }, t)))),
            h("tbody", {}, rows)));
}

// A cursor-paged list (SPEC §3: {data, next_cursor}). fetchPage(cursor)
// resolves to a page; row(item) makes a <tr>. Returns an element with the
// table and a "Load more" button while pages remain; reload() starts over.
export function pagedTable(headers, fetchPage, row, empty = "Nothing here yet.") {
    const tbody = h("tbody", {});
    const slot = resultSlot();
    const more = h("button", { type: "button", class: "more", hidden: true }, "Load more");
    const emptyNote = h("p", { class: "muted", hidden: true }, empty);
    let cursor = null;
    async function load(reset) {
        if (reset) {
            clear(tbody);
            cursor = null;
        }
        const page = await working(more, slot, () => fetchPage(cursor));
        if (!page) return;
        for (const item of page.data || []) tbody.appendChild(row(item));
        cursor = page.next_cursor || null;
        more.hidden = !cursor;
        emptyNote.hidden = tbody.childElementCount > 0;
    }
    more.addEventListener("click", () => load(false));
    const wrap = h("div", { class: "paged" },
        h("div", { class: "table-wrap" },
            h("table", {}, h("thead", {}, h("tr", {}, headers.map((t) => h("th", { scope: "col" }, t)))), tbody)),
        emptyNote, slot, more);
    wrap.reload = () => load(true);
    wrap.reload();
    return wrap;
}

// A secret shown once (API key, webhook secret, recovery codes).
export function secretBox(title, value) {
    const code = h("code", { class: "secret", tabindex: "0" }, value);
    const copy = button("Copy", async () => {
        try {
            await navigator.clipboard.writeText(value);
            copy.textContent = "Copied";
        } catch (_) {
            copy.textContent = "Select and copy it";
        }
    });
    return h("div", { class: "secret-box", role: "status" },
        h("strong", {}, title), h("p", {}, "Shown once: store it now, it cannot be shown again."),
        code, copy);
}

export function badge(text, kind) {
    return h("span", { class: "badge " + (kind || "") }, text);
}

export function dl(pairs) {
    return h("dl", { class: "facts" }, pairs.map(([k, v]) => [h("dt", {}, k), h("dd", {}, v)]));
}
