// live.js - the caller's live channel (GET /v1/realtime, SPEC §8) as
// Server-Sent Events.
//
// EventSource cannot send an Authorization header and a token must not sit
// in a URL, so each connection first trades the access token for a
// single-use ticket (POST /v1/realtime/tickets, valid 30 s) and opens
// /v1/realtime?ticket=... with it. Because the ticket is spent by the first
// connection, EventSource's own reconnect (same URL) cannot work: on any
// error the stream is closed and reopened here with a new ticket and the
// last event id heard, so nothing published in between is missed.
//
// A revoked session ends the stream (the API deletes the session's
// channel) and the next ticket request answers 401, which signs the
// console out (api.js); a session.revoked event does the same at once.

import * as api from "./api.js";

const EVENT_TYPES = ["update.created", "subscription.updated", "entitlements.changed",
    "session.revoked", "user.created", "invoice.payment_failed"];
const RETRY_MIN_MS = 1000;
const RETRY_MAX_MS = 30000;

let source = null;
let lastEventId = null;
let retryMs = RETRY_MIN_MS;
let retryTimer = null;
let generation = 0;

// "event" (detail: {type, data}), "state" (detail: "connecting" | "open" |
// "closed").
export const live = new EventTarget();

function state(s) {
    live.dispatchEvent(new CustomEvent("state", { detail: s }));
}

function onMessage(ev) {
    if (ev.lastEventId) lastEventId = ev.lastEventId;
    let doc;
    try {
        doc = JSON.parse(ev.data);
    } catch (_) {
        return;
    }
    const type = doc.type || ev.type;
    if (type === "session.revoked") {
        stop();
        api.forget("This session was ended (signed out elsewhere, or the account was suspended).");
        return;
    }
    live.dispatchEvent(new CustomEvent("event", { detail: { type, data: doc.data || {} } }));
}

async function open(gen) {
    state("connecting");
    let ticket;
    try {
        ticket = (await api.call("POST", "/v1/realtime/tickets")).ticket;
    } catch (err) {
        if (gen !== generation) return;
        if (err.status === 401 || err.status === 403 || !api.signedIn()) {
            stop();
            return;
        }
        return retry(gen);
    }
    if (gen !== generation) return;
    const q = new URLSearchParams({ ticket });
    if (lastEventId) q.set("last_event_id", lastEventId);
    const es = new EventSource("/v1/realtime?" + q.toString());
    source = es;
    es.onopen = () => {
        retryMs = RETRY_MIN_MS;
        state("open");
    };
    es.onmessage = onMessage;
    for (const t of EVENT_TYPES) es.addEventListener(t, onMessage);
    es.onerror = () => {
        if (gen !== generation) return;
        es.close();
        source = null;
        retry(gen);
    };
}

function retry(gen) {
    state("closed");
    clearTimeout(retryTimer);
    // A signed-out console stays closed; otherwise back off and reconnect
    // (the ticket request tells whether the session is still alive).
    if (!api.signedIn()) return;
    retryTimer = setTimeout(() => {
        if (gen === generation) open(gen);
    }, retryMs);
    retryMs = Math.min(RETRY_MAX_MS, retryMs * 2);
}

export function start() {
    stop();
    generation++;
    retryMs = RETRY_MIN_MS;
    open(generation);
}

export function stop() {
    generation++;
    clearTimeout(retryTimer);
    if (source) source.close();
    source = null;
    state("closed");
}
