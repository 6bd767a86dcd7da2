"""``python -m app.serve``: run the web app with uvicorn (uvloop, httptools) per settings."""

from __future__ import annotations

import sys

import uvicorn
from pydantic import ValidationError

from app.logs import setup_logging
from app.settings import Settings


def main() -> int:
    try:
        settings = Settings()
    except ValidationError as exc:
        print(f"error: bad configuration:\n{exc}", file=sys.stderr)
        return 2
    setup_logging()
    uvicorn.run(
        "app.main:create_app",
        factory=True,
        host=settings.host,
        port=settings.port,
        workers=settings.workers,
        loop="uvloop",
        http="httptools",
        access_log=False,
        log_config=None,
        timeout_graceful_shutdown=10,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
