"""Commit signatures: deploy only commits signed by a key the operator listed.

`git verify-commit --raw` does the cryptography (gpg for OpenPGP, ssh-keygen
for ssh). This module keeps it away from the node's own git and gpg set-up
(its ~/.gnupg, its git config) and turns git's answer into one sentence that
names the signer, or the key and what is wrong with it.

gpg: `[source] gpg_keyring` is a file of exported public keys. It is imported
into a GNUPGHOME of our own under the state dir, re-imported whenever the file
changes, so what is trusted is exactly what the file holds.
ssh: `[source] allowed_signers` is ssh-keygen's ALLOWED SIGNERS file, used as is.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from agent import process, tree
from agent.config import Source
from agent.errors import CommandError, StepError, TrustError
from agent.source.mirror import Mirror

Format = Literal["gpg", "ssh", "x509"]

Options = tuple[list[str], dict[str, str]]  # git -c options and environment of one mode

# Verification is local work; a command still running after this waits on
# something it must not (a lock, an agent), so the attempt fails and is retried.
TIMEOUT = 30.0

# The first line of a signature, as git tells the formats apart.
_ARMOR: dict[str, Format] = {
    "-----BEGIN PGP SIGNATURE-----": "gpg",
    "-----BEGIN SSH SIGNATURE-----": "ssh",
    "-----BEGIN SIGNED MESSAGE-----": "x509",
}
_FORMAT_NAMES: dict[str, str] = {
    "gpg": "an OpenPGP (gpg) key",
    "ssh": "an ssh key",
    "x509": "an X.509 certificate",
}

# Nothing the node's user or the environment set may decide what is trusted.
_ISOLATED_GIT = {
    "GIT_CONFIG_GLOBAL": "/dev/null",
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_CONFIG_COUNT": "0",
    "GIT_CONFIG_PARAMETERS": "",
    "LC_ALL": "C",  # ssh-keygen's answer is read as English
}
# The private GNUPGHOME never starts an agent or asks a keyserver: verifying needs neither.
_GPG_CONF = "no-autostart\nno-auto-key-retrieve\n"


@dataclass(frozen=True)
class Answer:
    """What `git verify-commit --raw` said: its exit code and stderr (gpg's status lines,
    or ssh-keygen's messages)."""

    returncode: int
    output: str


def format_of(armor: str | None) -> Format | None:
    """The signature's format from its armor; None for an unsigned commit."""
    if not armor:
        return None
    first = armor.strip().splitlines()[0].strip()
    return _ARMOR.get(first, "gpg")  # git, too, treats an unknown armor as OpenPGP


class Signatures:
    """The [source] verify policy of one node."""

    def __init__(self, source: Source, state_dir: Path) -> None:
        self.source = source
        self.home = state_dir / "gnupg"

    def signer(self, mirror: Mirror, sha: str) -> str | None:
        """Who signed the commit, when the policy trusts them (None: verify = "none");
        TrustError naming the problem when it does not; StepError when it cannot tell."""
        kind = self.source.verify
        if kind == "none":
            return None
        found = format_of(mirror.repo.commit(sha).gpgsig)
        if found is None:
            raise TrustError(f"commit {sha[:12]} is not signed; {self._policy()}")
        if found != kind:
            raise TrustError(
                f"commit {sha[:12]} is signed with {_FORMAT_NAMES[found]}, but "
                f'verify = "{kind}" accepts only signatures by {_FORMAT_NAMES[kind]}; '
                f"{self._policy()}"
            )
        if kind == "gpg":
            return gpg_signer(self._verify(mirror.path, sha, self._gpg_options()), sha, self.source)
        return ssh_signer(self._verify(mirror.path, sha, self._ssh_options()), sha, self.source)

    def _policy(self) -> str:
        kind = self.source.verify
        trusted = self.source.gpg_keyring if kind == "gpg" else self.source.allowed_signers
        return f'verify = "{kind}" deploys only commits signed by a key in {trusted}'

    def _gpg_options(self) -> Options:
        keyring = self.source.gpg_keyring
        assert keyring is not None  # config: verify = "gpg" requires it
        import_keyring(keyring, self.home)
        return ["-c", "gpg.program=gpg"], {"GNUPGHOME": str(self.home)}

    def _ssh_options(self) -> Options:
        allowed = f"gpg.ssh.allowedSignersFile={self.source.allowed_signers}"
        return ["-c", "gpg.ssh.program=ssh-keygen", "-c", allowed], {}

    def _verify(self, git_dir: Path, sha: str, options: Options) -> Answer:
        config, env = options
        argv = ["git", "--git-dir", str(git_dir), "-c", "gpg.minTrustLevel=undefined", *config]
        try:
            done = process.run(
                [*argv, "verify-commit", "--raw", sha],
                env={**_ISOLATED_GIT, **env},
                timeout=TIMEOUT,
                check=False,
            )
        except CommandError as err:  # git missing, or the timeout
            raise StepError(f"cannot check the signature of {sha[:12]}: {err.message}",
                            step="trust") from err  # fmt: skip
        return Answer(done.returncode, done.stderr)


# --- gpg -----------------------------------------------------------------------------


def import_keyring(keyring: Path, home: Path) -> None:
    """Make `home` a GNUPGHOME holding exactly the keys of the keyring file.

    Rebuilt beside the old one and renamed into place, so a crash leaves either
    the old home, or none (then the next check builds it), never a half import.
    """
    try:
        data = keyring.read_bytes()
    except OSError as err:
        raise StepError(f"[source] gpg_keyring: cannot read {keyring}: {err.strerror}",
                        step="trust") from err  # fmt: skip
    digest = hashlib.sha256(data).hexdigest()
    marker = home / "keyring.sha256"
    if marker.is_file() and marker.read_text() == digest:
        return
    fresh = home.with_name(home.name + ".new")
    tree.remove(fresh)
    fresh.mkdir(mode=0o700, parents=True)
    (fresh / "gpg.conf").write_text(_GPG_CONF)
    _gpg_import(keyring, fresh)
    (fresh / "keyring.sha256").write_text(digest)
    old = home.with_name(home.name + ".old")
    tree.remove(old)
    if home.exists():
        home.rename(old)
    fresh.rename(home)
    tree.remove(old)


def _gpg_import(keyring: Path, home: Path) -> None:
    argv = ["gpg", "--batch", "--homedir", str(home), "--status-fd", "1", "--import", str(keyring)]
    try:
        done = process.run(argv, env=_ISOLATED_GIT, timeout=TIMEOUT, check=False)
    except CommandError as err:
        raise StepError(f"[source] gpg_keyring: {err.message}", step="trust") from err
    if "[GNUPG:] IMPORT_OK" not in done.stdout:
        last = (done.stderr.strip() or "no output").splitlines()[-1]
        raise StepError(
            f"[source] gpg_keyring: no public key could be imported from {keyring}: {last}",
            step="trust",
        )


def gpg_signer(answer: Answer, sha: str, source: Source) -> str:
    """The signer of a good signature, or TrustError saying what gpg found instead."""
    status = _gpg_status(answer.output)
    commit = f"commit {sha[:12]}"
    if answer.returncode == 0 and "GOODSIG" in status and "VALIDSIG" in status:
        return f"gpg key {status['VALIDSIG'][-1]} ({_uid(status['GOODSIG'])})"
    if "NO_PUBKEY" in status:
        key = _unknown_key(status)
        raise TrustError(f"{commit} is signed by gpg key {key}, which is not in the keyring "
                         f"{source.gpg_keyring}: unknown signer")  # fmt: skip
    for word, why in _GPG_REFUSALS.items():
        if word in status:
            key, uid = status[word][0], _uid(status[word])
            raise TrustError(f"{commit} {why.format(key=_key(status, key), uid=uid)}")
    detail = answer.output.strip().splitlines()[-1] if answer.output.strip() else "no answer"
    raise TrustError(f"{commit}: gpg did not accept its signature: {detail}")


# gpg status words of a signature that is refused, and what they mean for the user.
_GPG_REFUSALS = {
    "BADSIG": "has a BAD signature claiming gpg key {key} ({uid}): the commit was changed "
    "after it was signed",
    "EXPKEYSIG": "is signed by gpg key {key} ({uid}), which has expired",
    "REVKEYSIG": "is signed by gpg key {key} ({uid}), which is revoked",
    "EXPSIG": "is signed by gpg key {key} ({uid}), but the signature itself has expired",
}


def _gpg_status(output: str) -> dict[str, list[str]]:
    """gpg's `[GNUPG:] WORD args...` lines as WORD -> args (the first of each word)."""
    status: dict[str, list[str]] = {}
    for line in output.splitlines():
        if line.startswith("[GNUPG:] "):
            word, *args = line.removeprefix("[GNUPG:] ").split(" ")
            status.setdefault(word, args)
    return status


def _uid(args: list[str]) -> str:
    return " ".join(args[1:]) or "no user id"


def _key(status: dict[str, list[str]], keyid: str) -> str:
    """The primary key's fingerprint when gpg gave it (VALIDSIG), else the long key id."""
    valid = status.get("VALIDSIG")
    return valid[-1] if valid else keyid


def _unknown_key(status: dict[str, list[str]]) -> str:
    errsig = status.get("ERRSIG", [])
    if len(errsig) >= 7 and re.fullmatch(r"[0-9A-F]{40,64}", errsig[6]):
        return errsig[6]  # the fingerprint, gpg >= 2.2.7
    return (errsig or status.get("NO_PUBKEY", ["?"]))[0]


# --- ssh -----------------------------------------------------------------------------

_SSH_GOOD = re.compile(r'^Good "git" signature for (?P<who>.+) with (?P<key>\S+ key \S+)$', re.M)
_SSH_UNMATCHED = re.compile(r'^Good "git" signature with (?P<key>\S+ key \S+)$', re.M)


def ssh_signer(answer: Answer, sha: str, source: Source) -> str:
    """The principal of a good signature, or TrustError saying what ssh-keygen found."""
    commit = f"commit {sha[:12]}"
    good = _SSH_GOOD.search(answer.output)
    if answer.returncode == 0 and good:
        return f"{good['who']} ({good['key']})"
    unmatched = _SSH_UNMATCHED.search(answer.output)
    if unmatched:
        raise TrustError(f"{commit} is signed by {unmatched['key']}, which no principal in "
                         f"{source.allowed_signers} allows: unknown signer")  # fmt: skip
    if "incorrect signature" in answer.output:
        raise TrustError(f"{commit} has a BAD ssh signature: the commit was changed after "
                         "it was signed")  # fmt: skip
    lines = answer.output.strip().splitlines()
    raise TrustError(f"{commit}: ssh-keygen did not accept its signature: "
                     f"{lines[-1] if lines else 'no answer'}")  # fmt: skip
