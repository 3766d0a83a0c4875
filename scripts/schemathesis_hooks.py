"""Schemathesis hooks for scripts/schemathesis.

One rule of the collector depends on its clock, so JSON Schema cannot state it: an
event's `ts` may be at most 24 hours ahead of the collector's time (the document says so
in the field's description). Generated times past that are moved to now; every other
generated value reaches the collector as drawn.
"""

import datetime

import schemathesis

AHEAD = datetime.timedelta(hours=24)


def _within_clock(event):
    if not isinstance(event, dict) or not isinstance(event.get("ts"), str):
        return
    try:
        ts = datetime.datetime.fromisoformat(event["ts"].replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        return
    if ts.tzinfo is None:
        return
    now = datetime.datetime.now(datetime.timezone.utc)
    if ts > now + AHEAD:
        event["ts"] = now.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _events_of(body):
    if not isinstance(body, dict):
        return []
    if isinstance(body.get("events"), list):
        return body["events"]
    if "payload" in body:
        return [body["payload"], *_events_of(body["payload"])]
    return [body]


@schemathesis.hook
def map_body(ctx, body):
    for event in _events_of(body):
        _within_clock(event)
    return body


# Stats periods: `from` must be before `to`, and the period may hold at most 5,000
# buckets (both stated in the parameters' descriptions; JSON Schema cannot relate two
# parameters). Generated periods that break them are narrowed to one bucket before `to`.
BUCKET_HOURS = {"hour": 1, "day": 24, "week": 168}
MAX_BUCKETS = 5_000


def _parse(text):
    try:
        value = datetime.datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except (TypeError, ValueError, AttributeError):
        return None
    return value if value.tzinfo is not None else None


def _within_period(params):
    if not isinstance(params, dict) or not isinstance(params.get("from"), str):
        return
    start = _parse(params["from"])
    end = _parse(params["to"]) if isinstance(params.get("to"), str) else datetime.datetime.now(datetime.timezone.utc)
    hours = BUCKET_HOURS.get(params.get("bucket", "day"))
    if start is None or end is None or hours is None:
        return
    if start >= end or (end - start) > datetime.timedelta(hours=hours * MAX_BUCKETS):
        params["from"] = (end - datetime.timedelta(hours=hours)).isoformat()


@schemathesis.hook
def map_query(ctx, query):
    _within_period(query)
    return query


_map_events = map_body


@schemathesis.hook("map_body")
def map_body_with_periods(ctx, body):
    body = _map_events(ctx, body)
    if isinstance(body, dict) and body.get("action") == "stats.get":
        _within_period(body.get("payload"))
    return body
