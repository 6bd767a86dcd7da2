"""A CSV export (``app/reports/exports.py``) as a streamed download."""

from __future__ import annotations

from fastapi.responses import StreamingResponse

from app.reports.exports import MEDIA_TYPE, CsvExport


def csv_response(export: CsvExport) -> StreamingResponse:
    return StreamingResponse(export.chunks, media_type=MEDIA_TYPE, headers=export.headers)
