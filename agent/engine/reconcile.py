"""One reconcile: fetch, render, validate, publish, restart, verify, record.

A straight script of named steps. Each step has one side effect and raises a
typed error; nothing here retries (the agent's loop does). Two guarded phases:
before publish a failure only discards the stage; after publish a failed
restart exchanges the old tree back and restarts dhcpd on it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import NoReturn, Protocol

from agent import fault, logs, servers, tree
from agent.config import AgentConfig, Result
from agent.engine import consistency, hostfiles, lock, publish, recovery, render, stage
from agent.engine.releases import Releases
from agent.engine.serveronly import keep_out
from agent.engine.state import Attempt, Deployed, Pin, State, Store, now
from agent.errors import (
    DhcpGitopsError,
    PeerRefused,
    RenderError,
    RestartError,
    RolledBack,
    StepError,
    TrustError,
    ValidateError,
)
from agent.servers.base import Server
from agent.source.mirror import Commit, Mirror
from agent.source.signature import Signatures

log = logging.getLogger(__name__)


@dataclass
class Node:
    """Everything one server's reconcile works with, built once from its config."""

    config: AgentConfig
    mirror: Mirror
    server: Server
    workspace: stage.Workspace
    store: Store
    releases: Releases
    unsaved: Unsaved | None = None  # a record the state dir refused, for the next attempt

    @classmethod
    def from_config(cls, config: AgentConfig, server: Server | None = None) -> Node:
        deploy = config.deploy
        return cls(
            config=config,
            mirror=Mirror(config.source, deploy.state_dir, config.limits),
            server=server or servers.for_config(config),
            workspace=stage.Workspace(deploy.target),
            store=Store(deploy.state_dir),
            releases=Releases(deploy.state_dir, deploy.keep_releases),
        )

    @property
    def preserve(self) -> tuple[str, ...]:
        return self.config.deploy.preserve


@dataclass(frozen=True)
class Unsaved:
    """What an attempt had to write to state.json when a full or failing disk refused it."""

    before: State  # state.json as that attempt found it
    after: State  # the record it made: deployed, previous, last_attempt


OnStep = Callable[[str, str | None], None]  # (step, the commit if known yet)


class Pairing(Protocol):
    """The failover peer's say in a deploy (agent/daemon/peer.py); None for a lone server."""

    def before_restart(self, sha: str) -> None:
        """Block until this node may restart onto sha; PeerRefused or PeerError if not."""

    def after_restart(self) -> None:
        """RestartError when the pair did not come back (failover not normal in time)."""


class Steps:
    """Times each step and turns any error but a step's own into that step's error."""

    def __init__(self, attempt: Attempt, on_step: OnStep | None) -> None:
        self.attempt = attempt
        self.on_step = on_step
        self.current = "reconcile"  # the step running, or the last one that ran

    @contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        self.current = name
        if self.on_step:
            self.on_step(name, self.attempt.sha)
        start = time.perf_counter()
        try:
            yield
        except Exception as err:  # whatever it was, the attempt records it
            failure = step_error(name, err)
            if failure is err:
                raise
            raise failure from err
        finally:
            elapsed = time.perf_counter() - start
            self.attempt.timings[name] = round(self.attempt.timings.get(name, 0) + elapsed, 4)


@contextmanager
def faults(step: str) -> Iterator[None]:
    """Around the lock, recovery and the records: an error not ours as a StepError of
    `step` (step_error); ours (LockBusy, an unreadable state.json) as it is."""
    try:
        yield
    except DhcpGitopsError:
        raise
    except Exception as err:  # a full state dir must not kill the caller
        raise step_error(step, err) from err


def step_error(step: str, err: Exception) -> StepError:
    """A step's own error as it is; an OSError is the machine's (a full disk, say),
    anything else a bug (its traceback goes to the debug log). Either fails the
    attempt, which the loop retries: neither is the commit's fault."""
    if isinstance(err, StepError):
        return err
    if not isinstance(err, OSError | DhcpGitopsError):
        log.debug("%s: unexpected error", step, exc_info=err)
    return StepError(logs.one_line(err), step=step)


