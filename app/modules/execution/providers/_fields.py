"""Lenient readers for fields of SDK response objects.

The SDKs build response objects without validating them, so a field can be missing or of the
wrong type; these readers give a safe default for the optional ones.
"""

from __future__ import annotations


def str_or(value: object, default: str) -> str:
    return value if isinstance(value, str) and value else default


def int_or_zero(value: object) -> int:
    # Usage is optional on many compatible servers; a missing count is 0, not an error.
    return value if isinstance(value, int) and not isinstance(value, bool) else 0
