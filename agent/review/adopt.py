"""`dhcp-gitops import`: a config repo from the /etc/dhcp of servers that run today.

A network team copies /etc/dhcp of its primary (and of its secondary); import
turns the copies into a config repo and then proves that the repo renders back,
for each role, to what the servers have now: byte for byte, except the failover
declaration, which pair.toml now describes once and a template renders for
either role (there the parsed declarations must be equal, field by field).

Reading, lifting and laying out are pure; then the repo is written and the
proof run. A refused copy (a link, a second failover peer) writes nothing.
"""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, TextIO

import git

from agent import servers, tree
from agent.engine import render
from agent.errors import DhcpGitopsError, RenderError, UsageError
from agent.review import validate
from agent.servers.dhcpd import conf
from agent.servers.dhcpd.conf import Failover, OutsideInclude
from agent.servers.dhcpd.pair import DEFAULT_PORT
from agent.source.snapshot import WorkTree

ROLES = ("primary", "secondary")
AUTHOR = git.Actor("dhcp-gitops import", "dhcp-gitops@localhost")
_NODE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")  # as agent.toml's [node] name

# Keys each server says of itself; equal on both servers, they move to [failover].
NODE_KEYS = (
    "address",
    "port",
    "max_response_delay",
    "max_unacked_updates",
    "load_balance_max_seconds",
    "statements",
)
PRIMARY_KEYS = ("mclt", "split", "hba")  # dhcpd.conf(5): on the primary only
_KEY_ORDER = ("name", *NODE_KEYS[:2], *PRIMARY_KEYS, *NODE_KEYS[2:])

TEMPLATE_NOTE = """\
{#
Imported by dhcp-gitops import. The text around the failover declaration is the
server's own, kept verbatim in raw blocks; the declaration is rendered from
pair.toml for either role (node: this server's table, peer: the other's).
#}
"""


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
    sides = read_sides(options)
    pair = lift({s.role: s.failover for s in sides.values()}, options.names)
    files = repo_files(sides, pair, options)
    sha = write_repo(options.repo, files, _commit_message(options))
    _say_imported(out, options, sides, files, sha)
    proofs = [prove(side, options) for side in sides.values()]
    _say_proved(out, options, proofs)
    _say_next(out, options, sides)
    return 0 if all(p.ok for p in proofs) else 1


def _check_options(options: Options) -> None:
    repo = options.repo
    if repo.exists() and (not repo.is_dir() or any(repo.iterdir())):
        raise UsageError(f"{repo} is not empty: import makes a new repository")
    main = Path(options.main)
    if main.is_absolute() or ".." in main.parts or not options.main:
        raise UsageError(f"--config-file {options.main}: a path relative to the target")


# --- reading the copies --------------------------------------------------------


@dataclass(frozen=True)
class Side:
    """One server's copy: its files (paths relative to the target) and what they declare."""

    role: str
    folder: Path
    files: dict[str, bytes]
    failover: Failover
    secrets: tuple[str, ...]  # files holding key secrets: they stay on the server
    outside: tuple[OutsideInclude, ...]  # includes the agent would refuse


def read_sides(options: Options) -> dict[str, Side]:
    sides = {options.role: read_side(options.source, options.role, options)}
    if options.peer_source is not None:
        role = other(options.role)
        sides[role] = read_side(options.peer_source, role, options)
    return {role: sides[role] for role in ROLES if role in sides}


def read_side(folder: Path, role: str, options: Options) -> Side:
    files = read_tree(folder)
    if options.main not in files:
        raise UsageError(f"{folder}: no {options.main} (the main config; see --config-file)")
    parsed = conf.parse(files, options.main, str(options.target))
    failover = _the_failover(parsed.failovers, folder, role)
    secrets = tuple(rel for rel, data in files.items() if holds_secret(data))
    if failover.where.file in secrets:
        raise DhcpGitopsError(
            f"{folder / failover.where.file} holds both the failover declaration and a key "
            "secret: move the key statement into a file of its own (e.g. dhcpd.keys, "
            "included from it) on the server, then import again"
        )
    return Side(role, folder, files, failover, secrets, parsed.includes_outside)