def reconcile(
    node: Node,
    *,
    rollback_to: str | None = None,
    wait: bool = True,
    on_wait: Callable[[str], None] | None = None,
    on_step: OnStep | None = None,
    pairing: Pairing | None = None,
    allow_non_descendant: bool = False,
) -> Attempt:
    """Bring the target to the branch head (or to `rollback_to`); record the attempt.

    allow_non_descendant: deploy a head that does not descend from the deployed
    commit though [source] require_descendant is set (the operator's override).
    """
    what = f"rollback to {rollback_to[:12]}" if rollback_to else "sync"
    # The state dir's own faults (a full disk at the lock, the records) raise a StepError
    # naming "lock", "recovery" or "record": the caller has no attempt to show for them.
    with faults("lock"), lock.hold(node.store.dir, what, wait=wait, on_wait=on_wait):
        with faults("record"):
            kept = _record_unsaved(node)
        if kept is not None:
            return kept
        with faults("recovery"):
            recovery.recover(node)  # a run killed mid-deploy: its stage goes, its exchange undone
            state = node.store.load()
        before = state.model_copy(deep=True)
        attempt = Attempt(started_at=now())
        steps = Steps(attempt, on_step)
        try:
            _deploy(node, state, attempt, steps, rollback_to, pairing, allow_non_descendant)
        except Exception as err:  # noqa: BLE001 - between two steps: named by the last one
            failure = step_error(steps.current, err)
            attempt.result, attempt.step = _result_of(failure), failure.step
            attempt.message, attempt.problems = failure.message, failure.problems
        attempt.finished_at = now()
        state.last_attempt = attempt
        with faults("record"):
            _record(node, Unsaved(before, state), attempt)
        return attempt


def _record_unsaved(node: Node) -> Attempt | None:
    """The record a full state dir refused last time, written now and that attempt's
    result returned: a deploy that went live and was verified is recorded, not undone
    by recovery and restarted onto again. Dropped (None) if another run recorded a
    deploy since, or the live tree is not the one it names."""
    unsaved, node.unsaved = node.unsaved, None
    attempt = unsaved.after.last_attempt if unsaved else None
    if unsaved is None or attempt is None:
        return None
    deployed = unsaved.after.deployed
    moved_on = node.store.load().deployed != unsaved.before.deployed
    live = deployed is None or tree.digest(node.workspace.target, node.preserve) == deployed.digest
    if moved_on or not live:
        log.warning("a record the full state dir refused is dropped: the live tree moved on")
        return None
    _record(node, unsaved, attempt)
    return attempt


def _record(node: Node, record: Unsaved, attempt: Attempt) -> None:
    """state.json, then the journal dropped, then the history line.

    Power-loss view: the journal was durable before the exchange (publish.swap_in),
    state.json is durable before the journal goes, so after any cut recovery knows
    whether the live tree is recorded. History comes last: a log, not the truth.
    A step that failed after the exchange without undoing it (an error in restart,
    verify or record that is no RestartError) leaves the journal too: the next
    attempt's recovery puts the recorded tree back first, as after a crash there.
    """
    ws, state = node.workspace, record.after
    recorded = state.deployed.digest if state.deployed else None
    keep_journal = publish.unrecorded(ws, recorded, node.preserve)
    if keep_journal:
        attempt.message += (
            f"\n{ws.target} holds the new tree, not recorded: the next attempt puts the "
            "recorded tree back, then deploys again"
        )
    fault.point("before-record")
    try:
        node.store.save(state)
    except OSError:
        if attempt.result != "failed":  # a failure's record is replaced by the retry's
            node.unsaved = record
        raise
    fault.point("after-record")
    if not keep_journal:
        publish.settle(ws)
    node.store.append_history(attempt, node.config.node.name)


