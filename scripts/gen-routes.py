#!/usr/bin/env python3
"""gen-routes.py - routes.manifest into C route tables and nginx locations.

  gen-routes.py c POOL MANIFEST     the C table of one pool (stdout)
  gen-routes.py nginx MANIFEST      the nginx locations of every route
  gen-routes.py check MANIFEST ROOT every handler is defined in its file
  gen-routes.py json MANIFEST       the parsed routes (for tests)
  gen-routes.py markdown MANIFEST   the URL-to-file map of docs/architecture.md
  gen-routes.py openapi MANIFEST OPENAPI
                                    every route is documented in OPENAPI with
                                    its method and path, and nothing else is

The manifest's own header says what each column means. Any line this
script cannot read, or two lines for one path that disagree on what nginx
must do there, stop the build with the line number.
"""

import json
import re
import sys

POOLS = ("auth", "billing", "analytics", "admin")
METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")
ACCESS = ("public", "optional", "user", "login")
ROLES = ("admin", "finance", "user")
FLAGS = ("idempotent", "hashes", "bulk", "strict", "unlimited")
# The API-key scope follows the URL: the first matching prefix wins.
SCOPE_PREFIXES = (
    ("/v1/auth/", "auth"), ("/v1/me/", "auth"), ("/v1/me", "auth"),
    ("/.well-known/", "auth"), ("/v1/billing/", "billing"),
    ("/v1/analytics/", "analytics"), ("/v1/admin/", "admin"),
    ("/v1/updates/", "auth"), ("/v1/updates", "auth"), ("/v1/realtime", "auth"),
)
SEGMENT = re.compile(r"^(?:\.?[a-z0-9][a-z0-9._-]*|\{[a-z_]+\})$")
IDENT = re.compile(r"^[a-z_][a-z0-9_]*$")
FILE = re.compile(r"^[a-z]+/[a-z0-9_]+\.c$")


class ManifestError(Exception):
    pass


def scope_of(path):
    for prefix, scope in SCOPE_PREFIXES:
        if path == prefix.rstrip("/") or path.startswith(prefix):
            return scope
    return None


def parse_area(cols, fail):
    """A `*` line: the fallback location of a URL prefix, for paths no
    route declares (the pool answers 404 or 405 after the edge's checks)."""
    _, prefix, pool, access, roles, flags, handler, file = cols
    if not re.match(r"^/(?:[.a-z0-9-]+/)+$", prefix):
        fail(f"an area is a prefix ending in /, not {prefix}")
    if pool not in POOLS:
        fail(f"unknown pool {pool}")
    if access not in ("public", "user"):
        fail("an area is public or user")
    role_list = [] if roles == "-" else roles.split(",")
    if any(r not in ROLES for r in role_list) or (role_list and access != "user"):
        fail(f"bad roles {roles}")
    if (flags, handler, file) != ("-", "-", "-"):
        fail("an area has no flags, handler or file")
    return {"prefix": prefix, "pool": pool, "access": access, "roles": role_list}


def parse(path, with_areas=False):
    routes = []
    areas = []
    seen = set()
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            line = line.split("#", 1)[0].strip()
            if not line:
                continue

            def fail(msg, lineno=lineno):
                raise ManifestError(f"{path}:{lineno}: {msg}")

            cols = line.split()
            if len(cols) != 8:
                fail(f"expected 8 columns, got {len(cols)}")
            method, url, pool, access, roles, flags, handler, file = cols
            if method == "*":
                areas.append(parse_area(cols, fail))
                continue
            if method not in METHODS:
                fail(f"unknown method {method}")
            segments = url.split("/")
            if not url.startswith("/") or url.endswith("/") or \
                    not all(SEGMENT.match(s) for s in segments[1:]):
                fail(f"bad path {url}")
            if pool not in POOLS:
                fail(f"unknown pool {pool}")
            if access not in ACCESS:
                fail(f"unknown access {access}")
            role_list = [] if roles == "-" else roles.split(",")
            for r in role_list:
                if r not in ROLES:
                    fail(f"unknown role {r}")
            if role_list and access not in ("user", "login"):
                fail("roles need access user or login")
            flag_list = [] if flags == "-" else flags.split(",")
            for fl in flag_list:
                if fl not in FLAGS:
                    fail(f"unknown flag {fl}")
            if "strict" in flag_list and "unlimited" in flag_list:
                fail("strict and unlimited contradict each other")
            if handler != "-" and not IDENT.match(handler):
                fail(f"bad handler name {handler}")
            if file != "-" and not FILE.match(file):
                fail(f"bad file {file}")
            if (handler == "-") != (file == "-"):
                fail("a route without a handler has no file either")
            scope = scope_of(url)
            if scope is None:
                fail(f"{url} is under no known scope prefix")
            if (method, url) in seen:
                fail(f"{method} {url} declared twice")
            seen.add((method, url))
            routes.append({
                "line": lineno, "method": method, "path": url, "pool": pool,
                "access": access, "roles": role_list, "flags": flag_list,
                "handler": None if handler == "-" else handler,
                "file": None if file == "-" else file, "scope": scope,
                "params": [s[1:-1] for s in segments if s.startswith("{")],
            })
    check_locations(path, routes)
    return (routes, areas) if with_areas else routes


