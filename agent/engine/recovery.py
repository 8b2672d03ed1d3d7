"""Recovery: what a run killed mid-reconcile left is undone before anything else runs.

The rule is one sentence: what state.json records is what is live. Where a
crash (SIGKILL, power cut) can land, and what the next start finds and does:

    before the exchange        a stage, half or whole, beside the recorded live
                               tree: the stage is removed
    exchanged, not recorded    the journal names the live tree, state.json the old
                               one, which sits at the stage path (or at previous,
                               once kept): it is exchanged back, and dhcpd is
                               restarted on it with the lease file from before
                               the cut-short restart; the next reconcile then
                               deploys the new commit again, rollback tree and all
    exchanged back (rollback)  the recorded tree is live: only dhcpd is recovered
    recorded                   state.json names the live tree: the journal goes

Undoing, rather than recording the new tree as deployed, is the one choice
that needs no knowledge of how far the restart and verify got: the new tree
is verified again from the start, and if it fails it is rolled back as usual.
The caller holds the state dir's lock.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from agent import tree
from agent.engine import publish
from agent.errors import DhcpGitopsError

if TYPE_CHECKING:
    from agent.engine.reconcile import Node

log = logging.getLogger(__name__)


def recover(node: Node) -> None:
    """Put back the recorded tree and a running dhcpd if a crash cut a deploy short."""
    ws = node.workspace
    journal = publish.journal(ws)
    if journal is not None:
        _undo_unrecorded_exchange(node, journal)
    ws.clean_leftovers()
    if journal is not None:
        _recover_service(node)
    publish.settle(ws)


def _undo_unrecorded_exchange(node: Node, journal: str) -> None:
    ws = node.workspace
    deployed = node.store.load().deployed
    if deployed is not None and deployed.digest == journal:
        return  # the record was written: the live tree is the recorded one
    if tree.digest(ws.target, node.preserve) != journal:
        return  # the exchange never happened, or was undone by a rollback
    old = ws.stage if ws.stage.is_dir() else ws.previous
    if not old.is_dir():
        log.error("an interrupted deploy left %s live unrecorded and its old tree is gone; "
                  "the next deploy replaces it", ws.target)  # fmt: skip
        return
    log.warning("an interrupted deploy left %s live before it was recorded: putting back %s",
                ws.target, "the recorded tree" if deployed else "the tree from before")  # fmt: skip
    publish.put_back(ws, old)


def _recover_service(node: Node) -> None:
    try:
        node.server.recover()
    except DhcpGitopsError as err:  # the reconcile that follows restarts it again
        log.error("dhcpd after the interrupted deploy: %s", err.message)