def read_tree(folder: Path) -> dict[str, bytes]:
    """Every file below the folder. The agent replaces the whole target, so every file
    must reach the repo; links and special files cannot, and the agent refuses them."""
    if not folder.is_dir():
        raise UsageError(f"{folder} is not a folder: give a copy of a server's /etc/dhcp")
    return {rel: _regular_file(folder, rel, path) for rel, path in tree.files(folder)}


def _regular_file(folder: Path, rel: str, path: Path) -> bytes:
    if path.is_symlink():
        raise DhcpGitopsError(
            f"{path}: symbolic link (to {str(path.readlink())!r}) refused: the agent "
            "deploys regular files only; put a copy of the file it points to in its place"
        )
    if not path.is_file():
        raise DhcpGitopsError(f"{path}: not a regular file (a socket, fifo or device): refused")
    if ".git" in Path(rel).parts:
        raise DhcpGitopsError(
            f"{path}: a .git folder cannot go into a repo: remove it from the copy"
        )
    try:
        render.check_name(rel)
    except RenderError as err:
        raise DhcpGitopsError(f"{folder}: {err.message}") from err
    return path.read_bytes()


def _the_failover(found: Sequence[Failover], folder: Path, role: str) -> Failover:
    """pair.toml describes one failover peer; the copy must declare it for this role."""
    if not found:
        raise DhcpGitopsError(
            f"{folder}: no failover peer declaration in the main config or the files it "
            "includes: import adopts a failover pair"
        )
    if len(found) > 1:
        said = ", ".join(f'"{f.name}" ({_at(f)})' for f in found)
        raise DhcpGitopsError(f"{folder} declares {len(found)} failover peers ({said}): "
                              "import adopts a pair with one")  # fmt: skip
    failover = found[0]
    if failover.role != role:
        said = f'"{failover.role};"' if failover.role else 'neither "primary;" nor "secondary;"'
        raise DhcpGitopsError(f"{folder}: failover peer \"{failover.name}\" ({_at(failover)}) "
                              f"says {said}, but this copy is imported as the {role}")  # fmt: skip
    return failover


def _at(failover: Failover) -> str:
    return f"{failover.where.file}:{failover.where.line}"


def holds_secret(data: bytes) -> bool:
    """A `key NAME { ... secret "..."; }` statement (TSIG or OMAPI): not for git."""
    opened: list[str] = []  # the first word of each open block's head
    head: list[str] = []
    for _, kind, value in conf.tokens(data.decode("utf-8", "replace")):
        if kind == "punct" and value == "{":
            opened.append(head[0] if head else "")
            head = []
        elif kind == "punct" and value in ";}":
            if opened[-1:] == ["key"] and head[:1] == ["secret"]:
                return True
            if value == "}" and opened:
                opened.pop()
            head = []
        else:
            head.append(value.lower() if kind == "word" else f"{kind}:{value}")
    return False


# --- where the declaration is -----------------------------------------------------


@dataclass(frozen=True)
class Lexeme:
    start: int  # character offsets in the file's text
    end: int
    kind: str  # "comment" | "string" | "word" | "punct"
    text: str

    @property
    def value(self) -> str:
        """As conf.tokens() gives it: a string without its quotes and escapes."""
        if self.kind == "string":
            return re.sub(r"\\(.)", r"\1", self.text[1:].removesuffix('"'), flags=re.DOTALL)
        return self.text


# conf.tokens() with offsets: the same comments, strings, words and punctuation.
_LEXEME = re.compile(
    r'(?P<comment>\#[^\n]*)|(?P<string>"(?:\\.|[^"\\])*"?)|(?P<word>[\w-][\w.-]*)'
    r"|(?P<space>\s+)|(?P<punct>.)",
    re.DOTALL,
)


def lexemes(text: str) -> Iterator[Lexeme]:
    for found in _LEXEME.finditer(text):
        kind = found.lastgroup or "punct"
        if kind != "space":
            yield Lexeme(found.start(), found.end(), kind, found.group())


