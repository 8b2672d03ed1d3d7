"""`dhcp-gitops import`: a config repo from the /etc/dhcp of servers that run today.

A network team copies /etc/dhcp of its primary (and of its secondary); import
turns the copies into a config repo and then proves that the repo renders back,
for each role, to what the servers have now: byte for byte, except the failover
declaration, which pair.toml now describes once and a template renders for
either role (there the parsed declarations must be equal, field by field).

Reading (agent/review/copies.py), lifting and laying out are pure; then the repo
is written and the proof run. A refused copy (a link, a second failover peer)
writes nothing. What knows dhcpd is behind the seam (agent.servers.base.Importer):
reading a copy's declarations, lifting them into pair.toml and a template, and
the proof.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

import git

from agent import servers
from agent.engine import render
from agent.engine.roles import server_only_of
from agent.errors import DhcpGitopsError, RenderError, UsageError
from agent.review.copies import read_copy
from agent.servers.base import Copy, Importer, Lifted, Proof
from agent.source.snapshot import RepoFile, WorkTree

ROLES = ("primary", "secondary")
AUTHOR = git.Actor("dhcp-gitops import", "dhcp-gitops@localhost")
_NODE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")  # as agent.toml's [node] name


@dataclass(frozen=True)
class Options:
    source: Path  # --from: a copy of one server's /etc/dhcp
    role: str  # that server's role
    peer_source: Path | None  # --peer-from: a copy of the other server's
    repo: Path
    target: Path = Path("/etc/dhcp")
    main: str = "dhcpd.conf"
    names: Mapping[str, str] = field(default_factory=lambda: parse_names(None))
    dhcpd: str = "/usr/sbin/dhcpd"


def parse_names(text: str | None) -> dict[str, str]:
    """--names NAME1,NAME2: the agents' node names of the primary and the secondary."""
    if text is None:
        return {"primary": "primary", "secondary": "secondary"}
    names = [n.strip() for n in text.split(",")]
    if len(names) != 2 or not all(_NODE_NAME.fullmatch(n) for n in names):
        raise UsageError(f"--names {text}: give two node names, primary first (e.g. dhcp1,dhcp2)")
    return dict(zip(ROLES, names, strict=True))


def other(role: str) -> str:
    return ROLES[1] if role == ROLES[0] else ROLES[0]


# --- the command --------------------------------------------------------------


def run(options: Options, out: TextIO) -> int:
    """Import, write the repo, prove it renders back: 0 equivalent, 1 not (the repo stays)."""
    _check_options(options)
    importer = servers.importer("dhcpd", options.target, options.main, options.dhcpd)
    copies = read_copies(options, importer)
    lifted = importer.lift(copies, options.names, options.role)
    files = repo_files(copies, lifted, options, importer)
    sha = write_repo(options.repo, files, _commit_message(options))
    _say_imported(out, options, copies, files, sha)
    proofs = [prove(copy, options, importer) for copy in copies.values()]
    _say_proved(out, options, proofs)
    _say_next(out, options, copies)
    return 0 if all(p.ok for p in proofs) else 1


def _check_options(options: Options) -> None:
    repo = options.repo
    if repo.exists() and (not repo.is_dir() or any(repo.iterdir())):
        raise UsageError(f"{repo} is not empty: import makes a new repository")
    main = Path(options.main)
    if main.is_absolute() or ".." in main.parts or not options.main:
        raise UsageError(f"--config-file {options.main}: a path relative to the target")


def read_copies(options: Options, importer: Importer) -> dict[str, Copy]:
    copies = {options.role: read_copy(options.source, options.role, options.main, importer)}
    if options.peer_source is not None:
        role = other(options.role)
        copies[role] = read_copy(options.peer_source, role, options.main, importer)
    return {role: copies[role] for role in ROLES if role in copies}


# --- the repo's files ----------------------------------------------------------------


Entry = tuple[str, bytes]  # (path below dhcp/ or roles/<role>/, content)


def repo_files(
    copies: Mapping[str, Copy], lifted: Lifted, options: Options, importer: Importer
) -> dict[str, bytes]:
    entries = {role: entries_of(c, lifted, importer) for role, c in copies.items()}
    kept = kept_verbatim(copies, layout(entries), lifted, options, importer)
    entries |= {role: entries_of(copies[role], lifted, importer, True) for role in kept}
    files = layout(entries)
    files["pair.toml"] = (_server_only(_preserve(copies)) + lifted.pair_toml).encode()
    files["README.md"] = readme(options, copies, lifted, kept).encode()
    return files


def kept_verbatim(
    copies: Mapping[str, Copy],
    files: Mapping[str, bytes],
    lifted: Lifted,
    options: Options,
    importer: Importer,
) -> list[str]:
    """The roles whose pair file the template renders equivalent but not byte for byte
    (it writes the declaration in an order and layout of its own): that file is kept
    as the server has it, so that the first deploy changes nothing and restarts
    nothing. A file the template gets wrong keeps the template, for the proof to name
    the difference. Only with both copies: from one, the other server's file is the
    template's."""
    if len(copies) < 2:
        return []
    kept = []
    for role, copy in copies.items():
        try:
            tree = _rendered(files, lifted, role, options)
        except RenderError:
            continue  # the proof says so
        if copy.pair_file in importer.prove(copy, tree.files, tree.sources).equivalent:
            kept.append(role)
    return kept


