"""The lease file across a failed restart: dhcpd's own earlier file, put back.

dhcpd rewrites its lease file at start-up *before* it checks that it has an
interface to serve, and drops every lease outside the subnets of the config
it loads. A commit that removes a subnet and then fails to start would lose
those leases for good: the rollback would start dhcpd on the rewritten file.

So before each restart we keep a hard link to the lease file: no byte is
copied or written, it is dhcpd's own file (dhcpd replaces the file by rename,
so the link keeps the old inode). After a failed start, with dhcpd stopped,
the link is renamed back over the lease file. Leases the failed dhcpd granted
in its seconds of life are lost with it; its failover peer still has them.

The link lives exactly as long as one restart is undecided: taken before the
restart, renamed back by a rollback, dropped once the deploy is kept. So a link
found after a crash belongs to a restart the crash cut short (agent/engine/recovery.py
puts it back), never to an older deploy whose leases it would undo.
"""

from __future__ import annotations

import errno
import logging
import os
from pathlib import Path

from agent import tree

log = logging.getLogger(__name__)


class LeaseSnapshot:
    def __init__(self, lease_file: Path) -> None:
        self.lease_file = lease_file
        # Beside the lease file: a hard link cannot cross into another mount, and
        # state_dir often is one (container volumes, systemd's ReadWritePaths).
        self.link = lease_file.with_name(f".{lease_file.name}.dhcp-gitops")

    def take(self) -> None:
        """Link the lease file as it is now (dhcpd stopped); a missing one is fine.

        Power-loss view: the link is made durable (folder fsync'd) before dhcpd
        starts and may rewrite the file, so a cut during the restart still finds it.
        """
        self.link.unlink(missing_ok=True)  # a stale link must never be put back
        try:
            os.link(self.lease_file, self.link)
            tree.fsync_dir(self.link.parent)
        except FileNotFoundError:
            pass
        except OSError as err:
            if err.errno not in (errno.EXDEV, errno.EPERM):
                raise
            log.warning("lease file %s cannot be linked: %s; a failed start may drop leases",
                        self.lease_file, err.strerror)  # fmt: skip

    def put_back(self) -> bool:
        """Restore the linked lease file if dhcpd replaced it since; True if it did.

        Either way the link is gone afterwards: it is never put back twice.
        """
        if not self.link.exists():
            return False
        if self.lease_file.exists() and self.link.samefile(self.lease_file):
            self.forget()
            return False
        self.link.rename(self.lease_file)
        tree.fsync_dir(self.lease_file.parent)  # durable before dhcpd starts on it
        return True

    def forget(self) -> None:
        """The restart is kept: its lease file is dhcpd's for good."""
        if self.link.exists() or self.link.is_symlink():
            self.link.unlink()
            tree.fsync_dir(self.link.parent)