def edge_of(route):
    """What nginx does at a route's path (must be the same for every
    method of the path)."""
    gateway = {"public": "off", "optional": "optional"}.get(route["access"], "on")
    fl = route["flags"]
    return {
        "pool": route["pool"], "gateway": gateway, "roles": tuple(route["roles"]),
        "strict": "strict" in fl, "unlimited": "unlimited" in fl, "bulk": "bulk" in fl,
    }


def check_locations(path, routes):
    by_path = {}
    for r in routes:
        first = by_path.setdefault(r["path"], r)
        if edge_of(first) != edge_of(r):
            raise ManifestError(
                f"{path}:{r['line']}: {r['method']} {r['path']} disagrees with line "
                f"{first['line']} on pool, access, roles or limits (one nginx location)")


def c_table(routes, pool):
    out = [f"/* Generated by scripts/gen-routes.py from routes.manifest: the {pool}",
           " * pool's routes. Edit the manifest, not this file. */",
           '#include "stoa/app.h"', f'#include "{pool}.h"', "",
           "const stoa_route_t stoa_routes[] = {"]
    n = 0
    for r in routes:
        if r["pool"] != pool or not r["handler"]:
            continue
        bits = {"user": ["STOA_ROUTE_AUTH"], "login": ["STOA_ROUTE_LOGIN"]}.get(
            r["access"], [])
        bits += ["STOA_ROUTE_" + f.upper() for f in r["flags"]
                 if f in ("idempotent", "hashes", "bulk")]
        flags = " | ".join(bits) if bits else "STOA_ROUTE_PUBLIC"
        roles = '"' + " ".join(r["roles"]) + '"' if r["roles"] else "NULL"
        out.append(f'    {{"{r["method"]}", "{r["path"]}", {r["handler"]}, {flags}, '
                   f'{roles}, "{r["scope"]}"}},')
        n += 1
    if n == 0:
        raise ManifestError(f"pool {pool} serves no route")
    out += ["};", "const size_t stoa_routes_len = sizeof(stoa_routes) / sizeof(stoa_routes[0]);",
            ""]
    return "\n".join(out)


def location_match(path):
    if "{" not in path:
        return "= " + path
    parts = []
    for s in path.split("/")[1:]:
        parts.append("[^/]+" if s.startswith("{") else s.replace(".", r"\."))
    return "~ ^/" + "/".join(parts) + "$"


def nginx_locations(routes, areas):
    out = ["# Generated by scripts/gen-routes.py from routes.manifest: one location",
           "# per route path. Edit the manifest, not this file.", ""]
    done = set()
    # Exact locations first for reading; nginx tries them before any regex,
    # and the regexes (paths with a {param}) in this order.
    ordered = sorted(routes, key=lambda r: "{" in r["path"])
    for r in ordered:
        if r["path"] in done:
            continue
        done.add(r["path"])
        methods = " ".join(x["method"] for x in routes if x["path"] == r["path"])
        e = edge_of(r)
        out.append(f"# {methods}")
        out.append(f"location {location_match(r['path'])} {{")
        out.append(f"    api_gateway {e['gateway']};")
        if e["roles"]:
            out.append(f"    api_gateway_roles {' '.join(e['roles'])};")
        if not e["unlimited"]:
            out.append("    limit_req zone=api burst=@BURST_API@ nodelay;")
        if e["strict"]:
            out.append("    limit_req zone=auth_strict burst=@BURST_AUTH@ nodelay;")
        if e["gateway"] != "off":
            out.append("    limit_req zone=per_user burst=@BURST_API@ nodelay;")
        if e["bulk"]:
            out.append("    client_max_body_size 4m;")
            out.append("    client_body_buffer_size 4m;")
        out.append(f"    fastcgi_pass stoa_{e['pool']};")
        out.append("    include @RUN@/nginx/fastcgi_stoa.conf;")
        out.append("}")
    out += ["", "# The areas' fallbacks (paths no route declares)."]
    for a in areas:
        gateway = "on" if a["access"] == "user" else "off"
        body = fallback_body(a["pool"], gateway, a["roles"])
        bare = a["prefix"].rstrip("/")
        # A prefix location ending in / would answer its bare name with a
        # redirect to it.
        if bare not in done:
            out += [f"location = {bare} {{"] + body + ["}"]
        out += [f"location {a['prefix']} {{"] + body + ["}"]
    out.append("")
    return "\n".join(out)


def fallback_body(pool, gateway, roles):
    lines = [f"    api_gateway {gateway};"]
    if roles:
        lines.append(f"    api_gateway_roles {' '.join(roles)};")
    lines.append("    limit_req zone=api burst=@BURST_API@ nodelay;")
    if gateway == "on":
        lines.append("    limit_req zone=per_user burst=@BURST_API@ nodelay;")
    lines += [f"    fastcgi_pass stoa_{pool};", "    include @RUN@/nginx/fastcgi_stoa.conf;"]
    return lines


