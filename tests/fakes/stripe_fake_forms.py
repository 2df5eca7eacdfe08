"""Stripe's request wire format for the fake (stripe_fake.py): its error
bodies, form bodies in bracket notation parsed and coerced against what each
endpoint accepts, and the metadata and interval rules. Stdlib only.
"""
import calendar
import copy
import datetime
import re
import urllib.parse

# --- errors ------------------------------------------------------------------

class StripeError(Exception):
    """An API failure, rendered as Stripe's {"error": {...}} body."""

    def __init__(self, status, message, type_="invalid_request_error",
                 code=None, param=None, headers=None):
        super().__init__(message)
        self.status, self.message, self.type = status, message, type_
        self.code, self.param, self.headers = code, param, headers or {}

    def body(self):
        err = {"type": self.type, "message": self.message}
        if self.code:
            err["code"] = self.code
            err["doc_url"] = ("https://stripe.com/docs/error-codes/"
                              + self.code.replace("_", "-"))
        if self.param:
            err["param"] = self.param
        return {"error": err}


def missing(param):
    return StripeError(400, f"Missing required param: {param}.",
                       code="parameter_missing", param=param)


def no_such(kind, oid, param="id", status=404):
    # A bad id in the URL is a 404; a bad id given as a parameter, a 400.
    return StripeError(status, f"No such {kind}: '{oid}'",
                       code="resource_missing", param=param)


def invalid(param, message):
    return StripeError(400, message, param=param)


# --- form bodies -------------------------------------------------------------

_KEY = re.compile(r"([^\[\]]+)((?:\[[^\[\]]*\])*)\Z")


def parse_form(text):
    """Stripe's bracket notation into nested dicts and lists of strings:
    metadata[a]=1 -> {"metadata": {"a": "1"}}; expand[]=x&expand[]=y ->
    {"expand": ["x", "y"]}; items[0][price]=p -> {"items": [{"price": "p"}]}.
    Typing the leaves is each endpoint's business (see coerce)."""
    root = {}
    for key, value in urllib.parse.parse_qsl(text, keep_blank_values=True):
        m = _KEY.match(key)
        if not m:
            raise invalid(key, f"Invalid parameter name: {key}")
        parts = [m.group(1)] + re.findall(r"\[([^\[\]]*)\]", m.group(2))
        node = root
        for i, part in enumerate(parts[:-1]):
            if parts[i + 1] == "":               # name[] appends
                lst = node.setdefault(part, [])
                if i + 2 != len(parts) or not isinstance(lst, list):
                    raise invalid(key, f"Invalid array: {key}")
                lst.append(value)
                break
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise invalid(key, f"Invalid hash: {key}")
        else:
            if isinstance(node.get(parts[-1]), (dict, list)):
                raise invalid(key, f"Invalid hash: {key}")
            node[parts[-1]] = value
    return _arrayify(root)


def _arrayify(node, parent=None):
    """Hashes whose keys are all indices become lists in index order;
    metadata keys stay keys even when they look like numbers."""
    if not isinstance(node, dict):
        return node
    node = {k: _arrayify(v, k) for k, v in node.items()}
    if node and parent not in ("metadata", None) and all(k.isdigit() for k in node):
        return [node[k] for k in sorted(node, key=int)]
    return node


def coerce(value, spec, name=""):
    """Checks a parameter (the whole form when spec is a dict) against its
    spec and types it. Specs: "str", "int", "bool", "meta" (metadata), a
    tuple (one of those strings), a dict (a hash allowing exactly those
    keys), a one-element list (an array of that spec). An empty value unsets
    a field for Stripe: it becomes None ("" for strings)."""
    if value == "" and spec != "str":
        return None
    if isinstance(spec, dict):
        if not isinstance(value, dict):
            raise invalid(name, f"Invalid hash: {name}")
        out = {}
        for key, sub in value.items():
            full = f"{name}[{key}]" if name else key
            if key not in spec:
                raise StripeError(400, f"Received unknown parameter: {full}",
                                  code="parameter_unknown", param=full)
            out[key] = coerce(sub, spec[key], full)
        return out
    if isinstance(spec, list):
        if not isinstance(value, list):
            raise invalid(name, f"Invalid array: {name}")
        return [coerce(v, spec[0], f"{name}[{i}]") for i, v in enumerate(value)]
    if spec == "meta":
        # Stripe's limits: 50 keys, keys up to 40 characters, values 500.
        if not isinstance(value, dict) or len(value) > 50:
            raise invalid(name, "Invalid metadata: a hash of at most 50 keys.")
        for key, v in value.items():
            if not isinstance(v, str) or len(key) > 40 or len(v) > 500:
                raise invalid(f"{name}[{key}]", "Invalid metadata: keys have up "
                              "to 40 characters, values up to 500.")
        return value
    if not isinstance(value, str):
        raise invalid(name, f"Invalid {name}: expected a single value.")
    if isinstance(spec, tuple):
        if value not in spec:
            raise invalid(name, f"Invalid {name}: must be one of {', '.join(spec)}")
        return value
    if spec == "int":
        if not re.fullmatch(r"-?\d{1,18}", value):
            raise StripeError(400, f"Invalid integer: {value}",
                              code="parameter_invalid_integer", param=name)
        return int(value)
    if spec == "bool":
        if value not in ("true", "false"):
            raise invalid(name, f"Invalid boolean: {value}")
        return value == "true"
    return value


