"""dhcpd's working directory, and what it makes of an include's path.

Pure. Debian's service starts dhcpd from /, so the agent runs dhcpd -t there
(sandbox.py) and starts the dhcpd it supervises there (restart.py): a tree then
means the same files under each. A relative include resolves against /, not
against the config folder, and is refused with the absolute path it meant.
"""

from __future__ import annotations

import posixpath

# dhcpd's working directory: / under Debian's service, and so for dhcpd -t
# (sandbox.py) and the supervised dhcpd (restart.py): an include means one file.
WORKING_DIRECTORY = "/"


def inside_target(path: str, target: str) -> str | None:
    """An include's path relative to the target, or None when it leaves the target.
    A relative one resolves as dhcpd resolves it: "hosts.conf" is /hosts.conf."""
    resolved = posixpath.normpath(posixpath.join(WORKING_DIRECTORY, path))
    rel = posixpath.relpath(resolved, target)
    return None if rel == ".." or rel.startswith("../") else rel


def relative_refusal(path: str, target: str) -> str | None:
    """Why a relative include meant under the config folder is refused, or None
    (sandbox.py's and pair.py's include checks word it alike)."""
    meant = posixpath.normpath(posixpath.join(target, path))
    if path.startswith("/") or inside_target(meant, target) is None:
        return None
    return (
        f'include "{path}" is relative: dhcpd resolves it against its working directory '
        f'({WORKING_DIRECTORY}), not the config folder; write "{meant}"'
    )
