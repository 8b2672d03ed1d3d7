"""The command line: `dhcp-gitops COMMAND`. Exit 0 success, 1 refused or failed, 2 usage."""

from __future__ import annotations

import argparse
import errno
import json
import logging
import os
import shutil
import sys
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TextIO

from pydantic import ValidationError

from agent import __version__, config, logs
from agent.engine import lock, reconcile, stage, status
from agent.engine.document import AgentStatus, Status, why
from agent.engine.state import Attempt
from agent.errors import ConfigError, DhcpGitopsError, UsageError
from agent.review import commands
from agent.status_text import SUCCESS, attention
from agent.status_text import print_status as print_status  # the demo and tests print with it

log = logging.getLogger("dhcp-gitops")


Extend = Callable[[Any], None]  # adds subcommands to the subparsers it is given


def main(argv: Sequence[str] | None = None, extend: Extend | None = None) -> int:
    """The CLI; `extend` lets webhook/ add the `agent` command (agent never imports webhook)."""
    parser = _parser(extend)
    args = parser.parse_args(argv)
    logs.configure(level=logging.DEBUG if args.verbose else logging.WARNING)
    try:
        code: int = args.run(args)
    except DhcpGitopsError as err:
        log.debug("error", exc_info=True)
        print(f"dhcp-gitops: {err.message}", file=sys.stderr)
        return err.exit_code
    except OSError as err:  # the machine's, not the commit's: one line, never a traceback
        log.debug("error", exc_info=True)
        print(f"dhcp-gitops: {_said(err)}", file=sys.stderr)
        return 2 if _denied(err) else 1
    except KeyboardInterrupt:
        return 130
    return code


RIGHTS = ": run dhcp-gitops as root, or as a user that may write [deploy] state_dir and target"


def _denied(err: OSError) -> bool:
    return err.errno in (errno.EACCES, errno.EPERM, errno.EROFS)


def _said(err: DhcpGitopsError | OSError) -> str:
    """The one line an error gets: an OSError of rights says what to do about them."""
    if isinstance(err, DhcpGitopsError):
        return err.message
    return f"{logs.one_line(err)}{RIGHTS if _denied(err) else ''}"


def _parser(extend: Extend | None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dhcp-gitops",
        description="Keep ISC dhcpd and Kea servers in step with a git repository.",
    )
    parser.add_argument("--version", action="version", version=f"dhcp-gitops {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug detail")
    sub = parser.add_subparsers(required=True, metavar="COMMAND")

    sync = command(sub, "sync", "fetch, validate and deploy the branch head once")
    sync.add_argument("--no-wait", action="store_true", help="fail if a reconcile is running")
    sync.add_argument(
        "--allow-non-descendant",
        action="store_true",
        help="deploy the head even if it does not descend from the deployed commit "
        "(overrides [source] require_descendant once; signatures are still checked)",
    )
    sync.add_argument(
        "--replace-host-files",
        action="store_true",
        help="let the repo's tree replace live files it does not cover and preserve does "
        'not name (once, as [deploy] host_files = "replace"; they stay in the rollback tree)',
    )
    sync.set_defaults(run=_sync)

    changes = command(sub, "diff", "what a sync would change: the live target against the branch")
    changes.description = (
        "Fetch, trust and render the commit a sync would deploy, and print its unified diff "
        "against the live target (a/ live, b/ the branch); preserved files and host files "
        "are named. Exit 0 no change, 1 changes, 2 error."
    )
    changes.set_defaults(run=_diff)

    show = command(sub, "status", "show what is live, what was tried last, drift, and the pair")
    show.add_argument("--json", action="store_true", help="print the status document as JSON")
    show.add_argument("--url", help="ask a running agent instead, e.g. http://dhcp1:8647")
    show.epilog, show.formatter_class = STATUS_EXITS, argparse.RawDescriptionHelpFormatter
    show.set_defaults(run=_status)

    back = command(sub, "rollback", "deploy an earlier commit (default: the previous deploy)")
    back.add_argument("--to", metavar="SHA", help="the commit to deploy (a prefix will do)")
    back.add_argument("--no-wait", action="store_true", help="fail if a reconcile is running")
    back.set_defaults(run=_rollback)

    commands.add(sub)
    if extend:
        extend(sub)
    return parser


