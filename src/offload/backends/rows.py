"""One stored row, in the column order both SQL backends select, as a ``JobRecord``."""

from __future__ import annotations

from typing import Any

import msgspec

from offload.records import ErrorInfo, JobRecord
from offload.states import JobState

_decode_error = msgspec.json.Decoder(ErrorInfo).decode
_decode_meta = msgspec.json.Decoder(dict[str, Any]).decode


def job_from_row(row: tuple[Any, ...]) -> JobRecord:
    return JobRecord(
        id=row[0],
        task=row[1],
        queue=row[2],
        state=JobState(row[3]),
        payload=bytes(row[4]),
        priority=row[5],
        attempt=row[6],
        max_attempts=row[7],
        delivery=row[8],
        crashes=row[9],
        run_at=row[10],
        lease_until=row[11],
        lease_s=row[12],
        timeout_s=row[13],
        worker=row[14],
        progress=row[15],
        progress_message=row[16],
        result=None if row[17] is None else bytes(row[17]),
        error=None if row[18] is None else _decode_error(row[18]),
        created_at=row[19],
        started_at=row[20],
        finished_at=row[21],
        key=row[22],
        batch=row[23],
        owner=row[24],
        meta={} if row[25] is None else _decode_meta(row[25]),
    )
