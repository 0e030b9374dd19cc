"""Ids for event rows and runs, for the event log's hot path.

Event ids are UUIDs in the version 7 layout (RFC 9562): 48 bits of Unix time in milliseconds,
then random bits, here a random starting point counted up through the batch. Ids that grow
with time land at the right edge of the primary-key index instead of on a random page of it,
so a batch of inserts touches a few index pages (and writes a few full-page images to the WAL
after a checkpoint) rather than hundreds. The randomness of a whole batch comes from one
`os.urandom` call.

Every id made here is asyncpg's `UUID`, a subclass of `uuid.UUID` built from 16 bytes in C
(equal to, hashing like and comparing with a `uuid.UUID` of the same value). It is half the
cost of building a `uuid.UUID`, its `str()` is a tenth (tunnel messages carry the run id),
and asyncpg's COPY encoder writes it directly, where a `uuid.UUID` costs a Python-level
`.bytes` per value: with both ids of an event row made here, a row of the log costs about a
microsecond less to encode.
"""

from __future__ import annotations

import os
import time
import uuid

from asyncpg.pgproto.pgproto import UUID as _FastUUID

_VERSION_4 = 4 << 76
_VERSION_7 = 7 << 76
_VARIANT_RFC_4122 = 2 << 62
_ALL_BITS = (1 << 128) - 1
_VERSION_VARIANT_MASK = ~((0xF << 76) | (0x3 << 62)) & _ALL_BITS
_RAND_A_MASK = 0xFFF << 64  # the 12 random bits between the version and the variant
_RAND_B_BITS = 62  # the random bits below the variant


def uuid7_batch(count: int) -> list[uuid.UUID]:
    """`count` distinct version 7 UUIDs, increasing through the batch."""
    timestamp = time.time_ns() // 1_000_000
    random_bits = int.from_bytes(os.urandom(10), "big")
    # The batch counts up in the low 62 bits from a start that leaves room for `count`, so no
    # id carries into the variant: one addition per id.
    rand_b = (random_bits & ((1 << _RAND_B_BITS) - 1)) % ((1 << _RAND_B_BITS) - count)
    first = ((timestamp << 80) | _VERSION_7 | (random_bits & _RAND_A_MASK)
             | _VARIANT_RFC_4122 | rand_b)
    return [_FastUUID(value.to_bytes(16, "big")) for value in range(first, first + count)]


def uuid4() -> uuid.UUID:
    """A random (version 4) UUID, as `uuid.uuid4()` makes it (a run's id)."""
    value = int.from_bytes(os.urandom(16), "big") & _VERSION_VARIANT_MASK
    return _FastUUID((value | _VERSION_4 | _VARIANT_RFC_4122).to_bytes(16, "big"))
