"""What the lifespan opens and every request may use, typed, passed explicitly."""

from __future__ import annotations

from dataclasses import dataclass

import redis.asyncio as aioredis

from app.core.db import Pool
from app.core.keys import RedisKeys
from app.settings import Settings


@dataclass(frozen=True)
class Resources:
    settings: Settings
    pool: Pool
    redis: aioredis.Redis
    keys: RedisKeys
