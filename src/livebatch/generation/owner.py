"""Who holds a lease: a name written on every item a process claims (`batch_items.lease_owner`).

An embedded deployment (one process doing its own work, on its own data directory) keeps its name in
`worker.lock` there, and holds an exclusive lock on that file for as long as it lives. A process that gets
the lock knows that the previous holder of the name is gone (the kernel drops the lock of a killed
process), so the items still claimed under that name are its own, left by a crash: it releases them at
once (work.release_own_claims) instead of waiting for their leases to expire and counting their attempts
as failed. A process that cannot get the lock (another one is running on the same directory) or has no
such directory works under a name of its own and releases nothing.
"""

from __future__ import annotations

import fcntl
import logging
import os
import socket
from dataclasses import dataclass
from pathlib import Path
from uuid import uuid4

logger = logging.getLogger("livebatch.worker")

LOCK_FILE = "worker.lock"


@dataclass
class _Held:
    fd: int
    name: str
    in_use: bool


# The lock files this process holds. A worker that closes with item work that would not stop keeps its
# lock until the process exits: that work may still hold claims under the name, and a later worker of this
# same process must not release them (it reuses the name, and releases nothing).
_HELD: dict[Path, _Held] = {}


@dataclass
class LeaseOwner:
    name: str
    reclaims: bool  # the claims under `name` are a dead process's of this deployment: release them
    lock: Path | None = None

    def close(self, *, release: bool = True) -> None:
        """Lets the lock go, once no claim under the name can still be in use (`release`), so that the next
        process or worker on the directory takes the name and releases what is left under it; otherwise the
        name stays locked by this process, free for another worker of it, which will release nothing."""
        if self.lock is None or (held := _HELD.get(self.lock)) is None or held.name != self.name:
            return
        if release:
            del _HELD[self.lock]
            os.close(held.fd)  # closing the descriptor drops the lock
        else:
            held.in_use = False


def random_owner() -> LeaseOwner:
    return LeaseOwner(f"{socket.gethostname()[:24]}-{os.getpid()}-{uuid4().hex[:12]}", reclaims=False)


def embedded_owner(data_dir: Path) -> LeaseOwner:
    """This deployment's name, stable across restarts, when this process can hold its lock; else a name of
    its own."""
    path = (data_dir / LOCK_FILE).resolve()
    held = _HELD.get(path)
    if held is not None:
        if held.in_use:
            return random_owner()
        held.in_use = True
        return LeaseOwner(held.name, reclaims=False, lock=path)
    try:
        data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    except OSError as exc:
        logger.warning("no lease owner file in %s (%s): leases left by a crash wait for their expiry", data_dir, exc)
        return random_owner()
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:  # another process works on this directory: its claims are not ours
        os.close(fd)
        return random_owner()
    name = os.pread(fd, 128, 0).decode(errors="replace").strip()
    if not name:
        name = f"embedded-{uuid4().hex}"
        os.pwrite(fd, name.encode(), 0)
        os.fsync(fd)
    _HELD[path] = _Held(fd, name, in_use=True)
    return LeaseOwner(name, reclaims=True, lock=path)
