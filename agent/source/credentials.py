"""An https remote's credential: kept out of git's argv and out of every text we emit.

A token reaches the agent in the URL (`https://TOKEN@host/r.git`,
`https://x-access-token:TOKEN@github.com/o/r.git`, `https://oauth2:TOKEN@gitlab.com/…`)
or, better, in `[source] token_file`. Either way git is given the URL without its
userinfo, and the credential travels in git's environment: config from the
environment (git 2.31 or later) names a credential helper for the remote's origin,
and the helper prints the user and token it finds in two more variables:

    GIT_CONFIG_COUNT=2
    GIT_CONFIG_KEY_0=credential.https://host:port.helper   GIT_CONFIG_VALUE_0=""
    GIT_CONFIG_KEY_1=credential.https://host:port.helper   GIT_CONFIG_VALUE_1=HELPER
    DHCP_GITOPS_GIT_USERNAME=x-access-token                DHCP_GITOPS_GIT_PASSWORD=TOKEN

(the empty helper first drops those the host's git config names for that origin).

Why the environment: /proc/PID/cmdline is readable by every local user,
/proc/PID/environ only by the same uid and root, and every child of git
(remote-https, the helper's sh, fetch-pack) inherits it. The helper's argv is the
fixed script HELPER; the secret passes only through its environment and a pipe.
Why a credential helper, not GIT_ASKPASS: git runs an askpass program with its
prompt as argv, and the prompt names the user of the URL, which for `TOKEN@host` is
the token. Why not `http.extraHeader` (an Authorization header in the environment):
git does not know it holds a credential then, and reports a refused token as
"could not read Username" instead of "Authentication failed". The helper gives git
what the URL's userinfo gave it (percent-decoded; an empty password for a bare
`TOKEN@`, which is what curl sends), so git behaves as it did with the URL: it asks
for the credential after the server's 401, for this origin only.

ssh URLs are left alone: the `git@` of `ssh://git@host/r.git` or `git@host:r.git` is
the login name ssh needs, not a secret, and stays visible; ssh takes no password from
a URL ([source] url refuses one).
"""

from __future__ import annotations

import re
import stat
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote, unquote, urlsplit, urlunsplit

from agent.errors import CredentialError

REDACTED = "***"
SSH_SCHEMES = frozenset({"ssh", "git+ssh", "ssh+git"})
# The user name sent with a token from token_file when [source] username is not set:
# GitHub's name for the tokens of apps and Actions.
DEFAULT_USERNAME = "x-access-token"
# Group or others may not read or write a token file (ssh holds its keys to the same).
LOOSE_MODE = 0o077

# scheme://userinfo@ — the userinfo runs to the last "@" before the authority ends.
_USERINFO = re.compile(r"""(?P<scheme>\b[A-Za-z][A-Za-z0-9+.-]*://)(?P<info>[^/?#\s'"<>]*)@""")
# An Authorization header, should a trace of git's ever reach a message.
_AUTHORIZATION = re.compile(r"(?i)(authorization:\s*\w+\s+)\S+")


@dataclass(frozen=True)
class Credential:
    """A user name and its token (or password), as HTTP basic auth sends them."""

    username: str
    secret: str = field(repr=False)

    def printable(self) -> bool:
        """No control characters: a newline would add lines to git's credential protocol."""
        return self.username.isprintable() and self.secret.isprintable()

    def hidden(self) -> tuple[str, ...]:
        """The forms of the secret a message could carry: as it is and percent-encoded."""
        return tuple({self.secret, quote(self.secret, safe="")} - {""})


def split(url: str) -> tuple[str, Credential | None]:
    """The URL git is given (no userinfo) and the credential its userinfo held.

    ssh URLs keep their user: it is the login name, not a secret.
    """
    parts = urlsplit(url)
    if parts.scheme.lower() in SSH_SCHEMES or "@" not in parts.netloc:
        return url, None
    info, _, host = parts.netloc.rpartition("@")
    user, colon, secret = info.partition(":")
    # A bare TOKEN@ is a user name without a password: git and curl send "TOKEN:".
    credential = Credential(unquote(user), unquote(secret)) if (user or colon) else None
    return urlunsplit(parts._replace(netloc=host)), credential


def from_file(path: Path, username: str) -> Credential:
    """The token in path (one line; surrounding whitespace dropped), sent as username's."""
    try:
        token = path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as err:
        reason = err.strerror if isinstance(err, OSError) else "not UTF-8 text"
        raise CredentialError(f"[source] token_file: cannot read {path}: {reason}") from err
    if not token:
        raise CredentialError(f"[source] token_file: {path} is empty")
    credential = Credential(username, token)
    if not credential.printable():
        raise CredentialError(f"[source] token_file: {path} holds a control character")
    return credential


def loose_mode(path: Path) -> int | None:
    """The file's mode when group or others may read or write it, else None."""
    mode = stat.S_IMODE(path.stat().st_mode)
    return mode if mode & LOOSE_MODE else None


# Prints the credential from the environment for "get"; "store" and "erase" do nothing.
HELPER = (
    '!f() { test "$1" = get || exit 0; cat >/dev/null; printf "username=%s\\npassword=%s\\n" '
    '"$DHCP_GITOPS_GIT_USERNAME" "$DHCP_GITOPS_GIT_PASSWORD"; }; f'
)


def git_env(url: str, credential: Credential | None, environ: Mapping[str, str]) -> dict[str, str]:
    """The environment that hands git the credential for url's origin, and only there.

    Appended after any GIT_CONFIG_KEY_n already in environ, which stay in force.
    """
    if credential is None:
        return {}
    count = _config_count(environ)
    key = f"credential.{origin(url)}.helper"
    return {
        "GIT_CONFIG_COUNT": str(count + 2),
        f"GIT_CONFIG_KEY_{count}": key,
        f"GIT_CONFIG_VALUE_{count}": "",  # an empty helper drops the ones configured before
        f"GIT_CONFIG_KEY_{count + 1}": key,
        f"GIT_CONFIG_VALUE_{count + 1}": HELPER,
        "DHCP_GITOPS_GIT_USERNAME": credential.username,
        "DHCP_GITOPS_GIT_PASSWORD": credential.secret,
    }


def origin(url: str) -> str:
    """scheme://host[:port], what git matches a credential.<url>.* key against."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}"


def _config_count(environ: Mapping[str, str]) -> int:
    value = environ.get("GIT_CONFIG_COUNT", "")
    return int(value) if value.isdigit() else 0


def redact(text: str, hidden: tuple[str, ...] = ()) -> str:
    """Text as the agent may show it: no userinfo secret of any URL, and none of `hidden`.

    `https://TOKEN@host`, `https://user:TOKEN@host` and `https://TOKEN:x-oauth-basic@host`
    all become `https://***@host` (which half is the token depends on the forge); ssh
    URLs keep their login name (`ssh://git@host`), only a password after it goes.
    """
    text = _USERINFO.sub(_hide_userinfo, text)
    text = _AUTHORIZATION.sub(rf"\g<1>{REDACTED}", text)
    for secret in hidden:
        text = text.replace(secret, REDACTED)
    return text


def _hide_userinfo(match: re.Match[str]) -> str:
    scheme, info = match["scheme"], match["info"]
    if scheme[:-3].lower() not in SSH_SCHEMES:
        return f"{scheme}{REDACTED}@"
    user, colon, _ = info.partition(":")
    return f"{scheme}{user}{':' + REDACTED if colon else ''}@"
