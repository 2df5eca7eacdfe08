// api.js - the console's only way to the stoa API: same origin, JSON, the
// error shape of SPEC §3 turned into ApiError, and the tokens.
//
// Where the tokens live: in this module's variables, in memory only, for
// the life of the page. Neither the access token nor the refresh token is
// ever written to localStorage, sessionStorage, IndexedDB or a cookie, so
// a script that ever ran on this origin (or a browser extension reading
// storage, or a copied profile) finds nothing to take away, and the API
// needs no cookie and so no CSRF defence. The price is a sign-in after a
// reload or in a new tab: each tab is its own session, which the session
// list shows and can end.
//
// Rotation: the API rotates the refresh token on every use and treats a
// spent one presented again (after its short grace window) as theft,
// ending the whole session. So there is never more than one refresh in
// flight: every caller that needs fresh tokens awaits the same promise,
// and the tokens it yields replace the old pair before anyone can use the
// old refresh token again. Tabs share no tokens, so they cannot race.

const REFRESH_AHEAD_MS = 60 * 1000;

let accessToken = null;
let refreshToken = null;
let accessExpiresAt = 0;
let currentUser = null;
let refreshing = null;
let refreshTimer = null;

// "signedin" (detail: user), "signedout" (detail: {reason}), "busy"
// (detail: number of requests in flight).
export const events = new EventTarget();
let inFlight = 0;

export class ApiError extends Error {
    constructor(status, code, message, details, requestId) {
        super(message || code || `HTTP ${status}`);
        this.status = status;
        this.code = code || "http_" + status;
        this.details = details || {};
        this.requestId = requestId || null;
    }

    // Each bad field of a 400 invalid_request, as "field: reason".
    fieldList() {
        const fields = this.details && this.details.fields;
        if (!fields || typeof fields !== "object") return [];
        return Object.entries(fields).map(([k, v]) => `${k}: ${v}`);
    }
}

export function user() {
    return currentUser;
}

export function signedIn() {
    return accessToken !== null;
}

export function hasRole(...roles) {
    return currentUser !== null && roles.includes(currentUser.role);
}

function busy(delta) {
    inFlight += delta;
    events.dispatchEvent(new CustomEvent("busy", { detail: inFlight }));
}

function url(path, query) {
    const u = new URL(path, location.origin);
    for (const [k, v] of Object.entries(query || {})) {
        if (v !== undefined && v !== null && v !== "") u.searchParams.set(k, String(v));
    }
    return u.pathname + u.search;
}

async function parse(resp) {
    if (resp.status === 204) return null;
    const text = await resp.text();
    if (!text) return null;
    try {
        return JSON.parse(text);
    } catch (_) {
        return { _text: text };
    }
}

function errorOf(resp, doc) {
    const e = (doc && doc.error) || {};
    return new ApiError(resp.status, e.code, e.message || resp.statusText,
        e.details, (doc && doc.request_id) || resp.headers.get("X-Request-Id"));
}

// One HTTP exchange, no retry. Resolves to {resp, doc}.
async function exchange(method, path, { body, query, token, idempotent } = {}) {
    const headers = { Accept: "application/json" };
    if (token) headers.Authorization = "Bearer " + token;
    if (body !== undefined) headers["Content-Type"] = "application/json";
    if (idempotent) headers["Idempotency-Key"] = crypto.randomUUID();
    busy(1);
    try {
        const resp = await fetch(url(path, query), {
            method,
            headers,
            body: body === undefined ? undefined : JSON.stringify(body),
            credentials: "omit",
            cache: "no-store",
        });
        return { resp, doc: await parse(resp) };
    } catch (err) {
        throw new ApiError(0, "network_error", "The server could not be reached: " + err.message);
    } finally {
        busy(-1);
    }
}

function scheduleRefresh(expiresIn) {
    clearTimeout(refreshTimer);
    const ms = Math.max(5000, expiresIn * 1000 - REFRESH_AHEAD_MS);
    refreshTimer = setTimeout(() => {
        refreshTokens().catch(() => {});
    }, ms);
}

function takeTokens(doc) {
    accessToken = doc.access_token;
    refreshToken = doc.refresh_token;
    accessExpiresAt = Date.now() + doc.expires_in * 1000;
    scheduleRefresh(doc.expires_in);
}

