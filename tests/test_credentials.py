"""An https remote's credential: in no child's argv, in no message, from the URL or token_file.

A real TLS git server on 127.0.0.1 (`git http-backend`, tests/remotes.py) that answers
401 without the credential; the real git fetches from it while a watcher thread reads
/proc/PID/cmdline of every process below this one.
"""

from __future__ import annotations

import subprocess
import traceback
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from agent import config
from agent.errors import ConfigError, FetchError, RemoteFault
from agent.source import credentials
from agent.source.credentials import Credential, redact, split
from agent.source.mirror import Mirror
from lab.repo import ConfigRepo, git
from lab.toml import toml_text
from tests.remotes import Children
from tests.test_secrets import FORMS, GIT_TOKEN, QUOTED, Form, forms, source_keys

if TYPE_CHECKING:  # loaded by conftest's pytest_plugins
    from tests.remotes import HttpsServer

TOKEN, Q = GIT_TOKEN, QUOTED


@pytest.fixture(autouse=True)
def _isolated_git(monkeypatch: pytest.MonkeyPatch) -> None:
    """Neither the host's git config nor a credential helper may decide a test's outcome."""
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", "/dev/null")
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    for name in ("GIT_SSL_CAINFO", "GIT_SSL_NO_VERIFY", "GIT_CONFIG_COUNT", "https_proxy"):
        monkeypatch.delenv(name, raising=False)


# --- the URL, split and shown ------------------------------------------------------------

H = "https://127.0.0.1:8443/o/r.git"


@pytest.mark.parametrize(
    ("url", "bare", "credential"),
    [
        (f"https://{Q}@127.0.0.1:8443/o/r.git", H, Credential(TOKEN, "")),
        (f"https://x-access-token:{Q}@127.0.0.1:8443/o/r.git", H,
         Credential("x-access-token", TOKEN)),
        (f"https://oauth2:{Q}@127.0.0.1:8443/o/r.git", H, Credential("oauth2", TOKEN)),
        (f"https://{Q}:x-oauth-basic@127.0.0.1:8443/o/r.git", H,
         Credential(TOKEN, "x-oauth-basic")),
        ("https://u:p@ss@127.0.0.1:8443/o/r.git", H, Credential("u", "p@ss")),  # the last @
        (H, H, None),
        ("ssh://git@host/o/r.git", "ssh://git@host/o/r.git", None),
        ("git@host:o/r.git", "git@host:o/r.git", None),
        ("/srv/r.git", "/srv/r.git", None),
    ],
)  # fmt: skip
def test_split_gives_git_a_url_without_userinfo(
    url: str, bare: str, credential: Credential | None
) -> None:
    assert split(url) == (bare, credential)


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        (f"at https://{Q}@host/x failed", "at https://***@host/x failed"),
        (f"https://x-access-token:{Q}@github.com/o/r.git", "https://***@github.com/o/r.git"),
        (f"'https://oauth2:{Q}@gitlab.com/g/r/': 401", "'https://***@gitlab.com/g/r/': 401"),
        (f"https://{Q}:x-oauth-basic@github.com/o/r", "https://***@github.com/o/r"),
        (f"HTTPS://{TOKEN.replace('/', '')}@h:1", "HTTPS://***@h:1"),
        ("https://u:p@ss@h/r and https://h/r", "https://***@h/r and https://h/r"),
        ("ssh://git@host:2222/x.git", "ssh://git@host:2222/x.git"),
        ("ssh://git:pw@host/x.git", "ssh://git:***@host/x.git"),
        ("git@host:o/r.git, mail me at a@b.example", "git@host:o/r.git, mail me at a@b.example"),
        ("https://host/path@v1 and file:///srv/a@b", "https://host/path@v1 and file:///srv/a@b"),
        ("Authorization: Basic eC1hY2Nlc3M6dG9r", "Authorization: Basic ***"),
    ],
)  # fmt: skip
def test_redact_hides_every_userinfo_secret(text: str, shown: str) -> None:
    assert redact(text) == shown


def test_redact_hides_the_secrets_it_is_given() -> None:
    hidden = Credential("x-access-token", TOKEN).hidden()
    assert redact(f"said {TOKEN} and {Q}", hidden) == "said *** and ***"