def _result_of(err: StepError) -> Result:
    if isinstance(err, RolledBack):
        return "rolled_back"
    # The commit's fault: refused, and not retried until a new commit comes. A bare
    # StepError is an OSError of the machine (a full disk, say), a SandboxError a
    # machine that cannot run the validator (no bwrap, no user namespaces): failed, retried.
    refused = isinstance(err, RenderError | ValidateError | PeerRefused | TrustError)
    return "refused" if refused else "failed"


def _deploy(
    node: Node,
    state: State,
    attempt: Attempt,
    step: Steps,
    rollback_to: str | None,
    pairing: Pairing | None,
    allow_non_descendant: bool,
) -> None:
    ws = node.workspace
    with step("fetch"):
        sha, pin = _choose_commit(node, state, rollback_to)
        commit = node.mirror.commit(sha)
        attempt.sha, attempt.subject, attempt.author = commit.sha, commit.subject, commit.author
    fault.point("after-fetch")
    with step("trust"):
        # Only a branch head that moved has a history to check: a rollback names its
        # commit on purpose, and a pinned commit stays while the head does not move.
        history = pin is None and not allow_non_descendant
        attempt.signer = _trust(node, state, commit.sha, history)
    with step("render"):
        full = render_commit(node, commit.sha)
        rendered = keep_out(full, node.mirror.snapshot(commit.sha), node.config.source.path,
                            ws.target, node.preserve)  # fmt: skip
        digest = tree.content_digest(rendered.files, node.preserve)
    with step("validate"):
        # Before the "already live" shortcut: a commit that changes only the
        # partner's side can still break the pair, and both servers refuse it.
        # Both sides as the repo has them, stand-ins included, like `validate`.
        _check_pair(node, commit.sha, full)
    if _already_live(node, state, digest):
        attempt.result = "current"  # nothing to publish or restart
        _record_live(node, state, commit, digest, pin, moved=False)
        return
    try:
        with step("render"):
            hostfiles.check(node, state, rendered.files)  # never delete the host's own files
            stage.build(ws, rendered.files, node.preserve)
            publish.ensure_target(ws.target)
        with step("validate"):
            node.server.validate(ws.stage, ws.target, rendered.sources)
        fault.point("after-validate")
        if pairing is not None:
            with step("peer"):
                pairing.before_restart(commit.sha)  # the two servers never restart together
    except StepError:
        tree.remove(ws.stage)  # before publish: nothing live changed, drop the stage
        raise
    with step("publish"):
        # Not in the guard above: after a failed fsync the stage path may already hold
        # the old tree. The next run's recovery puts it back or removes the stage.
        publish.swap_in(ws, digest)
    _restart_or_roll_back(node, step, pairing)
    with step("record"):
        node.server.accept()
        publish.keep_previous(ws)
        _record_live(node, state, commit, digest, pin, moved=True)
        _keep_release(node, commit.sha, rendered.files)
    attempt.result = "deployed"


def _keep_release(node: Node, sha: str, files: dict[str, bytes]) -> None:
    """Last of the record step, after the live tree is in the record: a release only
    helps name drifted files, so a disk too full for it fails the attempt (retried)
    but does not undo a deploy that went live and was verified."""
    try:
        node.releases.save(sha, files)
    except OSError as err:
        raise StepError(
            f"{sha[:12]} is live and recorded, but its release (kept to name drifted files) "
            f"could not be written: {logs.one_line(err)}",
            step="record",
        ) from err


def _already_live(node: Node, state: State, digest: str) -> bool:
    """The rendered tree is live and was restarted onto and verified by us.

    A live tree equal to the render but not recorded as deployed is what a
    crash between the exchange and the restart leaves: it must still be
    restarted onto, so it takes the whole path again.
    """
    recorded = state.deployed is not None and state.deployed.digest == digest
    return recorded and tree.digest(node.workspace.target, node.preserve) == digest


