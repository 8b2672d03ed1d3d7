"""The git fetch side against real remotes: file://, ssh:// (real sshd), https:// (real TLS).

Nothing is mocked: git, ssh, sshd, openssl and `git http-backend` run for real,
all on 127.0.0.1 and with every key and config file under tmp_path.
"""

from __future__ import annotations

import shlex
import time
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from agent.config import Source
from agent.errors import FetchError
from agent.review.template import template_dir
from agent.source.credentials import redact
from agent.source.mirror import Mirror, ssh_command
from lab.repo import ConfigRepo, git

if TYPE_CHECKING:  # loaded by conftest's pytest_plugins, so pytest rewrites its asserts
    from tests.remotes import HttpsServer, SshServer


@pytest.fixture(autouse=True)
def _isolated_git(monkeypatch: pytest.MonkeyPatch) -> None:
    """Neither the host's git config nor an ssh agent may decide a test's outcome."""
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", "/dev/null")
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    for name in ("SSH_AUTH_SOCK", "GIT_SSL_CAINFO", "GIT_SSL_NO_VERIFY", "GIT_SSH_COMMAND"):
        monkeypatch.delenv(name, raising=False)


def mirror(tmp_path: Path, url: str, **source: object) -> Mirror:
    return Mirror(Source(url=url, **source), state_dir=tmp_path / "state")  # type: ignore[arg-type]


def fetch_error(m: Mirror) -> str:
    """Fetch, expecting a FetchError; return its message."""
    with pytest.raises(FetchError) as caught:
        m.fetch()
    return caught.value.message


def head_of(repo: ConfigRepo) -> str:
    return git(repo.work, "rev-parse", "HEAD")


def only_file(m: Mirror, sha: str, rel: str) -> bytes:
    files = m.snapshot(sha).read(rel)
    assert files is not None and len(files) == 1
    return files[0].data


# --- pure helpers ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("https://user:tok3n@host/x.git", "https://***@host/x.git"),
        ("at https://u:p%40ss@10.0.0.1:8443/r failed", "at https://***@10.0.0.1:8443/r failed"),
        ("https://tok3n@host/x.git", "https://***@host/x.git"),
        ("https://host/x.git", "https://host/x.git"),
        ("ssh://git@host:2222/x.git", "ssh://git@host:2222/x.git"),
    ],
)
def test_redact_hides_the_userinfo_of_https_not_the_ssh_user(text: str, shown: str) -> None:
    assert redact(text) == shown


def test_ssh_command_is_strict_and_never_prompts(tmp_path: Path) -> None:
    key, known = tmp_path / "id", tmp_path / "known hosts"  # a space: quoting must hold
    argv = shlex.split(
        ssh_command(Source(url="ssh://h/r", ssh_key=key, known_hosts=known, timeout=7.5))
    )
    assert argv[0] == "ssh"
    for option in ("BatchMode=yes", "StrictHostKeyChecking=yes", "IdentitiesOnly=yes"):
        assert option in argv
    assert f"UserKnownHostsFile={known}" in argv
    assert "ConnectTimeout=7" in argv
    assert argv[argv.index("-i") + 1] == str(key)


# --- file:// -----------------------------------------------------------------------------


def test_file_fetch_returns_the_pushed_head(tmp_path: Path, repo: ConfigRepo) -> None:
    m = mirror(tmp_path, repo.url)
    assert m.fetch() == head_of(repo)
    assert (tmp_path / "state" / "mirror.git" / "HEAD").is_file()


def test_second_push_is_picked_up_and_old_commit_kept(tmp_path: Path, repo: ConfigRepo) -> None:
    m = mirror(tmp_path, repo.url)
    first = m.fetch()
    repo.write("dhcp/hosts.conf", "# emptied\n")
    second = repo.commit("Empty the hosts file")
    assert second != first
    assert m.fetch() == second
    assert m.head() == second
    assert only_file(m, second, "dhcp/hosts.conf") == b"# emptied\n"
    # The old commit stays readable: a rollback or a report may still need it.
    template_hosts = template_dir() / "dhcp" / "hosts.conf"
    assert only_file(m, first, "dhcp/hosts.conf") == template_hosts.read_bytes()