def _rendered(
    files: Mapping[str, bytes], lifted: Lifted, role: str, options: Options
) -> render.Rendered:
    """The role's tree from the repo files before they are written."""
    folders = (render.BASE, render.role_folder(role))
    layers = [
        (f, [RepoFile(p, d) for p, d in files.items() if p.startswith(f + "/")]) for f in folders
    ]
    pair_toml = RepoFile(render.PAIR_FILE, lifted.pair_toml.encode())
    values = render.variables(options.names[role], role, str(options.target), pair_toml)
    return render.render(layers, values)


def entries_of(
    copy: Copy, lifted: Lifted, importer: Importer, verbatim: bool = False
) -> dict[str, Entry]:
    """Live path -> repo entry: a file holding secrets as its stand-in (dummy secrets);
    the file declaring the pair (unless kept verbatim) and any file that is named *.j2
    already become templates (one that renders its text unchanged)."""
    entries: dict[str, Entry] = {}
    for rel, data in copy.files.items():
        if rel in copy.secrets:
            entries[rel] = (rel, importer.stand_in(data))
        elif rel == copy.pair_file and not verbatim:
            template = lifted.templates[copy.role]
            entries[rel] = (rel + render.TEMPLATE_SUFFIX, template.encode())
        elif rel.endswith(render.TEMPLATE_SUFFIX):
            source = importer.verbatim(_utf8(copy, rel))
            entries[rel] = (rel + render.TEMPLATE_SUFFIX, source.encode())
        else:
            entries[rel] = (rel, data)
    return entries


def _utf8(copy: Copy, rel: str) -> str:
    try:
        return copy.files[rel].decode("utf-8")
    except UnicodeDecodeError as err:
        message = f"{Path(copy.where) / rel}: not UTF-8 text, so it cannot become a template"
        raise DhcpGitopsError(message) from err


def layout(entries: Mapping[str, Mapping[str, Entry]]) -> dict[str, bytes]:
    """Repo path -> content: what both servers have alike goes to dhcp/, the rest (a
    file that differs, or that one server lacks) to roles/<role>/."""
    if len(entries) == 1:
        (only,) = entries.values()
        return {f"{render.BASE}/{name}": data for name, data in only.values()}
    files: dict[str, bytes] = {}
    for live in sorted(entries["primary"].keys() | entries["secondary"].keys()):
        found = {role: entries[role][live] for role in ROLES if live in entries[role]}
        if len(found) == 2 and found["primary"] == found["secondary"]:
            name, data = found["primary"]
            files[f"{render.BASE}/{name}"] = data
        else:
            files |= {f"{render.role_folder(r)}/{name}": data for r, (name, data) in found.items()}
    return files


def write_repo(folder: Path, files: Mapping[str, bytes], message: str) -> str:
    """The files in a new git repository, one commit on main; its sha."""
    for rel, data in sorted(files.items()):
        path = folder / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    try:
        repo = git.Repo.init(folder, initial_branch="main")
        repo.index.add(sorted(files))
        return repo.index.commit(message, author=AUTHOR, committer=AUTHOR).hexsha
    except git.GitError as err:
        raise DhcpGitopsError(f"{folder}: git: {err}") from err


def _commit_message(options: Options) -> str:
    return f"Imported from the servers' copies by dhcp-gitops import\n\n{_from_where(options)}\n"


def _from_where(options: Options) -> str:
    said = [f"{options.source.resolve()} ({options.role})"]
    if options.peer_source is not None:
        said.append(f"{options.peer_source.resolve()} ({other(options.role)})")
    return " and ".join(said)


def readme(
    options: Options, copies: Mapping[str, Copy], lifted: Lifted, kept: Sequence[str] = ()
) -> str:
    return f"""# DHCP failover pair "{lifted.name}"

Imported by `dhcp-gitops import` from {_from_where(options)}: copies of
{options.target} on the servers. This repo renders back to those files, byte for
byte, except the failover declaration, which `pair.toml` now describes once.

- `pair.toml`: the failover peer; the failover file's `.j2` template renders each
  server's declaration from it (the text around the declaration is kept as it was)
- `dhcp/`: files both servers have alike
- `roles/primary/`, `roles/secondary/`: files that differ, or that one server lacks
{_secrets_note(_preserve(copies))}{_kept_note(copies, kept)}
Next: `dhcp-gitops validate .`, push to your forge, and point each server's agent
at it (agent.toml `[source] url`, `[node] name` and `role`).
"""


def _kept_note(copies: Mapping[str, Copy], kept: Sequence[str]) -> str:
    if not kept:
        return ""
    files = ", ".join(f"`{render.role_folder(r)}/{copies[r].pair_file}`" for r in kept)
    return (f"\nKept as the servers have them, not as templates: {files}. The template "
            "would write\nthe failover declaration in its own order and layout, and the "
            "first deploy would\nthen rewrite the file and restart dhcpd. `pair.toml` "
            "describes the declaration;\nto render it from there, replace the file by "
            "the template in a change of its own.\n")  # fmt: skip