def test_git_is_given_a_helper_for_the_origin_and_the_secret_in_its_environment() -> None:
    env = credentials.git_env(H, Credential("oauth2", TOKEN), {"GIT_CONFIG_COUNT": "2"})
    key = "credential.https://127.0.0.1:8443.helper"
    assert env == {
        "GIT_CONFIG_COUNT": "4",  # after the two already set, which stay
        "GIT_CONFIG_KEY_2": key,
        "GIT_CONFIG_VALUE_2": "",
        "GIT_CONFIG_KEY_3": key,
        "GIT_CONFIG_VALUE_3": credentials.HELPER,
        "DHCP_GITOPS_GIT_USERNAME": "oauth2",
        "DHCP_GITOPS_GIT_PASSWORD": TOKEN,
    }
    assert credentials.git_env(H, None, {}) == {}
    assert TOKEN not in repr(Credential("u", TOKEN))


def test_the_helper_answers_git_from_its_environment() -> None:
    """The helper as git runs it ("!cmd" + " get" through sh), its answer on stdout."""
    env = {"DHCP_GITOPS_GIT_USERNAME": "oauth2", "DHCP_GITOPS_GIT_PASSWORD": TOKEN}
    script = credentials.HELPER.removeprefix("!")
    get = subprocess.run(["sh", "-c", f"{script} get"], input="protocol=https\nhost=h\n\n",
                         env=env, capture_output=True, text=True, check=True)  # fmt: skip
    assert get.stdout == f"username=oauth2\npassword={TOKEN}\n"
    erase = subprocess.run(["sh", "-c", f"{script} erase"], input="", env=env,
                           capture_output=True, text=True, check=True)  # fmt: skip
    assert erase.stdout == ""


# --- real fetches: the credential works, and no argv holds it ----------------------------


def load_source(tmp_path: Path, keys: dict[str, Any]) -> config.AgentConfig:
    path = tmp_path / "agent.toml"
    (tmp_path / "etc").mkdir(exist_ok=True)
    tables: dict[str, dict[str, Any]] = {
        "node": {"name": "dhcp1", "role": "standalone"},
        "source": {**keys, "timeout": 20},
        "deploy": {"target": str(tmp_path / "etc" / "dhcp"), "state_dir": str(tmp_path / "st")},
    }
    path.write_text(toml_text(tables))
    return config.load(path)


def secret_shown(texts: list[str]) -> list[str]:
    """Each text that shows the token in any encoding, with the form found."""
    shown = forms(TOKEN).items()
    return [f"{form} in {text!r}" for text in texts for form, value in shown if value in text]


@pytest.mark.timeout(120)
@pytest.mark.parametrize("form", FORMS.values(), ids=FORMS.keys())
def test_no_child_argv_holds_the_credential(
    tmp_path: Path, repo: ConfigRepo, locked_https: HttpsServer, form: Form
) -> None:
    """clone (an empty mirror), fetch and ls-remote, with /proc read all the while."""
    cfg = load_source(tmp_path, source_keys(form, locked_https, repo.bare, tmp_path))
    mirror = Mirror(cfg.source, tmp_path / "state")
    locked_https.credentials = form.wanted
    locked_https.delay = 0.2  # each child lives long enough to be seen
    with Children() as children:
        assert mirror.fetch() == git(repo.work, "rev-parse", "HEAD")  # the first: a clone
        second = repo.commit("Second")
        assert mirror.fetch() == second
        assert mirror.remote_head() == second
    helpers = [c for c in children.seen.values() if any("remote-https" in a for a in c.argv)]
    assert helpers, children.argvs  # the watcher saw git's https helper
    assert any("ls-remote" in a for a in children.argvs), children.argvs
    assert secret_shown([" ".join(argv) for argv in children.argvs]) == []
    # The credential went through the environment, which only our uid and root read.
    secret = f"DHCP_GITOPS_GIT_PASSWORD={form.wanted[1]}"
    assert any(secret in child.environ for child in helpers), [c.argv for c in helpers]


