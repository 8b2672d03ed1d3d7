"""The agent's configuration: one TOML file, checked whole at start, frozen after.

Relative paths in the file resolve against the file's own directory, so a
config folder can be moved as a unit.
"""

from __future__ import annotations

import tomllib
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from agent.errors import ConfigError
from agent.source import credentials

DEFAULT_PATH = Path("/etc/dhcp-gitops/agent.toml")

Role = Literal["primary", "secondary", "standalone"]
# The DHCP server software this node runs: one subpackage of agent/servers/ each.
ServerKind = Literal["dhcpd", "kea"]
Seconds = Annotated[float, Field(ge=0)]
PositiveSeconds = Annotated[float, Field(gt=0)]
# TOML arrays arrive as lists; frozen config keeps them as tuples.
Strings = Annotated[tuple[str, ...], Field(strict=False)]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class NodeConfig(_Section):
    """[node]: who this server is in its pair, and which DHCP server software it runs."""

    name: Annotated[str, Field(min_length=1, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")]
    role: Role
    server: ServerKind = "dhcpd"


class Source(_Section):
    url: Annotated[str, Field(min_length=1, repr=False)]  # it may hold a token
    branch: Annotated[str, Field(min_length=1, pattern=r"^[^\s~^:?*\[\\]+$")] = "main"
    path: str = ""
    poll_interval: Seconds = 60.0
    timeout: PositiveSeconds = 60.0
    # A failed reconcile (remote down, mirror damaged) is retried after retry_min
    # seconds, doubling up to retry_max while it keeps failing.
    retry_min: PositiveSeconds = 5.0
    retry_max: PositiveSeconds = 300.0
    ssh_key: Path | None = None
    known_hosts: Path | None = None
    # https: a file holding the token, sent as `username`'s password (agent/source/credentials.py)
    token_file: Path | None = None
    username: Annotated[str, Field(min_length=1, pattern=r"^[^:\s]+$")] | None = None
    # Signed commits (agent/source/signature.py): "gpg" checks against the public keys exported
    # to gpg_keyring, "ssh" against ssh-keygen's allowed_signers file.
    verify: Literal["none", "gpg", "ssh"] = "none"
    gpg_keyring: Path | None = None
    allowed_signers: Path | None = None
    # Anti-rollback: a branch head must descend from the deployed commit.
    require_descendant: bool = False

    @field_validator("url")
    @classmethod
    def _supported_url(cls, url: str) -> str:
        if remote_kind(url) == "unsupported":
            raise ValueError("use file://, ssh://, https://, user@host:path or an absolute path")
        if remote_kind(url) == "ssh" and ":" in urlsplit(url).netloc.rpartition("@")[0]:
            raise ValueError("ssh takes no password from the url: use ssh_key")
        credential = credentials.split(url)[1]
        if credential is not None and not credential.printable():
            raise ValueError("the credential in the url holds a control character")
        return url

    @field_validator("path")
    @classmethod
    def _inside_repo(cls, path: str) -> str:
        parts = Path(path).parts
        if path.startswith("/") or ".." in parts:
            raise ValueError("must be a folder inside the repository, without '..'")
        return "/".join(parts)


class Deploy(_Section):
    target: Path = Path("/etc/dhcp")
    state_dir: Path = Path("/var/lib/dhcp-gitops")
    preserve: Strings = ()
    keep_releases: Annotated[int, Field(ge=0)] = 5
    # Live files neither the repo nor preserve covers: agent/engine/hostfiles.py
    host_files: Literal["refuse", "replace"] = "refuse"

    @field_validator("preserve")
    @classmethod
    def _relative_globs(cls, globs: tuple[str, ...]) -> tuple[str, ...]:
        for glob in globs:
            if not glob or glob.startswith("/") or ".." in Path(glob).parts:
                raise ValueError(f"{glob!r}: a glob relative to the target, without '..'")
        return globs


class Dhcpd(_Section):
    binary: str = "/usr/sbin/dhcpd"
    # The dhcpd that `dhcpd -t` runs in the sandbox, when `binary` is a wrapper that
    # cannot run there (`ip netns exec`, `ip vrf exec`: only dhcpd's own files are
    # visible inside it). Default: binary.
    validate_binary: str | None = None
    config: str = "dhcpd.conf"
    restart: Literal["supervise", "command", "none"] = "command"
    restart_command: Strings = ("systemctl", "restart", "isc-dhcp-server")
    health_command: Strings = ()
    args: Strings = ()
    lease_file: Path = Path("/var/lib/dhcp/dhcpd.leases")
    health_timeout: Seconds = 3.0
    failover_timeout: Seconds = 0.0  # pairs: failover must be back to normal this soon (0: off)
    # dhcpd's live failover state is asked over OMAPI (its lease file lags behind a restart).
    omapi_port: Annotated[int, Field(ge=0, lt=65536)] = 7911
    # The live file holding the `key` block dhcpd.conf's omapi-key names (relative to the
    # target, e.g. a server-only "omapi.key"); the failover check signs with it. None: no key.
    omapi_key_file: str | None = None
    omshell: Strings = ("omshell",)

    @field_validator("config", "omapi_key_file")
    @classmethod
    def _config_inside_target(cls, config: str | None) -> str | None:
        if config is not None and (
            not config or config.startswith("/") or ".." in Path(config).parts
        ):
            raise ValueError("a path relative to deploy.target, without '..'")
        return config

    @field_validator("restart_command")
    @classmethod
    def _argv(cls, argv: tuple[str, ...]) -> tuple[str, ...]:
        if not argv:
            raise ValueError("an argv list such as ['systemctl', 'restart', 'isc-dhcp-server']")
        return argv


class Kea(_Section):
    """[kea]: a Kea DHCPv4 server (agent/servers/kea/), applied over its control socket."""

    binary: str = "/usr/sbin/kea-dhcp4"
    # What `kea-dhcp4 -t` runs in the sandbox when binary is a wrapper (as [dhcpd]'s).
    validate_binary: str | None = None
    config: str = "kea-dhcp4.conf"
    # Debian's kea-dhcp4.conf names this socket; the live config must name the same.
    control_socket: Annotated[Path, Field(strict=False)] = Path("/run/kea/kea4-ctrl-socket")
    # reload: config-test, then config-reload over the socket (Kea runs under systemd);
    # supervise: kea-dhcp4 -c FILE as the agent's child; command: restart_command.
    restart: Literal["reload", "supervise", "command", "none"] = "reload"
    restart_command: Strings = ("systemctl", "restart", "kea-dhcp4-server")
    health_timeout: Seconds = 3.0
    ha_timeout: Seconds = 0.0  # pairs: HA must be back to normal this soon (0: off)

    @field_validator("config")
    @classmethod
    def _config_inside_target(cls, config: str) -> str:
        if not config or config.startswith("/") or ".." in Path(config).parts:
            raise ValueError("a path relative to deploy.target, without '..'")
        return config

    @field_validator("control_socket")
    @classmethod
    def _absolute(cls, path: Path) -> Path:
        if not path.is_absolute():
            raise ValueError("an absolute path, the socket-name of the config's control-socket")
        return path

    @field_validator("restart_command")
    @classmethod
    def _argv(cls, argv: tuple[str, ...]) -> tuple[str, ...]:
        if not argv:
            raise ValueError("an argv list such as ['systemctl', 'restart', 'kea-dhcp4-server']")
        return argv


# Where a Kea node deploys unless [deploy] target says otherwise (dhcpd's: Deploy.target).
KEA_TARGET = Path("/etc/kea")


class Http(_Section):
    listen: Annotated[str, Field(pattern=r"^(\[[0-9a-fA-F:.]+\]|[^\s:\[\]]+):\d{1,5}$")] = (
        "127.0.0.1:8647"
    )
    webhook_secret_file: Path | None = None
    token_file: Path | None = None
    tls_cert: Path | None = None
    tls_key: Path | None = None
    max_body: Annotated[int, Field(gt=0)] = 1024 * 1024  # bytes a webhook body may have
    body_timeout: PositiveSeconds = 10.0  # seconds a body may take to arrive (408 beyond)

    @property
    def host(self) -> str:
        return self.listen.rsplit(":", 1)[0].strip("[]")

    @property
    def port(self) -> int:
        return int(self.listen.rsplit(":", 1)[1])


Result = Literal["deployed", "current", "refused", "rolled_back", "failed"]

MiB = 1024 * 1024


class Limits(_Section):
    """What one commit may hold and render to, checked while it is read: the repo is
    reviewed, but a mistake (a committed lease dump, a runaway template loop) must
    end in a clear refusal, not in an agent that eats the server's memory."""

    file_size: Annotated[int, Field(gt=0)] = 64 * MiB  # one file, read or rendered
    tree_size: Annotated[int, Field(gt=0)] = 256 * MiB  # all files of one folder read
    files: Annotated[int, Field(gt=0)] = 10_000  # files below one folder read
    depth: Annotated[int, Field(gt=0)] = 16  # folder levels of a repo path
    template_loop: Annotated[int, Field(gt=0)] = 1_000_000  # range() items of one render
    # The renderer, the child process that renders a commit's templates: its address
    # space (Python and Jinja need about 30 MiB of it), its CPU seconds, and the bytes
    # all templates of one render may produce.
    render_memory: Annotated[int, Field(ge=64 * MiB)] = 512 * MiB
    render_cpu: Annotated[int, Field(gt=0)] = 10
    render_size: Annotated[int, Field(gt=0)] = 256 * MiB


class Notify(_Section):
    on: tuple[Result, ...] = Field(
        default=("deployed", "refused", "rolled_back", "failed"), strict=False
    )
    smtp_host: str | None = None
    smtp_port: Annotated[int, Field(gt=0, lt=65536)] = 25
    smtp_starttls: bool = False
    smtp_user: str | None = None
    smtp_password_file: Path | None = None
    mail_from: str = "dhcp-gitops@localhost"
    mail_to: Strings = ()
    webhook_url: str | None = None
    timeout: PositiveSeconds = 10.0


class Peer(_Section):
    """The other server of the pair, for rolling restarts and /status."""

    status_url: str | None = None  # e.g. http://192.0.2.2:8647/status
    timeout: PositiveSeconds = 2.0  # one request to the peer
    poll: PositiveSeconds = 5.0  # how often /status's view of the peer is refreshed
    wait: Seconds = 600.0  # how long a deploy waits for its peer before giving up (retried)
    unreachable_after: Seconds = 60.0  # a peer down or unhealthy this long no longer blocks
    skew_warn: Seconds = 10.0
    skew_error: Seconds = 60.0  # dhcpd refuses failover CONNECT at 60 s: "time mismatch"

    @field_validator("status_url")
    @classmethod
    def _http_url(cls, url: str | None) -> str | None:
        if url is not None and urlsplit(url).scheme not in ("http", "https"):
            raise ValueError("an http:// or https:// URL of the peer agent's /status")
        return url


PolicyGrant = Literal[
    "execute", "lease-file-name", "pid-file-name", "dhcpv6-lease-file-name",
    "dhcpv6-pid-file-name",
]  # fmt: skip


class Policy(_Section):
    """[policy]: what this node lets a commit's config reach beyond the target."""

    # Files outside the target that dhcpd reads (DDNS keys kept in /etc/bind, say): shown
    # read-only to `dhcpd -t` in its sandbox, which shows it nothing else of the host, and
    # included without the include check's refusal. Absolute, as dhcpd opens them.
    read_only: Annotated[tuple[Annotated[Path, Field(strict=False)], ...], Field(strict=False)] = ()
    # Statements beyond DHCP this node lets a commit use (agent/servers/dhcpd/policy.py):
    # "execute" runs programs as dhcpd's user, the *-file-name ones write files. Only
    # the node says so, in its own agent.toml: never the repo.
    allow: Annotated[tuple[PolicyGrant, ...], Field(strict=False)] = ()

    @field_validator("read_only")
    @classmethod
    def _absolute(cls, paths: tuple[Path, ...]) -> tuple[Path, ...]:
        for path in paths:
            if not path.is_absolute() or ".." in path.parts or path == Path("/"):
                raise ValueError(f"{str(path)!r}: an absolute path below /, without '..'")
        return paths


class Log(_Section):
    """[log]: the agent's log on stderr (agent/logs.py), one line per result."""

    format: Literal["text", "json"] = "text"


class AgentConfig(_Section):
    node: NodeConfig
    source: Source
    deploy: Deploy = Deploy()
    dhcpd: Dhcpd = Dhcpd()
    kea: Kea = Kea()
    http: Http = Http()
    notify: Notify = Notify()
    peer: Peer = Peer()
    limits: Limits = Limits()
    policy: Policy = Policy()
    log: Log = Log()
    file: Path = Path("<memory>")

    @model_validator(mode="before")
    @classmethod
    def _kea_target(cls, raw: Any) -> Any:
        """A Kea node's target defaults to /etc/kea; dhcpd's stays /etc/dhcp."""
        node, deploy = (raw.get(k) if isinstance(raw, dict) else None for k in ("node", "deploy"))
        is_kea = isinstance(node, dict) and node.get("server") == "kea"
        deploy = deploy if isinstance(deploy, dict) else {} if deploy is None else None
        if is_kea and deploy is not None and "target" not in deploy:
            return {**raw, "deploy": {**deploy, "target": KEA_TARGET}}
        return raw

    @property
    def peer_role(self) -> str | None:
        return {"primary": "secondary", "secondary": "primary"}.get(self.node.role)


def remote_kind(url: str) -> Literal["file", "ssh", "https", "unsupported"]:
    """Classify a remote URL the way git would treat it."""
    scheme = urlsplit(url).scheme
    if scheme in ("file", "ssh", "https"):
        return scheme  # type: ignore[return-value]
    if not scheme and url.startswith("/"):
        return "file"
    if not scheme and ":" in url.split("/", 1)[0]:
        return "ssh"  # scp-like user@host:path
    return "unsupported"


def load(path: Path) -> AgentConfig:
    """Read, resolve and check the config file; every problem names file and key."""
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as err:
        raise ConfigError(f"{path}: cannot read: {err.strerror}") from err
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as err:
        raise ConfigError(f"{path}: not valid TOML: {err}") from err
    return parse(raw, path)


def parse(raw: dict[str, Any], path: Path) -> AgentConfig:
    base = path.parent.resolve()
    resolved = _resolve_paths(raw, base)
    try:
        config = AgentConfig.model_validate({**resolved, "file": path})
    except ValidationError as err:
        # Not chained: pydantic's own text quotes each input, and [source] url may hold a
        # token; a traceback (-v) would print it. _describe never echoes a string value.
        raise ConfigError(_describe(err, path)) from None
    from agent.config import files  # it reads this module's sections: imported once built

    files.check(config)
    return config


# Keys holding paths; relative values resolve against the config file's folder.
_PATH_KEYS = {
    "source": ("ssh_key", "known_hosts", "gpg_keyring", "allowed_signers", "token_file"),
    "deploy": ("target", "state_dir"),
    "dhcpd": ("lease_file",),
    "http": ("webhook_secret_file", "token_file", "tls_cert", "tls_key"),
    "notify": ("smtp_password_file",),
}


def _resolve_paths(raw: dict[str, Any], base: Path) -> dict[str, Any]:
    out = dict(raw)
    for section, keys in _PATH_KEYS.items():
        table = out.get(section)
        if not isinstance(table, dict):
            continue
        table = dict(table)
        for key in keys:
            if isinstance(table.get(key), str):
                table[key] = base / Path(table[key]).expanduser()
        out[section] = table
    if isinstance(out.get("source"), dict):
        url = out["source"].get("url")
        if isinstance(url, str) and url.startswith("file://") and not url.startswith("file:///"):
            out["source"] = {**out["source"], "url": "file://" + str(base / url[len("file://") :])}
    return out


def _describe(err: ValidationError, path: Path) -> str:
    lines = [f"{path}: {err.error_count()} problem(s):"]
    for e in err.errors():
        lines.append(f"  {_key(e['loc'])}: {_message(e)}")
    return "\n".join(lines)


def _key(loc: Sequence[int | str]) -> str:
    parts = [str(p) for p in loc]
    if len(parts) >= 2:
        return f"[{parts[0]}] " + ".".join(parts[1:])
    return f"[{parts[0]}]" if parts else "(top level)"


def _message(e: Any) -> str:
    kind = e["type"]
    if kind == "extra_forbidden":
        return "unknown key (a typo?)"
    if kind == "missing":
        return "required, not set"
    if kind.endswith("_type") or kind in ("literal_error", "enum"):
        return f"{e['msg']} (got {e['input']!r})"
    return str(e["msg"]).removeprefix("Value error, ")