def _choose_commit(node: Node, state: State, rollback_to: str | None) -> tuple[str, Pin | None]:
    """The branch head, unless a rollback pins an older commit while the head stays put."""
    if rollback_to:
        sha = node.mirror.commit(rollback_to).sha
        return sha, Pin(sha=sha, while_head=node.mirror.head())
    head = node.mirror.fetch()
    if state.pin and state.pin.while_head == head:
        return state.pin.sha, state.pin
    return head, None


def _trust(node: Node, state: State, sha: str, history: bool) -> str | None:
    """Who signed the commit (None when [source] verify is off); TrustError when the
    policy refuses it. The commit to deploy is checked every time, a rollback's or a
    pinned one too: a key dropped from the keyring stops its commits going live."""
    source = node.config.source
    signer = Signatures(source, node.config.deploy.state_dir).signer(node.mirror, sha)
    if history and source.require_descendant:
        _check_descent(node, state, sha)
    return signer


def _check_descent(node: Node, state: State, head: str) -> None:
    """Anti-rollback: the head must descend from where the branch last was for us (the
    head a rollback was pinned against, else the deployed commit). A force-push to old
    or unrelated history, even of signed commits, would otherwise redeploy old config."""
    if state.pin is not None:
        base, what = state.pin.while_head, "the branch head a rollback was made from"
    elif state.deployed is not None:
        base, what = state.deployed.sha, "the deployed commit"
    else:
        return  # the first deploy: nothing to descend from
    if node.mirror.descends(head, base):
        return
    raise TrustError(
        f"branch {node.config.source.branch!r} moved to {head[:12]}, which does not descend "
        f"from {base[:12]}, {what} (require_descendant): history was rewritten or moved back."
        "\nTo deploy it anyway: dhcp-gitops sync --allow-non-descendant"
    )


def _check_pair(node: Node, sha: str, rendered: render.Rendered) -> None:
    """Refuse a commit this node and its partner would disagree on (consistency.py)."""
    cfg = node.config
    snapshot = node.mirror.snapshot(sha)
    consistency.check(node.server, snapshot, cfg.source.path, cfg.node.role, rendered,
                      cfg.deploy.target, cfg.limits)  # fmt: skip


def render_commit(node: Node, sha: str) -> render.Rendered:
    """The live tree the commit renders to on this node."""
    config = node.config
    return render.render_pair(
        node.mirror.snapshot(sha),
        config.source.path,
        config.node.role,
        config.node.name,
        str(config.deploy.target),
        config.limits,
    )


def _restart_or_roll_back(node: Node, step: Steps, pairing: Pairing | None) -> None:
    failing = "restart"
    try:
        with step("restart"):
            node.server.restart()
        failing = "verify"
        with step("verify"):
            node.server.verify()
            if pairing is not None:
                pairing.after_restart()
    except RestartError as err:
        with step("rollback"):
            _roll_back(node, err, failing)


def _roll_back(node: Node, cause: RestartError, failing: str) -> NoReturn:
    name = node.server.name
    publish.swap_back(node.workspace)
    fault.point("during-rollback")  # the old tree live again, dhcpd not restarted on it
    try:
        restored = node.server.roll_back()
        fault.point("during-rollback")  # dhcpd starting on the old tree
        node.server.verify()
    except RestartError as again:
        raise RolledBack(
            f"{name} did not come back on the new config; the previous tree is live again, "
            f"but {name} did not come back on it either: {again.message}\n"
            f"on the new config: {cause.message}",
            step=failing,
        ) from again
    raise RolledBack(
        f"{name} did not come back on the new config, so the previous tree is live again "
        f"and {name} runs on it{'; ' + restored if restored else ''}.\n{cause.message}",
        step=failing,
    ) from cause


def _record_live(
    node: Node, state: State, commit: Commit, digest: str, pin: Pin | None, *, moved: bool
) -> None:
    deployed = Deployed(**vars(commit), deployed_at=now(), digest=digest)
    if moved:
        state.previous = state.deployed
        state.deployed = deployed
    elif state.deployed is None or state.deployed.sha != commit.sha:
        # Same files under a new commit (a change elsewhere in the repo): no restart.
        state.deployed = deployed
    state.pin = pin