def markdown_map(routes):
    out = ["| method | path | pool | access | handler file |", "|---|---|---|---|---|"]
    for r in routes:
        access = r["access"] + (f" ({', '.join(r['roles'])})" if r["roles"] else "")
        where = f"`modules/{r['file']}`" if r["file"] else "(not built yet)"
        out.append(f"| {r['method']} | `{r['path']}` | {r['pool']} | {access} | {where} |")
    return "\n".join(out) + "\n"


def check_handlers(routes, root):
    problems = []
    sources = {}
    for r in routes:
        if not r["handler"]:
            continue
        fname = f"{root}/modules/{r['file']}"
        if fname not in sources:
            try:
                with open(fname, encoding="utf-8") as f:
                    sources[fname] = f.read()
            except OSError as err:
                problems.append(f"line {r['line']}: {err}")
                sources[fname] = ""
                continue
        definition = re.compile(r"^int\s+" + r["handler"] + r"\s*\(\s*stoa_request_t\s*\*",
                                re.M)
        if not definition.search(sources[fname]):
            problems.append(f"line {r['line']}: {r['handler']} is not defined in "
                            f"modules/{r['file']}")
    return problems


# Paths docs/openapi.yaml documents that no manifest route declares, each
# with the reason it is not a route.
OPENAPI_ONLY = {
    ("GET", "/healthz"): "answered by nginx itself (nginx/nginx.conf.in), no pool behind it",
}
OPENAPI_METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")


def openapi_template(path):
    """A path with each {param} blanked, so that two spellings of one URL
    template meet; the names are compared apart."""
    return re.sub(r"\{[^}/]*\}", "{}", path)


def check_openapi(routes, document, allowed=None):
    """Every route of the manifest is an operation of the OpenAPI document
    (same method, same path, same parameter names: the manifest writes
    {name} as OpenAPI does), and every operation is a route or listed in
    OPENAPI_ONLY. Operations under webhooks (sent by stoa, not served) are
    not paths. Returns the problems found."""
    allowed = OPENAPI_ONLY if allowed is None else allowed
    problems = []
    paths = document.get("paths") if isinstance(document, dict) else None
    if not isinstance(paths, dict):
        return ["the document has no paths"]
    documented = {}
    for path, item in paths.items():
        if not isinstance(item, dict):
            problems.append(f"{path}: not a path item")
            continue
        for key in item:
            if key in OPENAPI_METHODS:
                documented[(key.upper(), openapi_template(path))] = path
    declared = {}
    for r in routes:
        declared[(r["method"], openapi_template(r["path"]))] = r
    for key, r in declared.items():
        path = documented.get(key)
        route = f"{r['method']} {r['path']} (manifest line {r['line']})"
        if path is None:
            problems.append(f"{route} is not documented")
        elif path != r["path"]:
            problems.append(f"{route} is documented as {path} (parameter names differ)")
    for key, path in sorted(documented.items()):
        if key not in declared and (key[0], path) not in allowed:
            problems.append(f"{key[0]} {path} is documented but no route declares it")
    for method, path in sorted(allowed):
        if documented.get((method, openapi_template(path))) != path:
            problems.append(f"{method} {path} is in OPENAPI_ONLY but not documented: "
                            f"drop it from the list")
    return problems


def load_openapi(path):
    # PyYAML (Debian's python3-yaml) only here: the other subcommands run
    # in the build, with the standard library.
    import yaml
    # libyaml's loader when PyYAML has it: five times faster on this file.
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    with open(path, encoding="utf-8") as f:
        return yaml.load(f, Loader=loader)


def main(argv):
    try:
        if len(argv) == 4 and argv[1] == "c":
            sys.stdout.write(c_table(parse(argv[3]), argv[2]))
        elif len(argv) == 3 and argv[1] == "nginx":
            sys.stdout.write(nginx_locations(*parse(argv[2], with_areas=True)))
        elif len(argv) == 3 and argv[1] == "markdown":
            sys.stdout.write(markdown_map(parse(argv[2])))
        elif len(argv) == 3 and argv[1] == "json":
            routes, areas = parse(argv[2], with_areas=True)
            json.dump({"routes": routes, "areas": areas}, sys.stdout, indent=1)
        elif len(argv) == 4 and argv[1] == "openapi":
            problems = check_openapi(parse(argv[2]), load_openapi(argv[3]))
            for p in problems:
                print(f"{argv[3]} against {argv[2]}: {p}", file=sys.stderr)
            return 1 if problems else 0
        elif len(argv) == 4 and argv[1] == "check":
            problems = check_handlers(parse(argv[2]), argv[3])
            for p in problems:
                print(f"{argv[2]}: {p}", file=sys.stderr)
            return 1 if problems else 0
        else:
            print(__doc__.strip(), file=sys.stderr)
            return 2
    except ManifestError as err:
        print(f"gen-routes: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