def require(params, key, prefix=""):
    name = f"{prefix}[{key}]" if prefix else key
    if params.get(key) == "":
        raise StripeError(400, f"You passed an empty string for '{name}'; it "
                          "cannot be unset.", code="parameter_invalid_empty",
                          param=name)
    if params.get(key) is None:
        raise missing(name)
    return params[key]


def with_metadata(current, params):
    """Stripe merges metadata: metadata[k]= deletes k, metadata= clears all,
    other keys are set; no metadata leaves it as it was."""
    if "metadata" not in params:
        return dict(current)
    out = dict(current) if params["metadata"] is not None else {}
    for key, value in (params["metadata"] or {}).items():
        if value == "":
            out.pop(key, None)
        else:
            out[key] = value
    return out


def add_interval(ts, interval, count=1):
    """ts plus count intervals; months are calendar months (Jan 31 + 1 month
    = Feb 28/29), as Stripe bills."""
    if interval in ("day", "week"):
        return ts + count * 86400 * (7 if interval == "week" else 1)
    d = datetime.datetime.fromtimestamp(ts, datetime.timezone.utc)
    months = d.month - 1 + count * (12 if interval == "year" else 1)
    year, month = d.year + months // 12, months % 12 + 1
    day = min(d.day, calendar.monthrange(year, month)[1])
    return int(d.replace(year=year, month=month, day=day).timestamp())


def changed(before, after):
    """previous_attributes of an *.updated event: old values of what moved."""
    return {k: copy.deepcopy(before.get(k)) for k in after
            if before.get(k) != after.get(k)}


# --- what each endpoint accepts (anything else: parameter_unknown) -------------

CUSTOMER = {"email": "str", "name": "str", "description": "str",
            "phone": "str", "metadata": "meta"}
PRODUCT = {"name": "str", "description": "str", "active": "bool",
           "metadata": "meta", "url": "str"}
# Prices are immutable but for these: anything else in an update is unknown.
PRICE_UPDATE = {"active": "bool", "metadata": "meta", "nickname": "str",
                "lookup_key": "str"}
PRICE = {**PRICE_UPDATE, "product": "str", "unit_amount": "int",
         "currency": "str",
         "recurring": {"interval": ("day", "week", "month", "year"),
                       "interval_count": "int"}}
CHECKOUT = {"mode": ("payment", "setup", "subscription"), "customer": "str",
            "customer_email": "str", "client_reference_id": "str",
            "success_url": "str", "cancel_url": "str", "metadata": "meta",
            "line_items": [{"price": "str", "quantity": "int"}],
            "subscription_data": {"metadata": "meta", "description": "str",
                                  "trial_period_days": "int"},
            "allow_promotion_codes": "bool", "locale": "str",
            "payment_method_types": ["str"], "expires_at": "int"}
PORTAL = {"customer": "str", "return_url": "str", "locale": "str"}
SUBSCRIPTION_UPDATE = {"cancel_at_period_end": "bool", "metadata": "meta",
                       "description": "str"}

# URL segment -> object type, for GET /v1/<segment>/<id>.
RETRIEVABLE = {"customers": "customer", "products": "product",
               "prices": "price", "subscriptions": "subscription",
               "invoices": "invoice", "charges": "charge", "events": "event",
               "checkout/sessions": "checkout.session"}
