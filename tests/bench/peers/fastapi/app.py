"""GET /v1/me as a careful FastAPI developer would write it: the peer stoa
is measured against (SPEC §9, tests/bench/peer.py).

It does the work stoa's gateway and auth pool do for the same route, on
the same stores:
- the bearer token is verified with ES256 against the stack's JWKS file
  (keys_dir/jwks.json; an unknown kid re-reads it, at most once a second),
  with the same issuer, audience and 30 s leeway as the gateway;
- the revocation check of modules/common/revoke.c: one MGET of rv:u:<user>,
  rv:s:<session> and rv:synced in Redis; a marker refuses, the sentinel
  admits, and without it Postgres decides (user active, session live);
- the profile from the Redis cache (me:<user id>, the JSON object stoa
  caches), and on a miss from Postgres with the same columns, cached back
  for 300 s;
- errors in the API's JSON error shape, with the request id nginx sends.

Configuration: PEER_CONFIG names the stack's stoa.conf (database_url,
redis_url, keys_dir, jwt_issuer, jwt_audience are read from it; STOA_<KEY>
overrides as for stoa). PEER_TOKEN_CACHE=1 adds a per-worker cache of
verified tokens (as stoa's gateway has); off by default, as in FastAPI's
own tutorials.

Debian's python3-fastapi, python3-uvicorn, python3-jwt, python3-redis and
python3-asyncpg.
"""

import json
import os
import re
import time

import asyncpg
import jwt
import redis.asyncio as aioredis
from fastapi import FastAPI, Request
from fastapi.responses import Response

LEEWAY_S = 30
PROFILE_CACHE_TTL_S = 300
JWKS_RELOAD_MIN_S = 1.0
TOKEN_CACHE_SIZE = 10000

# The same statements as stoa's (modules/common/revoke.c and the auth
# pool's user_by_id).
REVOKE_CHECK = (
    "SELECT (u.status = 'active') AND ($2::uuid IS NULL OR EXISTS ("
    " SELECT 1 FROM auth.sessions s WHERE s.id = $2::uuid AND"
    " s.user_id = u.id AND s.revoked_at IS NULL AND s.expires_at > now()))"
    " FROM auth.users u WHERE u.id = $1::uuid")
USER_BY_ID = (
    "SELECT u.id::text, u.email, u.name, u.role, u.email_verified_at IS NOT NULL, "
    "to_char(u.created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'), "
    "u.notification_prefs::text, EXISTS (SELECT 1 FROM auth.mfa_totp m WHERE "
    "m.user_id = u.id AND m.confirmed_at IS NOT NULL) "
    "FROM auth.users u WHERE u.id = $1::uuid AND u.status <> 'deleted'")
UUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
SANE_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,128}$")


def read_config(path):
    conf = {}
    with open(path) as f:
        for line in f:
            m = re.match(r"\s*([a-z0-9_]+)\s*=\s*(.*?)\s*$", line)
            if m and not line.lstrip().startswith("#"):
                conf[m.group(1)] = m.group(2)
    for key in list(conf):
        env = os.environ.get("STOA_" + key.upper())
        if env is not None:
            conf[key] = env
    return conf


def conninfo_kwargs(conninfo):
    """asyncpg keywords from a libpq "key=value" string (the stack's form)."""
    names = {"host": "host", "port": "port", "dbname": "database", "user": "user",
             "password": "password"}
    out = {}
    for key, value in re.findall(r"(\w+)=(\S+)", conninfo):
        if key in names:
            out[names[key]] = int(value) if key == "port" else value
    return out


class Keys:
    """The JWKS file's keys by kid; re-read on an unknown kid, at most once
    a second, so a rotation needs no restart."""

    def __init__(self, path):
        self.path = path
        self.keys = {}
        self.loaded_at = 0.0
        self.load()

    def load(self):
        self.loaded_at = time.monotonic()
        with open(self.path) as f:
            doc = json.load(f)
        keys = {}
        for jwk in doc.get("keys", []):
            if jwk.get("kty") == "EC" and jwk.get("crv") == "P-256" and jwk.get("kid"):
                keys[jwk["kid"]] = jwt.PyJWK(jwk, algorithm="ES256").key
        self.keys = keys

    def get(self, kid):
        key = self.keys.get(kid)
        if key is None and time.monotonic() - self.loaded_at >= JWKS_RELOAD_MIN_S:
            try:
                self.load()
            except (OSError, ValueError, jwt.PyJWKError):
                return None
            key = self.keys.get(kid)
        return key


class Unauthenticated(Exception):
    pass


app = FastAPI(openapi_url=None, docs_url=None, redoc_url=None)
state = {}


@app.on_event("startup")
async def startup():
    conf = read_config(os.environ["PEER_CONFIG"])
    state["issuer"] = conf.get("jwt_issuer", "https://127.0.0.1:8443")
    state["audience"] = conf.get("jwt_audience", "stoa")
    state["keys"] = Keys(os.path.join(conf["keys_dir"], "jwks.json"))
    state["redis"] = aioredis.from_url(conf["redis_url"], socket_timeout=0.5,
                                       socket_connect_timeout=0.5)
    state["db"] = await asyncpg.create_pool(min_size=1, max_size=8,
                                            command_timeout=5,
                                            **conninfo_kwargs(conf["database_url"]))
    state["token_cache"] = {} if os.environ.get("PEER_TOKEN_CACHE") == "1" else None


