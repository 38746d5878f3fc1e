"""The API service's state: JSON objects by (kind, id) in SQLite at
$SIMDC_DIR/api.db, one lock (and transaction) around each request."""
import json
import os
import sqlite3
import threading


class Store:
    """JSON objects by (kind, id) in SQLite; one lock serializes all access."""

    def __init__(self):
        self.db = None
        self.lock = threading.RLock()
        self.depth = 0

    def open(self, path):
        os.makedirs(os.path.dirname(path), exist_ok=True)
        self.db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("CREATE TABLE IF NOT EXISTS objects (kind TEXT NOT NULL, "
                        "id TEXT NOT NULL, data TEXT NOT NULL, PRIMARY KEY (kind, id))")

    def __enter__(self):
        self.lock.acquire()
        self.depth += 1
        if self.depth == 1:
            self.db.execute("BEGIN IMMEDIATE")
        return self

    def __exit__(self, exc_type, exc, tb):
        try:
            if self.depth == 1:
                self.db.execute("ROLLBACK" if exc_type else "COMMIT")
        finally:
            self.depth -= 1
            self.lock.release()
        return False

    def get(self, kind, oid):
        row = self.db.execute("SELECT data FROM objects WHERE kind=? AND id=?",
                              (kind, oid)).fetchone()
        return json.loads(row[0]) if row else None

    def put(self, kind, oid, obj):
        self.db.execute("INSERT INTO objects (kind, id, data) VALUES (?, ?, ?) "
                        "ON CONFLICT(kind, id) DO UPDATE SET data=excluded.data",
                        (kind, oid, json.dumps(obj)))

    def delete(self, kind, oid):
        self.db.execute("DELETE FROM objects WHERE kind=? AND id=?", (kind, oid))

    def list(self, kind, prefix=None):
        if prefix is None:
            rows = self.db.execute("SELECT data FROM objects WHERE kind=? ORDER BY rowid",
                                   (kind,))
        else:
            rows = self.db.execute("SELECT data FROM objects WHERE kind=? AND "
                                   "substr(id, 1, ?)=? ORDER BY rowid",
                                   (kind, len(prefix), prefix))
        return [json.loads(r[0]) for r in rows]


# The one store of the process; server.main() opens it.
STORE = Store()
