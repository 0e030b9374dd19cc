from app.core.db.base import Base, JSONType, TimestampMixin, utcnow
from app.core.db.engine import create_engine, create_sessionmaker, normalize_url

__all__ = [
    "Base", "JSONType", "TimestampMixin", "create_engine", "create_sessionmaker",
    "normalize_url", "utcnow",
]
