"""stoa_tokens: renders the dev stack's nginx templates (nginx/*.in,
nginx/*.conf, scripts/gen-routes.py output) on the control node, so that a
gateway host runs the very configuration `make run` does, with its own
values for the @TOKEN@ placeholders.

    {{ lookup('ansible.builtin.file', src) | stoa_tokens(values) }}

A token left without a value fails the task: a half-rendered nginx.conf
must never reach a host.
"""

import re

from ansible.errors import AnsibleFilterError

TOKEN = re.compile(r"@([A-Z][A-Z0-9_]*)@")


def stoa_tokens(text, values):
    def value(match):
        name = match.group(1)
        if name not in values:
            raise AnsibleFilterError("stoa_tokens: no value for @%s@" % name)
        return str(values[name])

    return TOKEN.sub(value, text) + "\n"




KEY_LINE = re.compile(r"^\s*([a-z0-9_]+)\s*=")


def stoa_conf(text, values):
    """stoa.conf from stoa.conf.example, as scripts/stack.sh makes the dev
    one: each `key = value` line of a key in values gets that value, the
    other lines (comments, defaults) stay, and keys the example lacks are
    appended in sorted order."""
    out, seen = [], set()
    for line in text.rstrip("\n").split("\n"):
        match = KEY_LINE.match(line)
        if match and match.group(1) in values:
            key = match.group(1)
            line = "%s = %s" % (key, values[key])
            seen.add(key)
        out.append(line)
    for key in sorted(set(values) - seen):
        out.append("%s = %s" % (key, values[key]))
    return "\n".join(out).rstrip("\n") + "\n"


class FilterModule(object):
    def filters(self):
        return {"stoa_tokens": stoa_tokens, "stoa_conf": stoa_conf}