@app.on_event("shutdown")
async def shutdown():
    await state["db"].close()
    await state["redis"].close()


def request_id(request):
    rid = request.headers.get("x-request-id", "")
    return rid if SANE_REQUEST_ID.match(rid) else os.urandom(16).hex()


def error(request, status, code, message, extra_headers=None):
    rid = request_id(request)
    body = json.dumps({"error": {"code": code, "message": message, "details": {}},
                       "request_id": rid}, separators=(",", ":"))
    headers = {"X-Request-Id": rid}
    headers.update(extra_headers or {})
    return Response(body, status_code=status, media_type="application/json", headers=headers)


def verify(authorization):
    """The token's claims, or Unauthenticated."""
    if not authorization or not authorization.startswith("Bearer "):
        raise Unauthenticated("missing bearer token")
    token = authorization[7:].strip()
    cache = state["token_cache"]
    if cache is not None:
        claims = cache.get(token)
        if claims is not None and claims["exp"] + LEEWAY_S > time.time():
            return claims
    try:
        header = jwt.get_unverified_header(token)
    except jwt.PyJWTError:
        raise Unauthenticated("malformed token") from None
    if header.get("alg") != "ES256":
        raise Unauthenticated("unexpected algorithm")
    key = state["keys"].get(header.get("kid"))
    if key is None:
        raise Unauthenticated("unknown key")
    try:
        claims = jwt.decode(token, key, algorithms=["ES256"], audience=state["audience"],
                            issuer=state["issuer"], leeway=LEEWAY_S,
                            options={"require": ["exp", "iat", "nbf", "sub", "iss", "aud"]})
    except jwt.PyJWTError:
        raise Unauthenticated("invalid token") from None
    if not isinstance(claims.get("sub"), str) or not UUID.match(claims["sub"]):
        raise Unauthenticated("invalid subject")
    sid = claims.get("sid")
    if sid is not None and (not isinstance(sid, str) or not UUID.match(sid)):
        raise Unauthenticated("invalid session")
    if cache is not None:
        if len(cache) >= TOKEN_CACHE_SIZE:
            cache.clear()
        cache[token] = claims
    return claims


async def session_live(user_id, session_id):
    """True, False, or None when neither Redis nor Postgres can tell."""
    try:
        user_mark, session_mark, synced = await state["redis"].mget(
            f"rv:u:{user_id}", f"rv:s:{session_id or '-'}", "rv:synced")
        if user_mark is not None or session_mark is not None:
            return False
        if synced is not None:
            return True
    except (aioredis.RedisError, OSError):
        pass
    try:
        async with state["db"].acquire() as conn:
            return bool(await conn.fetchval(REVOKE_CHECK, user_id, session_id))
    except (asyncpg.PostgresError, OSError):
        return None


def profile_json(row):
    prefs = row[6] if row[6] is not None else "{}"
    body = ('{"id":%s,"email":%s,"name":%s,"role":%s,"email_verified":%s,'
            '"mfa_enabled":%s,"created_at":%s,"notification_prefs":%s}') % (
        json.dumps(row[0]), json.dumps(row[1]), json.dumps(row[2]), json.dumps(row[3]),
        "true" if row[4] else "false", "true" if row[7] else "false",
        json.dumps(row[5]), prefs)
    return body.encode()


@app.get("/v1/me")
async def me(request: Request):
    try:
        claims = verify(request.headers.get("authorization"))
    except Unauthenticated as e:
        return error(request, 401, "unauthenticated", str(e),
                     {"WWW-Authenticate": 'Bearer error="invalid_token"'})
    user_id = claims["sub"]
    live = await session_live(user_id, claims.get("sid"))
    if live is None:
        return error(request, 503, "unavailable", "a dependency is unavailable")
    if not live:
        return error(request, 401, "unauthenticated", "the session has been revoked",
                     {"WWW-Authenticate": 'Bearer error="invalid_token"'})
    key = f"me:{user_id}"
    try:
        cached = await state["redis"].get(key)
    except (aioredis.RedisError, OSError):
        cached = None
    if cached is None:
        try:
            async with state["db"].acquire() as conn:
                row = await conn.fetchrow(USER_BY_ID, user_id)
        except (asyncpg.PostgresError, OSError):
            return error(request, 503, "unavailable", "a dependency is unavailable")
        if row is None:
            return error(request, 404, "not_found", "no such user")
        cached = profile_json(row)
        try:
            await state["redis"].set(key, cached, ex=PROFILE_CACHE_TTL_S)
        except (aioredis.RedisError, OSError):
            pass
    return Response(cached, media_type="application/json",
                    headers={"X-Request-Id": request_id(request)})
