"""The command line: `dhcp-gitops COMMAND`. Exit 0 success, 1 refused or failed, 2 usage."""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tomllib
import urllib.parse
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TextIO

import git

from agent import __version__, config, servers
from agent.engine import lock, reconcile, render, status
from agent.engine.state import Attempt
from agent.errors import ConfigError, DhcpGitopsError, Problem, UsageError
from agent.review import plan, template, validate
from agent.review.output import FORMATS
from agent.source.snapshot import CommitSnapshot, Snapshot, WorkTree

log = logging.getLogger("dhcp-gitops")

SUCCESS = ("deployed", "current")


Extend = Callable[[Any], None]  # adds subcommands to the subparsers it is given


def main(argv: Sequence[str] | None = None, extend: Extend | None = None) -> int:
    """The CLI; `extend` lets webhook/ add the `agent` command (agent never imports webhook)."""
    parser = _parser(extend)
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        code: int = args.run(args)
    except DhcpGitopsError as err:
        log.debug("error", exc_info=True)
        print(f"dhcp-gitops: {err.message}", file=sys.stderr)
        return err.exit_code
    except KeyboardInterrupt:
        return 130
    return code


def _parser(extend: Extend | None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dhcp-gitops",
        description="Keep ISC dhcpd servers in step with a git repository.",
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

    show = command(sub, "status", "show what is live, what was tried last, and drift")
    show.add_argument("--json", action="store_true", help="print the status document as JSON")
    show.add_argument("--url", help="ask a running agent instead, e.g. http://dhcp1:8647")
    show.set_defaults(run=_status)

    back = command(sub, "rollback", "deploy an earlier commit (default: the previous deploy)")
    back.add_argument("--to", metavar="SHA", help="the commit to deploy (a prefix will do)")
    back.add_argument("--no-wait", action="store_true", help="fail if a reconcile is running")
    back.set_defaults(run=_rollback)

    val = sub.add_parser(
        "validate",
        help="check a pair folder as every server would, before it is merged",
        description=check_help(),
    )
    val.add_argument("dir", nargs="?", type=Path, default=Path(), help="the config repo")
    _review_options(val)
    val.add_argument(
        "--format",
        choices=sorted(FORMATS),
        default="text",
        help="text (file:line: message), github annotations, gitlab code quality JSON",
    )
    val.add_argument("--dhcpd", default="/usr/sbin/dhcpd", help="the dhcpd to run -t with")
    val.add_argument(
        "--read-only",
        action="append",
        type=Path,
        default=[],
        metavar="PATH",
        help="a file beyond the target the servers' dhcpd reads, as their [policy] read_only "
        "(repeatable)",
    )
    val.set_defaults(run=_validate)

    diff = sub.add_parser("plan", help="what each server gets between two revisions (Markdown)")
    diff.add_argument("base", help="the revision merged into (e.g. origin/main)")
    diff.add_argument("head", help="the revision to merge (e.g. HEAD)")
    diff.add_argument("dir", nargs="?", type=Path, default=Path(), help="the config repo")
    _review_options(diff)
    diff.set_defaults(run=_plan)

    new = sub.add_parser("init", help="a new config repo from the example pair")
    new.add_argument("dir", type=Path, help="the folder to make (empty or absent)")
    new.add_argument("--server", choices=servers.BACKENDS, default="dhcpd",
                     help="the pair's DHCP server software (default dhcpd)")  # fmt: skip
    new.set_defaults(run=_init)

    adopt = sub.add_parser(
        "import",
        help="a config repo from copies of the servers' /etc/dhcp, proved to render back",
        description="Make a config repo from a copy of a server's /etc/dhcp (and of its "
        "partner's), then render it back and compare. Exit 0 equivalent, 1 differences "
        "(the repo is kept), 2 usage.",
    )
    arg = adopt.add_argument
    arg("--from", dest="source", type=Path, required=True, metavar="DIR",
        help="a copy of one server's /etc/dhcp")  # fmt: skip
    arg("--role", choices=("primary", "secondary"), required=True, help="that server's role")
    arg("--peer-from", type=Path, metavar="DIR2", help="a copy of the other server's /etc/dhcp")
    arg("--names", metavar="NAME1,NAME2",
        help="the agents' node names, primary first (default primary,secondary)")  # fmt: skip
    arg("--target", type=Path, default=Path("/etc/dhcp"),
        help="the live folder the copies come from (default /etc/dhcp)")  # fmt: skip
    arg("--config-file", default="dhcpd.conf", help="the main config (default dhcpd.conf)")
    arg("--dhcpd", default="/usr/sbin/dhcpd", help="the dhcpd to run -t with")
    arg("dir", type=Path, help="the config repo to make (empty or absent)")
    adopt.set_defaults(run=_import)

    demo = sub.add_parser("demo", help="deploy the example pair into a local folder and show it")
    demo.add_argument("--dir", type=Path, default=Path("demo"), help="where (default ./demo)")
    demo.add_argument(
        "--serve", action="store_true", help="then run both agents on loopback until Ctrl-C"
    )
    demo.add_argument(
        "--port", type=int, default=8647, help="the primary's port; the secondary's is next"
    )
    demo.set_defaults(run=_demo)
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
    node = reconcile.Node.from_config(cfg)
    name = node.server.name
    if deploying and node.server.health().mode == "supervise":
        raise ConfigError(
            f'{cfg.file}: [{name}] restart = "supervise" makes {name} a child of the running '
            "agent (dhcp-gitops agent); a one-shot command cannot supervise it"
        )
    return node


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


def _status(args: argparse.Namespace) -> int:
    if args.url:
        doc = fetch_status(args.url)
    else:
        node = reconcile.Node.from_config(config.load(args.config))
        doc = status.report(node, busy=lock.busy(node.store.dir))
    if args.json:
        print(json.dumps(doc, indent=2))
    else:
        print_status(doc, sys.stdout)
    return 0


def check_help() -> str:
    return ("Render every role of the pair folder exactly as its agent would, run dhcpd -t "
            "on each in its sandbox (only the rendered files visible, at their live paths), "
            "and check what dhcpd cannot: that the two "
            "sides agree. Exit 0 clean (warnings allowed), 1 problems.")  # fmt: skip


def _review_options(cmd: argparse.ArgumentParser) -> None:
    cmd.add_argument("--path", default="", help="the pair folder in the repo (source.path)")
    cmd.add_argument("--target", type=Path, default=None,
                     help="the deploy.target (default /etc/dhcp, Kea /etc/kea)")  # fmt: skip
    cmd.add_argument("--config-file", default=None,
                     help="the servers' main config (dhcpd.conf, Kea kea-dhcp4.conf)")  # fmt: skip


def _validate(args: argparse.Namespace) -> int:
    snapshot = WorkTree(args.dir.resolve())
    kind = server_of(snapshot, args.path)
    binary = args.dhcpd if kind == "dhcpd" else None
    language = servers.language(kind, args.config_file, binary, args.read_only)
    findings = validate.check(snapshot, args.path, _target(args, kind), language)
    sys.stdout.write(FORMATS[args.format](findings))
    sys.stdout.flush()  # the summary on stderr comes after the findings
    errors = sum(f.severity == "error" for f in findings)
    if args.format != "text" or findings:
        print(f"{errors} error(s), {len(findings) - errors} warning(s)", file=sys.stderr)
    return 1 if errors else 0


def _plan(args: argparse.Namespace) -> int:
    try:
        repo = git.Repo(args.dir, search_parent_directories=True)
        before, after = (CommitSnapshot(repo.commit(rev).tree) for rev in (args.base, args.head))
        shas = [repo.commit(rev).hexsha for rev in (args.base, args.head)]
    except (git.GitError, git.BadName, ValueError) as err:
        raise UsageError(f"plan: {err}") from err
    kind = server_of(after, args.path)
    language = servers.language(kind, args.config_file)
    result = plan.plan(before, after, args.path, _target(args, kind), language, *shas)
    sys.stdout.write(plan.markdown(result))
    return 1 if result.changed else 0


def server_of(snapshot: Snapshot, pair: str) -> str:
    """pair.toml's `server` ("dhcpd" when absent or unreadable: render reports that)."""
    files = snapshot.read(render.join_path(pair, render.PAIR_FILE))
    try:
        raw = tomllib.loads(files[0].data.decode("utf-8")) if files else {}
    except (UnicodeDecodeError, tomllib.TOMLDecodeError):
        raw = {}
    kind = raw.get("server", "dhcpd")
    return kind if isinstance(kind, str) else "dhcpd"


def _target(args: argparse.Namespace, kind: str) -> Path:
    default = config.KEA_TARGET if kind == "kea" else config.Deploy().target
    return args.target if args.target is not None else default


def _init(args: argparse.Namespace) -> int:
    sha = template.init(args.dir, args.server)
    if args.server == "kea":
        print(f"made {args.dir}, a config repo for one Kea HA pair (commit {sha[:12]}); "
              "see docs/kea.md")  # fmt: skip
        return 0
    print(f"""made {args.dir}, a config repo for one failover pair (commit {sha[:12]}).
next:
  1. edit pair.toml (peer name, addresses) and dhcp/ (subnets, hosts)
  2. dhcp-gitops validate {args.dir}
  3. push it to your forge; point each server's agent.toml [source] url at it
  4. keep the CI definition of your forge (.github/workflows, .gitlab-ci.yml or
     .forgejo/workflows) and delete the others: every pull request is then
     validated and planned""")
    return 0


def _import(args: argparse.Namespace) -> int:
    from agent.review import adopt  # `import` is a keyword, hence the module's name

    options = adopt.Options(
        source=args.source, role=args.role, peer_source=args.peer_from, repo=args.dir,
        target=args.target, main=args.config_file, names=adopt.parse_names(args.names),
        dhcpd=args.dhcpd,
    )  # fmt: skip
    return adopt.run(options, sys.stdout)


def fetch_status(url: str) -> dict[str, Any]:
    """GET /status of a running agent (the path is added when the URL has none)."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise UsageError(f"--url {url}: use http:// or https://")
    if parts.path in ("", "/"):
        url = urllib.parse.urlunsplit(parts._replace(path="/status"))
    try:
        with urllib.request.urlopen(url, timeout=10) as answer:  # noqa: S310 - scheme checked
            doc: dict[str, Any] = json.load(answer)
    except (OSError, ValueError) as err:
        raise DhcpGitopsError(f"{url}: {err}") from err
    return doc


def _demo(args: argparse.Namespace) -> int:
    from agent.review import demo  # only the demo needs the template and git set-up code

    return demo.run(args.dir, sys.stdout, serve=args.serve, port=args.port)


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


def print_status(doc: dict[str, Any], out: TextIO) -> None:
    node, live = doc["node"], doc["live"]
    rows = [("node", f"{node['name']} ({node['role']}), target {doc['target']}")]
    deployed = doc["deployed"]
    if deployed:
        rows.append(("deployed", _commit_line(deployed)))
        rows.append(("", f"deployed at {deployed['deployed_at']}"))
    else:
        rows.append(("deployed", "nothing yet"))
    rows.append(("live", _drift_line(live)))
    if "state" in doc:  # a running agent's document
        working = f" on {doc['working_on'][:12]}" if doc.get("working_on") else ""
        rows.append(("agent", f"{doc['state']}{working}, up {doc['uptime_seconds']:.0f} s"))
        rows.append(("dhcpd", _dhcpd_line(doc["dhcpd"])))
    if doc["pin"]:
        pin = doc["pin"]
        rows.append(("pinned", f"{pin['sha'][:12]} by a rollback, until the branch moves on"))
    attempt = doc["last_attempt"]
    if attempt:
        rows.append(
            (
                "last",
                f"{attempt['result']} {(attempt['sha'] or '?')[:12]} at {attempt['finished_at']}",
            )
        )
        if attempt["result"] not in SUCCESS:
            rows.append(("", f"step {attempt['step']}: {attempt['message'].splitlines()[0]}"))
            rows += [("", str(Problem(**p))) for p in attempt["problems"]]
    for key, value in rows:
        print(f"{key:<10} {value}", file=out)


def _commit_line(c: dict[str, Any]) -> str:
    return f"{c['sha'][:12]} {c['subject']!r} by {c['author']}, committed {c['committed_at']}"


def _dhcpd_line(dhcpd: dict[str, Any]) -> str:
    if "running" not in dhcpd:
        return f"restart = {dhcpd['mode']}: managed outside the agent"
    return f"running, pid {dhcpd['pid']}" if dhcpd["running"] else "NOT RUNNING"


def _drift_line(live: dict[str, Any]) -> str:
    text = {
        "none": "matches the deployed tree",
        "rollback_tree": "DRIFT: holds the rollback tree, not the deployed one",
        "drifted": "DRIFT: changed outside dhcp-gitops",
        "never_deployed": "not deployed by dhcp-gitops yet",
        "missing": "the target folder does not exist",
        "deploying": "a deploy is running",
    }[live["drift"]]
    if live["changed_files"]:
        text += ": " + ", ".join(live["changed_files"])
    if live["stage_leftover"]:
        text += " (an interrupted run left a stage; the next sync removes it)"
    return text
