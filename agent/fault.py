"""Fault points: named places in a reconcile where a test can SIGKILL the agent.

Why this exists: the design promises that a crash at any instant leaves a
complete tree live and that the next start recovers (docs/internals.md, "Crash safety").
An exception cannot test that promise: it runs `finally` blocks and context
managers, which a power cut or the OOM killer never do. A real SIGKILL of our
own process can, at exactly the place named, and tests/crashlab.py does it
hundreds of times against the real agent and a real dhcpd.

    DHCP_GITOPS_FAULT=<point>[:<n>[:<delay>]]

kills the agent the n-th time (default 1) it reaches <point>, `delay` seconds
(default 0) after it got there: the delay lets a kill land while dhcpd, a
child that lives on, is still starting. The variable is read once, at import;
unarmed, point() costs one comparison. A point may be placed more than once
(during-render after every staged file, during-restart before and after the
new dhcpd is spawned): n picks the pass.
"""

from __future__ import annotations

import os
import signal
import time
from dataclasses import dataclass

ENV = "DHCP_GITOPS_FAULT"

POINTS = (
    "after-fetch",  # the commit is chosen; nothing staged
    "during-render",  # the stage half written (once per staged file)
    "after-validate",  # a complete, validated stage beside the live tree
    "before-exchange",  # the journal of the exchange not yet written
    "after-exchange",  # the new tree live, dhcpd not yet restarted onto it
    "during-restart",  # the old supervised dhcpd stopped (1), the new one starting (2)
    "during-rollback",  # the old tree back, dhcpd not restarted (1) or starting (2) on it
    "before-record",  # deployed and verified; state.json still says the old commit
    "after-record",  # state.json says the new commit; the journal not yet removed
)


@dataclass
class _Armed:
    point: str
    passes: int  # kill when this many passes are left to count down
    delay: float


def _parse(spec: str | None) -> _Armed | None:
    if not spec:
        return None
    name, _, rest = spec.partition(":")
    count, _, delay = rest.partition(":")
    if name not in POINTS:
        raise ValueError(f"{ENV}={spec!r}: no fault point {name!r}; known: {', '.join(POINTS)}")
    armed = _Armed(name, int(count or 1), float(delay or 0))
    if armed.passes < 1 or armed.delay < 0:
        raise ValueError(f"{ENV}={spec!r}: the pass counts from 1, the delay is >= 0")
    return armed


_armed = _parse(os.environ.get(ENV))


def point(name: str) -> None:
    """SIGKILL this process here if the environment armed this point for this pass."""
    if _armed is None or _armed.point != name:
        return
    _armed.passes -= 1
    if _armed.passes == 0:
        _kill(name, _armed.delay)


def _kill(name: str, delay: float) -> None:
    time.sleep(delay)
    # Said with one unbuffered write (no logging handler runs after SIGKILL), so the
    # test knows the process died here and not somewhere else.
    os.write(2, f"dhcp-gitops: fault point {name}: SIGKILL\n".encode())
    os.kill(os.getpid(), signal.SIGKILL)
