"""The one clock for every timestamp the hub writes: aware, in UTC."""

import datetime as dt


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)