def block_span(text: str, failover: Failover) -> tuple[int, int]:
    """(start, end) of `failover peer "NAME" { ... }` in the text of the file holding it."""
    code = [x for x in lexemes(text) if x.kind != "comment"]
    for i in range(len(code) - 3):
        if _opens(code[i : i + 4], failover.name) and _line(text, code[i].start) == (
            failover.where.line
        ):
            return code[i].start, _closing(code, i + 3, failover)
    raise DhcpGitopsError(f'{_at(failover)}: failover peer "{failover.name}" not found')


def _opens(four: Sequence[Lexeme], name: str) -> bool:
    values = [x.value for x in four]
    return [v.lower() for v in values[:2]] == ["failover", "peer"] and values[2:] == [name, "{"]


def _line(text: str, offset: int) -> int:
    return text.count("\n", 0, offset) + 1


def _closing(code: Sequence[Lexeme], opening: int, failover: Failover) -> int:
    depth = 0
    for lexeme in code[opening:]:
        if lexeme.kind == "punct" and lexeme.text in ("{", "}"):
            depth += 1 if lexeme.text == "{" else -1
            if depth == 0:
                return lexeme.end
    raise DhcpGitopsError(f'{_at(failover)}: failover peer "{failover.name}" is never closed')


def has_comments(text: str, span: tuple[int, int]) -> bool:
    start, end = span
    return any(x.kind == "comment" for x in lexemes(text[start:end]))


# --- pair.toml ----------------------------------------------------------------


def lift(failovers: Mapping[str, Failover], names: Mapping[str, str]) -> dict[str, Any]:
    """pair.toml from the declarations: what both servers say alike goes to [failover],
    what each says of itself to [primary] or [secondary]. Without the other server's
    copy, it is taken to mirror this one (its address and port are our peer's)."""
    _same_name(failovers)
    primary, secondary = failovers.get("primary"), failovers.get("secondary")
    nodes = {"primary": _own(primary, secondary), "secondary": _own(secondary, primary)}
    shared = _shared(nodes)
    name = next(iter(failovers.values())).name
    table = {"name": name, **_said(shared), **_primary_only(primary)}
    return {"failover": table} | {
        role: {"name": names[role], **_without(nodes[role], shared)} for role in ROLES
    }


def _same_name(failovers: Mapping[str, Failover]) -> None:
    said = {role: f.name for role, f in failovers.items()}
    if len(set(said.values())) > 1:
        raise DhcpGitopsError(
            f"the primary's failover peer is \"{said['primary']}\", the secondary's "
            f'"{said["secondary"]}": a pair has one name (rename one on its server first)'
        )


def _own(mine: Failover | None, theirs: Failover | None) -> dict[str, Any]:
    """What a server says of itself; what its partner says of it fills the gaps."""
    said = mine or theirs
    assert said is not None  # one of the two copies was read
    values: dict[str, Any] = {
        "address": _first(mine.address if mine else None, theirs.peer_address if theirs else None),
        "port": _first(mine.port if mine else None, theirs.peer_port if theirs else None),
        "max_response_delay": said.max_response_delay,
        "max_unacked_updates": said.max_unacked_updates,
        "load_balance_max_seconds": said.load_balance_max_seconds,
        "statements": list(said.other),
    }
    return {key: value for key, value in values.items() if value is not None}


def _first(*values: object) -> object:
    return next((v for v in values if v is not None), None)