def test_mirror_reopens_after_restart(tmp_path: Path, repo: ConfigRepo) -> None:
    sha = mirror(tmp_path, repo.url).fetch()
    # A new Mirror on the same state dir (the agent restarted) sees the last fetch.
    assert mirror(tmp_path, repo.url).head() == sha


def test_commit_gives_subject_and_author(tmp_path: Path, repo: ConfigRepo) -> None:
    m = mirror(tmp_path, repo.url)
    c = m.commit(m.fetch())
    assert c.sha == head_of(repo)
    assert c.subject == "Initial pair config"
    assert c.author == "Test Author <author@example.net>"
    assert c.committed_at[:4].isdigit()


def test_read_returns_the_files_of_a_folder(tmp_path: Path, repo: ConfigRepo) -> None:
    m = mirror(tmp_path, repo.url)
    files = m.snapshot(m.fetch()).read("dhcp")
    assert files is not None
    assert {f.path for f in files} == {
        p.relative_to(repo.work).as_posix() for p in (repo.work / "dhcp").rglob("*") if p.is_file()
    }
    for f in files:
        assert f.data == (repo.work / f.path).read_bytes()


def test_read_of_a_missing_folder_is_none(tmp_path: Path, repo: ConfigRepo) -> None:
    m = mirror(tmp_path, repo.url)
    assert m.snapshot(m.fetch()).read("no-such-folder") is None


def test_missing_branch_is_named(tmp_path: Path, repo: ConfigRepo) -> None:
    message = fetch_error(mirror(tmp_path, repo.url, branch="release-2099"))
    assert "'release-2099'" in message
    assert "does not exist" in message


def test_unreachable_path_fails(tmp_path: Path) -> None:
    url = f"file://{tmp_path / 'nowhere.git'}"
    message = fetch_error(mirror(tmp_path, url))
    assert url in message


def test_unknown_commit_and_unfetched_branch_fail(tmp_path: Path, repo: ConfigRepo) -> None:
    m = mirror(tmp_path, repo.url)
    with pytest.raises(FetchError, match="never fetched"):
        m.head()
    with pytest.raises(FetchError, match="not in the mirror"):
        m.commit("0" * 40)


# --- ssh:// (a real sshd on 127.0.0.1) ---------------------------------------------------


def ssh_mirror(
    tmp_path: Path, server: SshServer, repo: ConfigRepo, known: Path, key: Path
) -> Mirror:
    return mirror(tmp_path, server.url(repo.bare), ssh_key=key, known_hosts=known, timeout=20.0)


def private_body(key: Path) -> list[str]:
    """The base64 lines of a private key: none may ever show up in a message."""
    return [ln for ln in key.read_text().splitlines() if ln and not ln.startswith("-----")]


def assert_no_key(message: str, key: Path) -> None:
    for line in private_body(key):
        assert line not in message


@pytest.mark.timeout(60)
def test_ssh_fetch_with_key_and_known_host(
    tmp_path: Path, repo: ConfigRepo, sshd: SshServer
) -> None:
    user_ssh = Path.home() / ".ssh"
    had_user_ssh = user_ssh.exists()
    m = ssh_mirror(tmp_path, sshd, repo, sshd.known_hosts(), sshd.client_key)
    assert m.fetch() == head_of(repo)
    second = repo.commit("Second")
    assert m.fetch() == second
    # Everything ssh needs came from tmp: it did not make itself a ~/.ssh either.
    assert user_ssh.exists() == had_user_ssh


@pytest.mark.timeout(60)
@pytest.mark.parametrize("known", ["empty", "other-host-key"])
def test_ssh_unknown_host_key_is_refused(
    tmp_path: Path, repo: ConfigRepo, sshd: SshServer, known: str
) -> None:
    text = "" if known == "empty" else sshd.known_hosts_line(sshd.new_key("impostor"))
    known_hosts = sshd.known_hosts(text)
    message = fetch_error(ssh_mirror(tmp_path, sshd, repo, known_hosts, sshd.client_key))
    assert "Host key verification failed" in message
    assert_no_key(message, sshd.client_key)
    # Strict checking also means the server's key was not learned on the way.
    assert known_hosts.read_text() == text