def command(sub: Any, name: str, help: str) -> argparse.ArgumentParser:
    """A subcommand that takes --config."""
    cmd: argparse.ArgumentParser = sub.add_parser(name, help=help, description=help)
    cmd.add_argument(
        "--config",
        type=Path,
        default=config.DEFAULT_PATH,
        metavar="FILE",
        help=f"agent config (default {config.DEFAULT_PATH})",
    )
    return cmd


def _node(args: argparse.Namespace, deploying: bool) -> reconcile.Node:
    cfg = config.load(args.config)
    if deploying:
        check_host(cfg)
    node = reconcile.Node.from_config(cfg)
    name = node.server.name
    if deploying and node.server.health().mode == "supervise":
        raise ConfigError(
            f'{cfg.file}: [{name}] restart = "supervise" makes {name} a child of the running '
            "agent (dhcp-gitops agent); a one-shot command cannot supervise it"
        )
    return node


def check_host(cfg: config.AgentConfig) -> None:
    """What a deploy needs of this machine, asked before anything runs (ConfigError, exit
    2): a missing binary or a folder we may not write is never reported as the commit's."""
    section, binary, package = (
        ("kea", cfg.kea.binary, "kea-dhcp4-server") if cfg.node.server == "kea"
        else ("dhcpd", cfg.dhcpd.binary, "isc-dhcp-server")
    )  # fmt: skip
    if shutil.which(binary) is None:
        raise ConfigError(f"{cfg.file}: [{section}] binary: {binary} is not an executable file "
                          f"(install {package}, or name the {section} to run)")  # fmt: skip
    deploy = cfg.deploy
    workspace = stage.Workspace(deploy.target)
    folders = [("state_dir", deploy.state_dir), ("target", deploy.target),
               ("target", deploy.target.parent), ("target", workspace.root)]  # fmt: skip
    for key, folder in folders:
        found = _nearest(folder)
        if not os.access(found, os.W_OK | os.X_OK, effective_ids=_EFFECTIVE):
            raise ConfigError(
                f"{cfg.file}: [deploy] {key}: {found} is not writable for this user "
                f"(uid {os.geteuid()}){RIGHTS}"
            )


_EFFECTIVE = os.access in os.supports_effective_ids


def _nearest(path: Path) -> Path:
    """The folder itself, or the closest of its parents that exists (mkdir makes the rest)."""
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def _sync(args: argparse.Namespace) -> int:
    node = _node(args, deploying=True)
    if args.replace_host_files:
        deploy = node.config.deploy.model_copy(update={"host_files": "replace"})
        node.config = node.config.model_copy(update={"deploy": deploy})
    attempt = reconcile.reconcile(
        node,
        wait=not args.no_wait,
        on_wait=_say_waiting,
        allow_non_descendant=args.allow_non_descendant,
    )
    return print_attempt(attempt, node, sys.stdout)


def _rollback(args: argparse.Namespace) -> int:
    node = _node(args, deploying=True)
    to = args.to or _previous_sha(node)
    attempt = reconcile.reconcile(node, rollback_to=to, wait=not args.no_wait, on_wait=_say_waiting)
    return print_attempt(attempt, node, sys.stdout)


def _previous_sha(node: reconcile.Node) -> str:
    previous = node.store.load().previous
    if previous is None:
        raise DhcpGitopsError("no previous deploy to roll back to; name one with --to SHA")
    return previous.sha


def _diff(args: argparse.Namespace) -> int:
    from agent.review import diff  # `plan` names its parser so in _parser

    node = _node(args, deploying=False)
    try:
        result = diff.diff(node, on_wait=_say_waiting)
    except DhcpGitopsError as err:  # exit 1 means "changes" here
        log.debug("error", exc_info=True)
        print(f"dhcp-gitops: diff: {err.message}", file=sys.stderr)
        return diff.ERROR
    return diff.print_diff(result, node.config.source.branch, sys.stdout, sys.stderr)


