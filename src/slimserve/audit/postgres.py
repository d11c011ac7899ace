"""The PostgreSQL audit sink (psycopg 3, imported only when DATABASE_URL is set) and the audit query."""

from __future__ import annotations

from datetime import datetime

import psycopg

from slimserve.audit.records import FIELDS

TABLE = "slimserve_audit"
SCHEMA = f"""
CREATE TABLE IF NOT EXISTS {TABLE} (
    record_id text PRIMARY KEY,
    time timestamptz NOT NULL,
    request_id text NOT NULL,
    principal text,
    model text,
    model_version text,
    route text,
    status integer NOT NULL,
    outcome text NOT NULL,
    latency_ms double precision,
    input_sha256 text,
    patient_ref text
);
CREATE INDEX IF NOT EXISTS {TABLE}_patient_ref ON {TABLE} (patient_ref);
CREATE INDEX IF NOT EXISTS {TABLE}_time ON {TABLE} (time);
"""
# record_id makes a retried batch idempotent: a commit whose acknowledgement was lost is not stored twice.
INSERT = (f"INSERT INTO {TABLE} ({', '.join(FIELDS)}) VALUES ({', '.join(['%s'] * len(FIELDS))}) "
          "ON CONFLICT (record_id) DO NOTHING")


class PostgresSink:
    """Writes batches in one transaction; reconnects after any failure (the writer retries the batch)."""

    name = "postgresql"

    def __init__(self, url: str, connect_timeout: int = 3) -> None:
        self.url = url
        self.connect_timeout = connect_timeout
        self.conn: psycopg.Connection | None = None

    def _connection(self) -> psycopg.Connection:
        if self.conn is None or self.conn.closed:
            conn = psycopg.connect(self.url, connect_timeout=self.connect_timeout, autocommit=False)
            with conn.transaction():
                conn.execute(SCHEMA)
            self.conn = conn
        return self.conn

    def write(self, records: list[dict]) -> None:
        """Insert the records; raises on any database error after dropping the connection."""
        try:
            conn = self._connection()
            with conn.transaction(), conn.cursor() as cur:
                cur.executemany(INSERT, [tuple(r[f] for f in FIELDS) for r in records])
        except Exception:
            if self.conn is not None:
                self.conn.close()
            self.conn = None
            raise


def query(url: str, *, patient_ref: str | None = None, since: datetime | None = None,
          model: str | None = None, limit: int = 1000) -> list[dict]:
    """Records matching every given filter, oldest first."""
    clauses, params = [], []
    for column, op, value in (("patient_ref", "=", patient_ref), ("time", ">=", since), ("model", "=", model)):
        if value is not None:
            clauses.append(f"{column} {op} %s")
            params.append(value)
    where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
    with psycopg.connect(url, connect_timeout=5) as conn:
        rows = conn.execute(f"SELECT {', '.join(FIELDS)} FROM {TABLE} {where} ORDER BY time LIMIT %s",
                            [*params, limit]).fetchall()
    return [{f: (v.isoformat() if isinstance(v, datetime) else v) for f, v in zip(FIELDS, row, strict=True)}
            for row in rows]
