from app.core.di.registry import Registry

__all__ = ["Registry"]