def _say_waiting(holder: str) -> None:
    print(f"waiting: another reconcile is running ({holder})", file=sys.stderr)


# `dhcp-gitops status` exits so that a monitoring script can act on it alone.
STATUS_OK, STATUS_ATTENTION, STATUS_UNKNOWN = 0, 1, 2
STATUS_EXITS = """exit status, for monitoring scripts:
  0  deployed and healthy: the last attempt deployed (or found the tree current),
     no drift; from a running agent also dhcpd up, the peer answering and not
     stuck restarting, and no clock skew error
  1  needs attention: nothing deployed, the last attempt refused, rolled back or
     failed, drift, dhcpd down, the peer not answering or stuck, clock skew (the
     `status` line says which)
  2  could not tell: usage or config error, state dir unreadable, the agent at
     --url unreachable or answering garbage"""


def _status(args: argparse.Namespace) -> int:
    try:
        raw, doc = _status_document(args)
    except (DhcpGitopsError, OSError) as err:
        log.debug("error", exc_info=True)
        print(f"dhcp-gitops: {_said(err)}", file=sys.stderr)
        return STATUS_UNKNOWN
    if args.json:
        print(json.dumps(raw, indent=2))
    else:
        print_status(doc, sys.stdout)
    return STATUS_ATTENTION if attention(doc) else STATUS_OK


def _status_document(args: argparse.Namespace) -> tuple[Any, Status]:
    """The document as it came (printed by --json) and as read."""
    if not args.url:
        node = reconcile.Node.from_config(config.load(args.config))
        doc = status.document(node, busy=lock.busy(node.store.dir))
        return doc.model_dump(mode="json"), doc
    raw = fetch_status(args.url)
    try:
        return raw, AgentStatus.model_validate(raw)
    except ValidationError as err:
        raise DhcpGitopsError(f"{args.url} answers garbage: {why(err)}") from err


def fetch_status(url: str) -> Any:
    """GET /status of a running agent (the path is added when the URL has none)."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise UsageError(f"--url {url}: use http:// or https://")
    if parts.path in ("", "/"):
        url = urllib.parse.urlunsplit(parts._replace(path="/status"))
    try:
        with urllib.request.urlopen(url, timeout=10) as answer:  # noqa: S310 - scheme checked
            doc: Any = json.load(answer)
    except urllib.error.HTTPError as err:
        raise DhcpGitopsError(f"{url}: the agent answered {err.code} {err.reason}") from err
    except urllib.error.URLError as err:  # refused, no route, no such host: nobody answers
        cause = logs.one_line(err.reason) if isinstance(err.reason, OSError) else str(err.reason)
        raise DhcpGitopsError(f"{url}: no agent answers ({cause}): is it running?") from err
    except (OSError, ValueError) as err:
        raise DhcpGitopsError(f"{url}: {logs.one_line(err)}") from err
    return doc


# --- human output -----------------------------------------------------------


def print_attempt(attempt: Attempt, node: reconcile.Node, out: TextIO) -> int:
    sha = (attempt.sha or "?")[:12]
    target = node.config.deploy.target
    timings = ", ".join(f"{k} {v:.3f} s" for k, v in attempt.timings.items())
    if attempt.result == "deployed":
        print(f"deployed {sha} to {target} ({timings})", file=out)
    elif attempt.result == "current":
        print(f"{target} is current at {sha}: nothing to do ({timings})", file=out)
    else:
        print(f"{attempt.result} {sha} at step {attempt.step}: {attempt.message}", file=out)
        for problem in attempt.problems:
            print(f"  {problem}", file=out)
            for line in problem.context:
                print(f"    {line}", file=out)
        deployed = node.store.load().deployed
        live = f"still {deployed.sha[:12]} {deployed.subject!r}" if deployed else "unchanged"
        if attempt.result != "rolled_back":
            print(f"live: {target} {live}", file=out)
    if attempt.signer and attempt.result in SUCCESS:
        print(f"signed by {attempt.signer}", file=out)
    return 0 if attempt.result in SUCCESS else 1
