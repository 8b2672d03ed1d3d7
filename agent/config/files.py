"""The checks of agent.toml that look past its own text: the files its keys name exist
and suit their use, the verify mode has its keyring, the token file is private.
Run once at start (agent.config.parse), not mid-deploy."""

from __future__ import annotations

from typing import TYPE_CHECKING

from agent.config import remote_kind
from agent.errors import ConfigError
from agent.source import credentials

if TYPE_CHECKING:
    from agent.config import AgentConfig


def check(config: AgentConfig) -> None:
    """What a key names must exist and suit its use; checked now, not mid-deploy."""
    where = config.file
    source, deploy = config.source, config.deploy
    if remote_kind(source.url) == "ssh" and source.known_hosts is None:
        raise ConfigError(f"{where}: [source] known_hosts: required for an ssh remote")
    _check_verify(config)
    keys = ("ssh_key", "known_hosts", "gpg_keyring", "allowed_signers", "token_file")
    files = [("source", k) for k in keys]
    files += [("http", k) for k in ("webhook_secret_file", "token_file", "tls_cert", "tls_key")]
    files += [("notify", "smtp_password_file")]
    for section, key in files:
        file = getattr(getattr(config, section), key)
        if file is not None and not file.is_file():
            raise ConfigError(f"{where}: [{section}] {key}: {file} is not a readable file")
    _check_token(config)
    if (config.http.tls_cert is None) != (config.http.tls_key is None):
        raise ConfigError(f"{where}: [http] tls_cert and tls_key go together")
    if config.notify.smtp_host and not config.notify.mail_to:
        raise ConfigError(f"{where}: [notify] mail_to: required with smtp_host")
    target = deploy.target
    if target.is_symlink() or (target.exists() and not target.is_dir()):
        raise ConfigError(f"{where}: [deploy] target: {target} must be a real directory")
    if not target.parent.is_dir():
        raise ConfigError(f"{where}: [deploy] target: parent folder {target.parent} is missing")
    if target.exists() and target.stat().st_dev != target.parent.stat().st_dev:
        raise ConfigError(
            f"{where}: [deploy] target: {target} is a mount point; the atomic exchange "
            "needs it on the same filesystem as its parent folder"
        )
    if deploy.state_dir.resolve().is_relative_to(target.resolve()):
        raise ConfigError(f"{where}: [deploy] state_dir: must not be inside the target")


# Which file each verify mode checks signatures against.
_VERIFY_FILES = {"gpg": "gpg_keyring", "ssh": "allowed_signers"}


def _check_verify(config: AgentConfig) -> None:
    """The file of the verify mode is required, and the other mode's file refused: a
    keyring set while verify = "none" would look like a policy that is not applied."""
    source = config.source
    for mode, key in _VERIFY_FILES.items():
        if source.verify == mode and getattr(source, key) is None:
            raise ConfigError(f'{config.file}: [source] {key}: required with verify = "{mode}"')
        if source.verify != mode and getattr(source, key) is not None:
            raise ConfigError(
                f'{config.file}: [source] {key}: only used with verify = "{mode}" '
                f"(verify is {source.verify!r})"
            )


def _check_token(config: AgentConfig) -> None:
    """token_file: for an https remote whose url holds no credential, private to its owner.
    Its content is read at each fetch, never here, and no message shows it or the url."""
    where, source = config.file, config.source
    if source.username is not None and source.token_file is None:
        raise ConfigError(f"{where}: [source] username: only used with token_file")
    if source.token_file is None:
        return
    if remote_kind(source.url) != "https":
        raise ConfigError(f"{where}: [source] token_file: only used with an https:// url")
    if credentials.split(source.url)[1] is not None:
        raise ConfigError(
            f"{where}: [source] token_file: the url holds a credential too; keep one of them"
        )
    mode = credentials.loose_mode(source.token_file)
    if mode is not None:
        raise ConfigError(
            f"{where}: [source] token_file: {source.token_file} is open to group or others "
            f"(mode {mode:04o}); chmod 600 it"
        )
