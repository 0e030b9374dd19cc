"""Ids for event rows in bulk, for the event log's hot path.

They are UUIDs in the version 7 layout (RFC 9562): 48 bits of Unix time in milliseconds, then
random bits, here a random starting point counted up through the batch. Ids that grow with
time land at the right edge of the primary-key index instead of on a random page of it, so a
batch of inserts touches a few index pages (and writes a few full-page images to the WAL
after a checkpoint) rather than hundreds. The randomness of a whole batch comes from one
`os.urandom` call, and each UUID is built directly, setting the two slots `UUID.__init__`
would set, which costs a third of `uuid.uuid4()` per id.
"""

from __future__ import annotations

import os
import time
import uuid

_VERSION_7 = 7 << 76
_VARIANT_RFC_4122 = 2 << 62
_RAND_B_BITS = 62
_RAND_B_MASK = (1 << _RAND_B_BITS) - 1
# 74 random bits per id: 12 (rand_a) + 62 (rand_b). The batch counts up from a start drawn
# below 2**73, so a batch of any realistic size never carries into the timestamp.
_START_BITS = 73
_new = object.__new__
_set = object.__setattr__  # UUID forbids attribute assignment; __init__ goes this way too
_UNKNOWN = uuid.SafeUUID.unknown


def uuid7_batch(count: int) -> list[uuid.UUID]:
    """`count` distinct version 7 UUIDs, increasing through the batch."""
    timestamp = time.time_ns() // 1_000_000
    start = int.from_bytes(os.urandom(10), "big") >> (80 - _START_BITS)
    prefix = (timestamp << 80) | _VERSION_7 | _VARIANT_RFC_4122
    ids = []
    for counter in range(start, start + count):
        value = prefix | ((counter >> _RAND_B_BITS) << 64) | (counter & _RAND_B_MASK)
        new_id = _new(uuid.UUID)
        _set(new_id, "int", value)
        _set(new_id, "is_safe", _UNKNOWN)
        ids.append(new_id)
    return ids
