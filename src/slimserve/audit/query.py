"""`slimserve audit`: list matching records from PostgreSQL or from a JSON-lines log of the stdout sink."""

from __future__ import annotations

import argparse
import json
import os
from datetime import UTC, datetime
from pathlib import Path

from slimserve.audit.records import patient_ref


def parse_since(text: str | None) -> datetime | None:
    """An ISO date or time; naive values are taken as UTC."""
    if not text:
        return None
    moment = datetime.fromisoformat(text)
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def run_query(args: argparse.Namespace) -> list[dict]:
    """The records matching --patient-id/--since/--model, oldest first."""
    ref = None
    if args.patient_id:
        key = os.environ.get("SLIMSERVE_AUDIT_KEY")
        if not key:
            raise ValueError("--patient-id needs SLIMSERVE_AUDIT_KEY (only its holders can link records)")
        ref = patient_ref(key, args.patient_id)
    since = parse_since(args.since)
    if args.file:
        return from_lines(args.file, patient=ref, since=since, model=args.model, limit=args.limit)
    url = os.environ.get("DATABASE_URL")
    if not url:
        raise ValueError("set DATABASE_URL, or pass --file with a log of the stdout sink")
    from slimserve.audit.postgres import query

    return query(url, patient_ref=ref, since=since, model=args.model, limit=args.limit)


def from_lines(path: Path, *, patient: str | None, since: datetime | None, model: str | None,
               limit: int) -> list[dict]:
    """Audit records from a log file that also holds other lines (those are skipped)."""
    found = []
    with path.open(encoding="utf-8", errors="replace") as lines:
        for line in lines:
            start = line.find('{"type":"slimserve.audit"')
            if start < 0:
                continue
            try:
                record = json.loads(line[start:])
            except ValueError:
                continue
            if ((patient and record.get("patient_ref") != patient) or (model and record.get("model") != model)
                    or (since and datetime.fromisoformat(record["time"]) < since)):
                continue
            record.pop("type", None)
            found.append(record)
            if len(found) >= limit:
                break
    return found