@pytest.mark.timeout(60)
def test_ssh_key_not_authorized_is_refused_without_prompt(
    tmp_path: Path, repo: ConfigRepo, sshd: SshServer
) -> None:
    stranger = sshd.new_key("stranger")
    m = ssh_mirror(tmp_path, sshd, repo, sshd.known_hosts(), stranger)
    started = time.monotonic()
    message = fetch_error(m)
    assert "Permission denied" in message
    assert "timeout" not in message.lower()
    assert time.monotonic() - started < 20.0  # refused, not killed at the timeout
    assert_no_key(message, stranger)
    assert_no_key(message, sshd.client_key)


# --- https:// (git http-backend behind TLS on 127.0.0.1) ---------------------------------

USER, PASSWORD = "deploy", "s3cret-Pa55word"


@pytest.fixture
def trust(https_git: HttpsServer, monkeypatch: pytest.MonkeyPatch) -> HttpsServer:
    """The https server, with git trusting its self-signed certificate."""
    monkeypatch.setenv("GIT_SSL_CAINFO", str(https_git.cert))
    return https_git


@pytest.mark.timeout(60)
def test_https_fetch(tmp_path: Path, repo: ConfigRepo, trust: HttpsServer) -> None:
    m = mirror(tmp_path, trust.url(repo.bare), timeout=20.0)
    assert m.fetch() == head_of(repo)
    assert any("git-upload-pack" in r for r in trust.requests)


@pytest.mark.timeout(60)
def test_https_basic_auth_with_the_right_password(
    tmp_path: Path, repo: ConfigRepo, trust: HttpsServer
) -> None:
    trust.credentials = (USER, PASSWORD)
    m = mirror(tmp_path, trust.url(repo.bare, USER, PASSWORD), timeout=20.0)
    assert m.fetch() == head_of(repo)


@pytest.mark.timeout(60)
def test_https_wrong_password_fails_fast_and_is_not_shown(
    tmp_path: Path, repo: ConfigRepo, trust: HttpsServer
) -> None:
    trust.credentials = (USER, PASSWORD)
    wrong = "wr0ng-Passw0rd"
    m = mirror(tmp_path, trust.url(repo.bare, USER, wrong), timeout=20.0)
    started = time.monotonic()
    message = fetch_error(m)
    assert time.monotonic() - started < 20.0  # refused, not killed at the timeout
    assert "Authentication failed" in message
    assert wrong not in message
    assert PASSWORD not in message


@pytest.mark.timeout(60)
def test_https_without_password_does_not_prompt(
    tmp_path: Path, repo: ConfigRepo, trust: HttpsServer
) -> None:
    trust.credentials = (USER, PASSWORD)
    m = mirror(tmp_path, trust.url(repo.bare), timeout=20.0)
    started = time.monotonic()
    message = fetch_error(m)
    assert time.monotonic() - started < 20.0
    assert "terminal prompts disabled" in message


@pytest.mark.timeout(60)
def test_https_untrusted_certificate_is_refused(
    tmp_path: Path, repo: ConfigRepo, https_git: HttpsServer
) -> None:
    m = mirror(tmp_path, https_git.url(repo.bare), timeout=20.0)
    message = fetch_error(m)
    assert "certificate" in message.lower()
    assert not any("git-upload-pack" in r for r in https_git.requests)


# --- a remote that accepts and never answers --------------------------------------------


@pytest.mark.timeout(30)
def test_ssh_timeout_against_a_mute_port(tmp_path: Path, mute_port: int) -> None:
    known = tmp_path / "known_hosts"
    known.write_text("")
    m = mirror(tmp_path, f"ssh://root@127.0.0.1:{mute_port}/x.git", known_hosts=known, timeout=2.0)
    assert "time" in fetch_error(m).lower()


@pytest.mark.timeout(30)
def test_https_timeout_against_a_mute_port_hides_the_password(
    tmp_path: Path, mute_port: int
) -> None:
    m = mirror(tmp_path, f"https://{USER}:{PASSWORD}@127.0.0.1:{mute_port}/x.git", timeout=2.0)
    message = fetch_error(m)
    assert "time" in message.lower()
    assert PASSWORD not in message
