"""Time as Godwit stores it: naive UTC (SQLite and MySQL keep no zone).

Kept apart from the database models so that compute agents, which never
open the database, do not import SQLAlchemy just to read the clock.
"""

import datetime


def utcnow():
    return datetime.datetime.now(datetime.UTC).replace(tzinfo=None)
