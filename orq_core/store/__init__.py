"""The run log and saved documents, on SQLite (the embedded default) or PostgreSQL.

``Store.default()`` is the process-wide store for ``$ORQ_PLAYGROUND_DB``; ``store.for_owner(owner)``
is the same store seen by one person (every read and write limited to that person's rows).
"""

from .base import DB_ENV, DEFAULT_DB_PATH, DOC_KINDS, Doc, Store, default_db_path, resolve_location, scrub

__all__ = ["DB_ENV", "DEFAULT_DB_PATH", "DOC_KINDS", "Doc", "Store", "default_db_path", "resolve_location",
           "scrub"]