// Forgets every token and tells the page. reason: shown on the sign-in
// page (null for a sign-out the user asked for).
export function forget(reason) {
    const was = accessToken !== null;
    accessToken = refreshToken = null;
    accessExpiresAt = 0;
    currentUser = null;
    clearTimeout(refreshTimer);
    if (was) events.dispatchEvent(new CustomEvent("signedout", { detail: { reason } }));
}

// The single refresh in flight, shared by every caller (see the top).
export function refreshTokens() {
    if (refreshing) return refreshing;
    const spent = refreshToken;
    if (!spent) return Promise.reject(new ApiError(401, "unauthenticated", "Not signed in"));
    refreshing = (async () => {
        const { resp, doc } = await exchange("POST", "/v1/auth/refresh", {
            body: { refresh_token: spent },
        });
        if (!resp.ok) {
            const err = errorOf(resp, doc);
            // Only an answer about the token ends the sign-in; a network
            // failure or a 503 leaves the tokens for the next try.
            if (resp.status === 401 || resp.status === 400) {
                forget("Your session has ended: " + err.message);
            }
            throw err;
        }
        // A sign-out that happened while this was in flight wins.
        if (refreshToken === spent) takeTokens(doc);
        return accessToken;
    })().finally(() => {
        refreshing = null;
    });
    return refreshing;
}

async function validAccessToken() {
    if (refreshing) return refreshing;
    if (accessToken && Date.now() < accessExpiresAt - 5000) return accessToken;
    if (refreshToken) return refreshTokens();
    return accessToken;
}

// The API call of every page: resolves to the parsed body (null for 204),
// rejects with ApiError. A 401 after a token was sent is retried once with
// refreshed tokens; a second one signs the console out.
export async function call(method, path, opts = {}) {
    let token = opts.anonymous ? null : await validAccessToken();
    let { resp, doc } = await exchange(method, path, { ...opts, token });
    if (resp.status === 401 && token && !opts.anonymous) {
        try {
            // Tokens another call refreshed meanwhile are tried as they
            // are; only the pair this call used is refreshed.
            token = accessToken && accessToken !== token ? accessToken : await refreshTokens();
        } catch (err) {
            forget("Your session has ended: " + err.message);
            throw err;
        }
        ({ resp, doc } = await exchange(method, path, { ...opts, token }));
        if (resp.status === 401) {
            const err = errorOf(resp, doc);
            forget("Your session has ended: " + err.message);
            throw err;
        }
    }
    if (!resp.ok) throw errorOf(resp, doc);
    return doc;
}

async function finishSignIn(doc) {
    takeTokens(doc);
    currentUser = doc.user || null;
    if (!currentUser) currentUser = await call("GET", "/v1/me");
    events.dispatchEvent(new CustomEvent("signedin", { detail: currentUser }));
    return { user: currentUser };
}

// Resolves to {user} when signed in, or {mfaToken} when the account needs
// its second factor (then call verifyMfa).
export async function signIn(email, password) {
    const { resp, doc } = await exchange("POST", "/v1/auth/login", {
        body: { email, password },
    });
    if (resp.ok) return finishSignIn(doc);
    const err = errorOf(resp, doc);
    if (err.code === "mfa_required" && err.details.mfa_token) {
        return { mfaToken: err.details.mfa_token };
    }
    throw err;
}

// code: a 6-digit TOTP code, or a recovery code when recovery is true.
export async function verifyMfa(mfaToken, code, recovery) {
    const body = { mfa_token: mfaToken };
    if (recovery) body.recovery_code = code;
    else body.code = code;
    const { resp, doc } = await exchange("POST", "/v1/auth/mfa/verify", { body });
    if (!resp.ok) throw errorOf(resp, doc);
    return finishSignIn(doc);
}

export async function signOut() {
    if (accessToken) {
        try {
            await exchange("POST", "/v1/auth/logout", { token: await validAccessToken() });
        } catch (_) {
            // Signed out here whatever the server said.
        }
    }
    forget(null);
}

// The profile changed (PATCH /v1/me): keep the copy the header shows.
export function setUser(u) {
    currentUser = u;
}