@pytest.mark.timeout(60)
@pytest.mark.parametrize("form", FORMS.values(), ids=FORMS.keys())
def test_a_refused_credential_is_named_without_the_secret(
    tmp_path: Path, repo: ConfigRepo, locked_https: HttpsServer, form: Form
) -> None:
    cfg = load_source(tmp_path, source_keys(form, locked_https, repo.bare, tmp_path))
    mirror = Mirror(cfg.source, tmp_path / "state")
    with pytest.raises(FetchError) as refused:
        mirror.fetch()
    message = refused.value.message
    assert "Authentication failed" in message, message
    assert f"127.0.0.1:{locked_https.port}" in message
    assert secret_shown([message]) == []
    with pytest.raises(FetchError) as missing:
        Mirror(cfg.source.model_copy(update={"branch": "gone"}), tmp_path / "s2").fetch()
    assert secret_shown([missing.value.message]) == []


def test_a_rotated_token_file_is_read_at_the_next_fetch(
    tmp_path: Path, repo: ConfigRepo, locked_https: HttpsServer
) -> None:
    cfg = load_source(tmp_path, source_keys(FORMS["token_file"], locked_https, repo.bare, tmp_path))
    mirror = Mirror(cfg.source, tmp_path / "state")
    locked_https.credentials = ("x-access-token", TOKEN)
    mirror.fetch()
    assert cfg.source.token_file is not None
    cfg.source.token_file.write_text("rotated-token-2\n")
    locked_https.credentials = ("x-access-token", "rotated-token-2")
    assert mirror.fetch() == git(repo.work, "rev-parse", "HEAD")
    cfg.source.token_file.write_text("\n")
    with pytest.raises(RemoteFault, match=r"token_file: .* is empty"):
        mirror.remote_head()


# --- [source] token_file in agent.toml ---------------------------------------------------


def token_config(tmp_path: Path, mode: int = 0o600, **source: Any) -> config.AgentConfig:
    token = tmp_path / "git-token"
    token.write_text(TOKEN + "\n")
    token.chmod(mode)
    keys = {"url": "https://git.example.net/o/r.git", "token_file": "git-token", **source}
    return load_source(tmp_path, keys)


def test_token_file_resolves_against_the_config_folder(tmp_path: Path) -> None:
    cfg = token_config(tmp_path, username="oauth2")
    assert cfg.source.token_file == tmp_path / "git-token"
    assert cfg.source.username == "oauth2"


MISTAKES = {
    "world-readable": ({}, 0o644, r"\[source\] token_file: .*git-token is open to group or "
                                  r"others \(mode 0644\); chmod 600 it"),
    "group-readable": ({}, 0o640, r"mode 0640"),
    "missing": ({"token_file": "missing"}, 0o600,
                r"\[source\] token_file: .*missing is not a readable"),
    "ssh remote": ({"url": "ssh://git@h/r.git", "known_hosts": "git-token"}, 0o600,
                   r"token_file: only used with an https:// url"),
    "and user:token in the url": ({"url": f"https://oauth2:{Q}@h/r.git"}, 0o600,
                                  r"the url holds a credential too"),
    "and token in the url": ({"url": f"https://{Q}@h/r.git"}, 0o600,
                             r"the url holds a credential too"),
    "username alone": ({"token_file": None, "username": "oauth2"}, 0o600,
                       r"username: only used with token_file"),
    "username with a colon": ({"username": "a:b"}, 0o600,
                              r"\[source\] username: String should match"),
    "password in an ssh url": ({"url": f"ssh://git:{Q}@h/r.git"}, 0o600,
                               r"ssh takes no password from the url"),
    "token in an http:// url": ({"url": f"http://{Q}@h/r", "token_file": None},
                                0o600, r"\[source\] url: use file://"),
    "newline in the url's token": ({"url": "https://x:a%0Ab@h/r.git", "token_file": None}, 0o600,
                                   r"the credential in the url holds a control character"),
}  # fmt: skip


@pytest.mark.parametrize(("keys", "mode", "error"), MISTAKES.values(), ids=MISTAKES.keys())
def test_source_mistakes_are_refused_without_the_secret(
    tmp_path: Path, keys: dict[str, object], mode: int, error: str
) -> None:
    """Not in the message, nor in a traceback of it (what `-v` logs)."""
    with pytest.raises(ConfigError, match=error) as caught:
        token_config(tmp_path, mode, **keys)
    assert secret_shown(traceback.format_exception(caught.value)) == []
