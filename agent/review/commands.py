"""The review commands of the command line: validate, plan, init, import and demo.

They run on a config repo before a commit reaches any server, so they need no
agent.toml: the server software is the pair folder's (pair.toml `server`), and
what its agents would say is given as options (--config-file, --read-only, --allow).
"""

from __future__ import annotations

import argparse
import sys
import tomllib
import typing
from pathlib import Path
from typing import Any

import git

from agent import config, servers
from agent.engine import render
from agent.errors import UsageError
from agent.review import plan, template, validate
from agent.review.output import FORMATS
from agent.source.snapshot import CommitSnapshot, Snapshot, WorkTree


def add(sub: Any) -> None:
    """The review subcommands, on the command line's subparsers."""
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
    val.add_argument(
        "--allow",
        action="append",
        choices=policy_grants(),
        default=[],
        metavar="STATEMENT",
        help="a statement beyond DHCP the servers consent to, as their [policy] allow "
        f"(repeatable; one of {', '.join(policy_grants())})",
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


def policy_grants() -> list[str]:
    return list(typing.get_args(config.PolicyGrant))


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
    language = servers.language(kind, args.config_file, binary, args.read_only, args.allow)
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


def _demo(args: argparse.Namespace) -> int:
    from agent.review import demo  # only the demo needs the template and git set-up code

    return demo.run(args.dir, sys.stdout, serve=args.serve, port=args.port)
