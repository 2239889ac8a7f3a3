"""The one JSON event format of wsx (connect --jsonl, proxy --tap-format ndjson), checked field by
field, so that every stream is held to the same schema (the man page's EVENT FORMAT section).

check_event(line_or_dict, dirs=..., conn=...) raises AssertionError naming what is wrong, and
returns the event with one extra key, "payload": the bytes the event carries (None for events
without a payload)."""
import base64
import binascii
import datetime
import json
import re

# Every key, in the order wsx writes them.
ORDER = ("ts", "conn", "dir", "type", "code", "reason", "len", "encoding", "data")
TYPES = ("text", "binary", "ping", "pong", "close", "open", "error")
PAYLOAD_TYPES = ("text", "binary", "ping", "pong")
ENCODINGS = ("utf8", "base64")
TS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$")

CONNECT_DIRS = ("in", "out")
TAP_DIRS = ("up", "down")


def _fail(e, what):
    raise AssertionError(f"{what}: {e!r}")


def parse_ts(ts):
    """An RFC 3339 UTC timestamp with microseconds, as a timezone-aware datetime."""
    if not isinstance(ts, str) or not TS.match(ts):
        raise AssertionError(f"ts is not RFC 3339 UTC with microseconds: {ts!r}")
    t = datetime.datetime.fromisoformat(ts[:-1] + "+00:00")
    assert t.utcoffset() == datetime.timedelta(0), ts
    return t


def check_event(event, dirs=None, conn=False):
    e = json.loads(event) if isinstance(event, (str, bytes)) else dict(event)
    if not isinstance(e, dict):
        _fail(e, "not a JSON object")
    unknown = [k for k in e if k not in ORDER]
    if unknown:
        _fail(e, f"unknown keys {unknown}")
    keys = list(e)
    if keys != sorted(keys, key=ORDER.index):
        _fail(e, f"keys out of order (want {ORDER})")
    for k in ("ts", "type"):
        if k not in e:
            _fail(e, f"no {k}")
    parse_ts(e["ts"])
    t = e["type"]
    if t not in TYPES:
        _fail(e, f"type {t!r} not one of {TYPES}")
    if dirs is not None and e.get("dir") not in dirs:
        _fail(e, f"dir not one of {dirs}")
    if conn:
        if not isinstance(e.get("conn"), int) or isinstance(e.get("conn"), bool) or e["conn"] < 1:
            _fail(e, "conn is not a positive integer")
    elif "conn" in e:
        _fail(e, "conn in a stream of one connection")

    payload = None
    if t in PAYLOAD_TYPES:
        for k in ("len", "encoding", "data"):
            if k not in e:
                _fail(e, f"{t} without {k}")
        if e["encoding"] not in ENCODINGS:
            _fail(e, f"encoding not one of {ENCODINGS}")
        if not isinstance(e["data"], str) or not isinstance(e["len"], int):
            _fail(e, "data must be a string and len an integer")
        if t == "binary" and e["encoding"] != "base64":
            _fail(e, "a binary message is always base64")
        if e["encoding"] == "utf8":
            payload = e["data"].encode("utf-8")
        else:
            try:
                payload = base64.b64decode(e["data"], validate=True)
            except binascii.Error as x:
                _fail(e, f"data is not base64 ({x})")
            if t != "binary":
                try:
                    payload.decode("utf-8")
                except UnicodeDecodeError:
                    pass
                else:
                    _fail(e, "valid UTF-8 text must be utf8, not base64")
        if len(payload) != e["len"]:
            _fail(e, f"len {e['len']} but the data is {len(payload)} bytes")
        if "code" in e or "reason" in e:
            _fail(e, "code/reason outside a close")
    else:
        for k in ("len", "encoding", "data"):
            if k in e:
                _fail(e, f"{k} in a {t} event")
        if t == "close":
            if not isinstance(e.get("reason"), str):
                _fail(e, "close without a string reason")
            if "code" in e and (not isinstance(e["code"], int) or not 1000 <= e["code"] <= 4999):
                _fail(e, "close code outside 1000-4999")
            if e.get("code") == 1005:
                _fail(e, "code 1005 (no code): the event leaves code out instead")
        elif t == "error":
            if "code" in e:
                _fail(e, "code in an error event")
        elif "code" in e or "reason" in e:
            _fail(e, f"code/reason in a {t} event")
    e["payload"] = payload
    return e


def check_lines(text, dirs=None, conn=False):
    """Every line of `text` (str or bytes) as a checked event."""
    if isinstance(text, bytes):
        text = text.decode("utf-8")
    # Not splitlines(): it would also split at U+2028 and others, which JSON strings may hold.
    lines = text.split("\n")
    return [check_event(line, dirs=dirs, conn=conn) for line in lines if line.strip()]


def describe(e):
    """What a stream says of one message or close, whoever wrote it: everything but ts, conn and dir."""
    return {k: v for k, v in e.items() if k not in ("ts", "conn", "dir", "payload")}
