"""Random (version 4) UUIDs in bulk, for the event log's hot path.

`uuid.uuid4()` makes one `os.urandom` call and runs `UUID.__init__`'s argument checks for
every id; the writer needs hundreds at once. This draws the randomness for a whole batch in
one call and builds each UUID directly, setting the two slots `UUID.__init__` would set.
"""

from __future__ import annotations

import os
import uuid

_VERSION_CLEAR = ~((0xC000 << 48) | (0xF000 << 64))
_VERSION_4_RFC_4122 = (0x8000 << 48) | (4 << 76)
_new = object.__new__
_set = object.__setattr__  # UUID forbids attribute assignment; __init__ goes this way too
_UNKNOWN = uuid.SafeUUID.unknown


def uuid4_batch(count: int) -> list[uuid.UUID]:
    raw = os.urandom(16 * count)
    from_bytes = int.from_bytes
    ids = []
    for start in range(0, 16 * count, 16):
        value = from_bytes(raw[start:start + 16], "big") & _VERSION_CLEAR | _VERSION_4_RFC_4122
        new_id = _new(uuid.UUID)
        _set(new_id, "int", value)
        _set(new_id, "is_safe", _UNKNOWN)
        ids.append(new_id)
    return ids