def _shared(nodes: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """Keys both servers give alike (never the address: each has its own)."""
    primary, secondary = nodes["primary"], nodes["secondary"]
    return {
        key: primary[key]
        for key in NODE_KEYS[1:]
        if key in primary and key in secondary and primary[key] == secondary[key]
    }


def _said(shared: Mapping[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in shared.items() if value != []}  # no statements: no key


def _without(node: Mapping[str, Any], shared: Mapping[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in node.items() if key not in shared}


def _primary_only(primary: Failover | None) -> dict[str, Any]:
    if primary is None:
        return {}
    values = {key: getattr(primary, key) for key in PRIMARY_KEYS}
    return {key: value for key, value in values.items() if value is not None}


def pair_toml(pair: Mapping[str, Mapping[str, Any]], primary_known: bool) -> str:
    lines = [
        "# The failover pair, lifted from the servers' failover declarations by",
        "# dhcp-gitops import. The failover file's template renders each server's",
        "# declaration from it: `node` is this server's table, `peer` the other's,",
        "# `pair` this whole file. A key in [failover] is the same on both servers;",
        "# one in [primary] or [secondary] is that server's own. `statements` are the",
        '# declaration\'s other statements, each rendered as "<statement>;".',
    ]
    for name, table in pair.items():
        lines += ["", f"[{name}]"]
        lines += [f"{key} = {_toml(value)}" for key, value in _ordered(table)]
        if name == "failover" and not primary_known:
            lines += _unknown_primary()
    return "\n".join(lines) + "\n"


def _unknown_primary() -> list[str]:
    return [
        "# The primary's mclt and split (or hba) are not in the secondary's copy:",
        "# set them here, as the primary has them (import --peer-from reads them), e.g.",
        "# mclt = 1800",
        "# split = 128",
    ]


def _ordered(table: Mapping[str, Any]) -> list[tuple[str, Any]]:
    return sorted(table.items(), key=lambda kv: _KEY_ORDER.index(kv[0]))


def _toml(value: object) -> str:
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    if isinstance(value, int):
        return str(value)
    return json.dumps(str(value), ensure_ascii=False)  # a TOML basic string


# --- templates ----------------------------------------------------------------------


def block_template(pair: Mapping[str, Mapping[str, Any]], indent: str, primary_known: bool) -> str:
    """Jinja that renders either role's declaration from pair.toml (no newline at the end)."""
    i = indent
    return "\n".join([
        'failover peer "{{ pair.failover.name }}" {',
        '{% if node.role == "primary" %}',
        f"{i}primary;",
        *_primary_lines(pair["failover"], i, primary_known),
        "{% else %}",
        f"{i}secondary;",
        "{% endif %}",
        *_setting(pair, "address", f"{i}address", "node"),
        *_setting(pair, "port", f"{i}port", "node"),
        *_setting(pair, "address", f"{i}peer address", "peer"),
        *_setting(pair, "port", f"{i}peer port", "peer"),
        *_setting(pair, "max_response_delay", f"{i}max-response-delay", "node"),
        *_setting(pair, "max_unacked_updates", f"{i}max-unacked-updates", "node"),
        *_setting(pair, "load_balance_max_seconds", f"{i}load balance max seconds", "node"),
        *_statements(pair, i),
        "}",
    ])  # fmt: skip


def _primary_lines(failover: Mapping[str, Any], i: str, primary_known: bool) -> list[str]:
    # Without the primary's copy its values are unknown: the lines stay, so that
    # rendering the primary fails (naming the key) until pair.toml has them.
    keys = [k for k in PRIMARY_KEYS if k in failover] if primary_known else ["mclt", "split"]
    return [f"{i}{key} {_expr('pair.failover.' + key)};" for key in keys]


def _setting(pair: Mapping[str, Mapping[str, Any]], key: str, words: str, whose: str) -> list[str]:
    """`words VALUE;` from [failover], or from this node's (or the peer's) own table."""
    if key in pair["failover"]:
        return [f"{words} {_expr('pair.failover.' + key)};"]
    held = [role for role in ROLES if key in pair[role]]
    line = f"{words} {_expr(f'{whose}.{key}')};"
    if len(held) == 1:  # one server says it, the other not: render it where it is said
        return [f"{{% if {whose}.{key} is defined %}}", line, "{% endif %}"]
    return [line] if held else []


def _statements(pair: Mapping[str, Mapping[str, Any]], i: str) -> list[str]:
    if "statements" in pair["failover"]:
        listed = "pair.failover.statements"
    elif "statements" in pair["primary"]:
        listed = "node.statements"
    else:
        return []
    return [f"{{% for statement in {listed} %}}", f"{i}{_expr('statement')};", "{% endfor %}"]


def _expr(expression: str) -> str:
    return "{{ " + expression + " }}"


def failover_template(text: str, span: tuple[int, int], block: str) -> str:
    start, end = span
    return TEMPLATE_NOTE + verbatim(text[:start]) + block + verbatim(text[end:])


# A raw block cannot hold `{%` (`{% endraw %}` would end it), and Jinja turns
# every carriage return into a newline: both go out as string expressions.
_UNRAW = re.compile(r"(\{%|\r)")


def verbatim(text: str) -> str:
    """Jinja source that renders to exactly `text` in render's environment."""
    parts = _UNRAW.split(text)
    return "".join(_literal(p) if n % 2 else _raw(p) for n, p in enumerate(parts))


def _raw(text: str) -> str:
    if not text.strip():
        return text  # blanks and newlines: nothing Jinja reads, and no tag follows them
    # lstrip_blocks would strip blanks that open the line of `{% endraw %}`.
    blanks = re.search(r"(?<=\n)[^\S\n]+\Z", text)
    cut = blanks.start() if blanks else len(text)
    return f"{{% raw %}}{text[:cut]}{{% endraw %}}" + (_literal(text[cut:]) if text[cut:] else "")


def _literal(text: str) -> str:
    return _expr(json.dumps(text))  # JSON escapes are Jinja string escapes too


def block_indent(text: str, span: tuple[int, int]) -> str:
    """The indentation of the declaration's first inner line, for a familiar look."""
    lines = text[span[0] : span[1]].splitlines()
    found = re.match(r"[ \t]+", lines[1]) if len(lines) > 2 else None
    return found.group() if found else "  "


# --- the repo's files ----------------------------------------------------------------


Entry = tuple[str, bytes]  # (path below dhcp/ or roles/<role>/, content)


def repo_files(
    sides: Mapping[str, Side], pair: dict[str, Any], options: Options
) -> dict[str, bytes]:
    primary_known = "primary" in sides
    first = sides[options.role]
    text = _utf8(first, first.failover.where.file)
    indent = block_indent(text, block_span(text, first.failover))
    block = block_template(pair, indent, primary_known)
    entries = {role: entries_of(side, block) for role, side in sides.items()}
    files = layout(entries)
    files["pair.toml"] = pair_toml(pair, primary_known).encode()
    files["README.md"] = readme(options, sides, pair).encode()
    return files


def entries_of(side: Side, block: str) -> dict[str, Entry]:
    """Live path -> repo entry: secrets left out; the failover file and any file that is
    named *.j2 already become templates (one that renders its text unchanged)."""
    entries: dict[str, Entry] = {}
    for rel, data in side.files.items():
        if rel in side.secrets:
            continue
        if rel == side.failover.where.file:
            text = _utf8(side, rel)
            template = failover_template(text, block_span(text, side.failover), block)
            entries[rel] = (rel + render.TEMPLATE_SUFFIX, template.encode())
        elif rel.endswith(render.TEMPLATE_SUFFIX):
            entries[rel] = (rel + render.TEMPLATE_SUFFIX, verbatim(_utf8(side, rel)).encode())
        else:
            entries[rel] = (rel, data)
    return entries


def _utf8(side: Side, rel: str) -> str:
    try:
        return side.files[rel].decode("utf-8")
    except UnicodeDecodeError as err:
        message = f"{side.folder / rel}: not UTF-8 text, so it cannot become a template"
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


def readme(options: Options, sides: Mapping[str, Side], pair: Mapping[str, Any]) -> str:
    return f"""# DHCP failover pair "{pair["failover"]["name"]}"

Imported by `dhcp-gitops import` from {_from_where(options)}: copies of
{options.target} on the servers. This repo renders back to those files, byte for
byte, except the failover declaration, which `pair.toml` now describes once.

- `pair.toml`: the failover peer; the failover file's `.j2` template renders each
  server's declaration from it (the text around the declaration is kept as it was)
- `dhcp/`: files both servers have alike
- `roles/primary/`, `roles/secondary/`: files that differ, or that one server lacks
{_secrets_note(_preserve(sides))}
Next: `dhcp-gitops validate .`, push to your forge, and point each server's agent
at it (agent.toml `[source] url`, `[node] name` and `role`).
"""


def _secrets_note(preserve: list[str]) -> str:
    if not preserve:
        return ""
    return (f"\nLeft out because they hold key secrets: {', '.join(preserve)}. They stay on "
            f"the servers;\nthe agent keeps them across deploys with `[deploy] preserve = "
            f"{_toml(preserve)}`\nin each agent.toml.\n")  # fmt: skip


def _preserve(sides: Mapping[str, Side]) -> list[str]:
    return sorted({rel for side in sides.values() for rel in side.secrets})


# --- the proof ---------------------------------------------------------------------


@dataclass
class Proof:
    """One role rendered from the new repo, compared with that server's copy."""

    role: str
    identical: list[str] = field(default_factory=list)
    equivalent: list[str] = field(default_factory=list)  # failover files
    left_out: list[str] = field(default_factory=list)
    differences: list[str] = field(default_factory=list)
    dhcpd: str = ""  # what dhcpd -t said, or why it did not run

    @property
    def ok(self) -> bool:
        return not self.differences


def prove(side: Side, options: Options) -> Proof:
    proof = Proof(side.role, left_out=list(side.secrets))
    try:
        rendered = render.render_pair(
            WorkTree(options.repo), "", side.role, options.names[side.role], str(options.target)
        )
    except RenderError as err:
        proof.differences.append(f"the repo does not render: {err.message}")
        return proof
    compare(side, rendered.files, proof, options)
    run_dhcpd_t(side, rendered, proof, options)
    return proof


def compare(side: Side, rendered: Mapping[str, bytes], proof: Proof, options: Options) -> None:
    expected = {rel: data for rel, data in side.files.items() if rel not in side.secrets}
    for rel in sorted(expected.keys() | rendered.keys()):
        if rel not in rendered:
            proof.differences.append(f"{rel}: on the server, not rendered")
        elif rel not in expected:
            proof.differences.append(f"{rel}: rendered, not on the server")
        elif rel == side.failover.where.file:
            said = failover_differences(side, rendered, options)
            proof.differences += said
            proof.equivalent += [] if said else [rel]
        elif rendered[rel] == expected[rel]:
            proof.identical.append(rel)
        else:
            line = first_different_line(expected[rel], rendered[rel])
            proof.differences.append(f"{rel}: differs from line {line}")


def failover_differences(side: Side, rendered: Mapping[str, bytes], options: Options) -> list[str]:
    """The parsed declarations field by field, then the text around them, byte for byte."""
    rel = side.failover.where.file
    found = conf.parse(rendered, options.main, str(options.target)).failovers
    if len(found) != 1 or found[0].where.file != rel:
        return [f"{rel}: the rendered tree declares {len(found)} failover peer(s) "
                f"({', '.join(_at(f) for f in found)})"]  # fmt: skip
    said = [
        f"{rel}: failover {name}: {mine!r} on the server, {theirs!r} rendered"
        for name, mine, theirs in field_differences(side.failover, found[0])
    ]
    return said + _text_around(rel, _utf8(side, rel), rendered[rel], found[0], side.failover)


def field_differences(server: Failover, rendered: Failover) -> list[tuple[str, object, object]]:
    """(field, server's, rendered) where they differ; where they are and when dhcpd
    reads them aside, an unsaid port as 647 (dhcpd.conf(5)), other statements in any order."""
    said = []
    for f in fields(Failover):
        mine, theirs = getattr(server, f.name), getattr(rendered, f.name)
        if f.name not in ("where", "seq") and _comparable(f.name, mine) != _comparable(
            f.name, theirs
        ):
            said.append((f.name, mine, theirs))
    return said


def _comparable(name: str, value: object) -> object:
    if name in ("port", "peer_port"):
        return DEFAULT_PORT if value is None else value
    if name == "other" and isinstance(value, tuple):
        return sorted(value)
    return value


def _text_around(
    rel: str, server: str, rendered: bytes, found: Failover, failover: Failover
) -> list[str]:
    text = rendered.decode("utf-8", "replace")
    (start, end), (r_start, r_end) = block_span(server, failover), block_span(text, found)
    said = []
    if server[:start] != text[:r_start]:
        line = first_different_line(server[:start].encode(), text[:r_start].encode())
        said.append(f"{rel}: the text before the declaration differs from line {line}")
    if server[end:] != text[r_end:]:
        line = first_different_line(server[end:].encode(), text[r_end:].encode())
        said.append(f"{rel}: the text after the declaration differs ({line} lines after it)")
    return said


def first_different_line(a: bytes, b: bytes) -> int:
    mine, theirs = a.splitlines(keepends=True), b.splitlines(keepends=True)
    for n, (x, y) in enumerate(zip(mine, theirs, strict=False), 1):
        if x != y:
            return n
    return min(len(mine), len(theirs)) + 1


def run_dhcpd_t(side: Side, rendered: render.Rendered, proof: Proof, options: Options) -> None:
    """dhcpd -t on the rendered role with the secret files in, as the agent stages it."""
    cannot = _cannot_run_dhcpd(options)
    if cannot:
        proof.dhcpd = f"dhcpd -t skipped: {cannot}"
        return
    files = {**rendered.files, **{rel: side.files[rel] for rel in side.secrets}}
    language = servers.language("dhcpd", options.main, options.dhcpd)
    staged = render.Rendered(files, rendered.sources)
    problems = validate.server_check(staged, options.target, language)
    proof.dhcpd = "dhcpd -t: refused" if problems else "dhcpd -t: ok"
    proof.differences += [f"dhcpd -t: {p}" for p in problems]


def _cannot_run_dhcpd(options: Options) -> str | None:
    if not options.target.is_dir():
        return f"{options.target} does not exist here (dhcpd -t reads includes at live paths)"
    if shutil.which(options.dhcpd) is None:
        return f"{options.dhcpd} not found (install isc-dhcp-server)"
    return None


# --- what the user reads --------------------------------------------------------------


def _say_imported(
    out: TextIO, options: Options, sides: Mapping[str, Side], files: Mapping[str, bytes], sha: str
) -> None:
    print(f"made {options.repo} from {_from_where(options)} (commit {sha[:12]})", file=out)
    for folder in (render.BASE, *(render.role_folder(r) for r in ROLES)):
        count = sum(rel.startswith(folder + "/") for rel in files)
        if count:
            print(f"  {folder}/: {count} file(s)", file=out)
    for note in _notes(sides, options):
        print(note, file=out)


def _notes(sides: Mapping[str, Side], options: Options) -> Iterator[str]:
    preserve = _preserve(sides)
    if preserve:
        yield (
            f"left out, holding key secrets: {', '.join(preserve)}; they stay on the "
            f"servers: add [deploy] preserve = {_toml(preserve)} to each agent.toml"
        )
    for side in sides.values():
        yield from _side_notes(side, options)


def _side_notes(side: Side, options: Options) -> Iterator[str]:
    for inc in side.outside:
        yield (f'warning: {side.role}: {inc.file}:{inc.line} includes "{inc.path}", outside '
               f"{options.target}: the agent refuses it; move that file under "
               f"{options.target} on the servers")  # fmt: skip
    text = side.files[side.failover.where.file].decode("utf-8", "replace")
    if has_comments(text, block_span(text, side.failover)):
        yield (
            f"note: {side.role}: the comments inside the failover declaration "
            f"({_at(side.failover)}) are not kept: pair.toml and the template replace it"
        )


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
    return ", ".join(said) + (f"; {proof.dhcpd}" if proof.dhcpd else "")


def _say_next(out: TextIO, options: Options, sides: Mapping[str, Side]) -> None:
    steps = [f"dhcp-gitops validate {options.repo}   (every role, dhcpd -t and the pair checks)"]
    if "primary" not in sides:
        steps.append("set the primary's mclt and split (or hba) in pair.toml")
    steps += [
        "push it to your forge; on each server, agent.toml [source] url, [node] name and role",
        "dhcp-gitops sync on one server; on the other once failover is back to normal",
    ]
    print("next:", file=out)
    for n, step in enumerate(steps, 1):
        print(f"  {n}. {step}", file=out)