def _secrets_note(preserve: list[str]) -> str:
    if not preserve:
        return ""
    return (f"\nHolding key secrets, kept on the servers: {', '.join(preserve)}. The repo has "
            "a stand-in of each\n(the same keys, dummy secrets), so that it validates; "
            "pair.toml's `server_only` names\nthem, and the agent never deploys a stand-in: "
            "it keeps the server's own with\n"
            f"`[deploy] preserve = {_toml_list(preserve)}` in each agent.toml.\n")  # fmt: skip


def _server_only(preserve: list[str]) -> str:
    """pair.toml's declaration of the files that stay on the servers (roles.server_only_of)."""
    if not preserve:
        return ""
    return ("# Files only the servers hold (they hold key secrets): the repo's copy is a\n"
            "# stand-in with dummy secrets, never deployed; each agent keeps its server's\n"
            "# own, named in its [deploy] preserve.\n"
            f"server_only = {_toml_list(preserve)}\n\n")  # fmt: skip


def _preserve(copies: Mapping[str, Copy]) -> list[str]:
    return sorted({rel for copy in copies.values() for rel in copy.secrets})


def _toml_list(texts: list[str]) -> str:
    return "[" + ", ".join(json.dumps(t, ensure_ascii=False) for t in texts) + "]"


# --- the proof ---------------------------------------------------------------------


def prove(copy: Copy, options: Options, importer: Importer) -> Proof:
    """The role rendered from the new repo, then proved by the server software."""
    name = options.names[copy.role]
    snapshot = WorkTree(options.repo)
    try:
        rendered = render.render_pair(snapshot, "", copy.role, name, str(options.target))
        server_only = server_only_of(snapshot, "")
    except RenderError as err:
        failed = Proof(copy.role, left_out=list(copy.secrets))
        failed.differences.append(f"the repo does not render: {err.message}")
        return failed
    # As the agent deploys it: without the stand-ins, the server's own files in their place.
    files = {rel: data for rel, data in rendered.files.items() if rel not in server_only}
    return importer.prove(copy, files, rendered.sources)


# --- what the user reads --------------------------------------------------------------


def _say_imported(
    out: TextIO, options: Options, copies: Mapping[str, Copy], files: Mapping[str, bytes], sha: str
) -> None:
    print(f"made {options.repo} from {_from_where(options)} (commit {sha[:12]})", file=out)
    for folder in (render.BASE, *(render.role_folder(r) for r in ROLES)):
        count = sum(rel.startswith(folder + "/") for rel in files)
        if count:
            print(f"  {folder}/: {count} file(s)", file=out)
    for note in _notes(copies):
        print(note, file=out)


def _notes(copies: Mapping[str, Copy]) -> Iterator[str]:
    preserve = _preserve(copies)
    if preserve:
        yield (
            f"holding key secrets, committed as stand-ins (pair.toml server_only): "
            f"{', '.join(preserve)}; the real ones stay on the servers: add "
            f"[deploy] preserve = {_toml_list(preserve)} to each agent.toml"
        )
    for copy in copies.values():
        yield from copy.notes


def _say_proved(out: TextIO, options: Options, proofs: Sequence[Proof]) -> None:
    print("rendered back and compared with the copies:", file=out)
    for proof in proofs:
        print(f"{proof.role}: {_summary(proof)}", file=out)
        for difference in proof.differences:
            print(f"  {difference}", file=out)
    if len(proofs) == 1:
        role = other(proofs[0].role)
        print(f"{role}: not compared (no --peer-from copy): it renders the {proofs[0].role}'s "
              "files with its own failover declaration", file=out)  # fmt: skip
    if all(p.ok for p in proofs):
        print("equivalent: the repo renders back to what the servers have", file=out)
    else:
        count = sum(len(p.differences) for p in proofs)
        print(f"NOT equivalent: {count} difference(s) above; {options.repo} is kept to look at",
              file=out)  # fmt: skip


def _summary(proof: Proof) -> str:
    said = [f"{len(proof.identical)} files identical"]
    said += [f"{rel} equivalent" for rel in proof.equivalent]
    said += [f"{rel} left out (secret)" for rel in proof.left_out]
    if proof.differences:
        said.append(f"{len(proof.differences)} difference(s)")
    return ", ".join(said) + (f"; {proof.validator}" if proof.validator else "")


def _say_next(out: TextIO, options: Options, copies: Mapping[str, Copy]) -> None:
    steps = [f"dhcp-gitops validate {options.repo}   (every role, dhcpd -t and the pair checks)"]
    if "primary" not in copies:
        steps.append("set the primary's mclt and split (or hba) in pair.toml")
    steps += [
        "push it to your forge; on each server, agent.toml [source] url, [node] name and role",
        "dhcp-gitops sync on one server; on the other once failover is back to normal",
    ]
    print("next:", file=out)
    for n, step in enumerate(steps, 1):
        print(f"  {n}. {step}", file=out)
