"""Signed commits and anti-rollback ([source] verify, require_descendant), with real keys.

Every signature here is made by the real gpg or ssh-keygen through `git commit -S`
and checked by the agent through the real `git verify-commit`. The signers' keys
live in a GNUPGHOME made for the session (never ~/.gnupg); its gpg-agent is
killed at the end. Deploys validate with the real dhcpd -t.
"""

from __future__ import annotations

import io
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from agent import cli, tree
from agent.config import Source
from agent.engine import status
from agent.engine.reconcile import Node, reconcile
from agent.errors import TrustError
from agent.source.signature import Answer, gpg_signer, ssh_signer
from lab.repo import GIT_ENV, ConfigRepo, git
from tests.conftest import NodeFactory

EXE = str(Path(sys.executable).with_name("dhcp-gitops"))


@pytest.fixture(autouse=True)
def _needs_dhcpd(dhcpd_binary: str) -> None:
    """Deploys validate with the real dhcpd: fail, never skip, without it."""


@pytest.fixture(autouse=True)
def _no_ssh_agent(monkeypatch: pytest.MonkeyPatch) -> None:
    """ssh signatures come from the key files named here, never from an agent."""
    monkeypatch.delenv("SSH_AUTH_SOCK", raising=False)


# --- signers ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Signer:
    """One signing key and the git options that make `git commit -S` sign with it."""

    name: str  # how the agent names the signer when it trusts it
    key: str  # how the agent names the key when it refuses it
    options: tuple[str, ...]
    env: Mapping[str, str] = field(default_factory=dict)

    def commit(self, repo: ConfigRepo, message: str) -> str:
        """Commit everything, signed, and push it (forced: history may be rewritten)."""
        run_git(repo.work, "add", "-A", env=self.env)
        run_git(repo.work, *self.options, "commit", "-S", "-qm", message, "--allow-empty",
                env=self.env)  # fmt: skip
        run_git(repo.work, "push", "-qf", "origin", "HEAD:main", env=self.env)
        return git(repo.work, "rev-parse", "HEAD")


def run_git(cwd: Path, *args: str, env: Mapping[str, str]) -> str:
    done = subprocess.run(
        ["git", *args], cwd=cwd, env={**os.environ, **GIT_ENV, **env},
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert done.returncode == 0, f"git {' '.join(args)}: {done.stderr}"
    return done.stdout.strip()


@dataclass(frozen=True)
class Gpg:
    """The session's GNUPGHOME holding the signers' secret keys."""

    home: Path

    @property
    def env(self) -> dict[str, str]:
        return {"GNUPGHOME": str(self.home)}

    def run(self, *args: str, stdin: str | None = None) -> str:
        done = subprocess.run(
            ["gpg", "--batch", "--passphrase", "", "--status-fd", "1", *args],
            env={**os.environ, **self.env}, input=stdin, capture_output=True, text=True,
            check=False,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        return done.stdout

    def new_key(self, uid: str, expire: str = "never", *faked_time: str) -> str:
        """A new ed25519 signing key; returns its fingerprint."""
        out = self.run(*faked_time, "--quick-gen-key", uid, "ed25519", "sign", expire)
        created = re.search(r"KEY_CREATED P ([0-9A-F]+)", out)
        assert created, out
        return created[1]

    def signer(self, fpr: str, uid: str, program: str = "gpg") -> Signer:
        options = ("-c", "gpg.format=openpgp", "-c", f"gpg.program={program}",
                   "-c", f"user.signingkey={fpr}")  # fmt: skip
        return Signer(name=f"gpg key {fpr} ({uid})", key=fpr, options=options, env=self.env)

    def export(self, path: Path, *fprs: str) -> Path:
        path.write_text(self.run("--armor", "--export", *fprs))
        return path


@pytest.fixture(scope="session")
def gpg() -> Iterator[Gpg]:
    # Short and outside tmp_path: gpg-agent puts its socket in the home, and a socket
    # path may have at most 107 bytes.
    home = Path(tempfile.mkdtemp(prefix="gpg-", dir="/tmp"))
    home.chmod(0o700)
    try:
        yield Gpg(home)
    finally:
        env = {**os.environ, "GNUPGHOME": str(home)}
        subprocess.run(
            ["gpgconf", "--kill", "gpg-agent"], env=env, check=False, capture_output=True
        )
        shutil.rmtree(home, ignore_errors=True)


@dataclass(frozen=True)
class GpgKeys:
    alice: Signer  # in the keyring the agent trusts
    mallory: Signer  # a real key, but not in it
    alice_fpr: str
    mallory_fpr: str


@pytest.fixture(scope="session")
def gpg_keys(gpg: Gpg) -> GpgKeys:
    alice = gpg.new_key("Alice <alice@example.net>")
    mallory = gpg.new_key("Mallory <mallory@example.net>")
    return GpgKeys(
        alice=gpg.signer(alice, "Alice <alice@example.net>"),
        mallory=gpg.signer(mallory, "Mallory <mallory@example.net>"),
        alice_fpr=alice,
        mallory_fpr=mallory,
    )


@dataclass(frozen=True)
class SshKeys:
    alice: Signer
    eve: Signer
    allowed_signers: Path


def ssh_signer_of(key: Path, principal: str) -> Signer:
    listed = subprocess.run(["ssh-keygen", "-lf", f"{key}.pub"], capture_output=True,
                            text=True, check=True).stdout.split()  # fmt: skip
    name = f"ED25519 key {listed[1]}"  # 256 SHA256:... comment (ED25519)
    options = ("-c", "gpg.format=ssh", "-c", f"user.signingkey={key}")
    return Signer(name=f"{principal} ({name})", key=name, options=options)


@pytest.fixture(scope="session")
def ssh_keys(tmp_path_factory: pytest.TempPathFactory) -> SshKeys:
    folder = tmp_path_factory.mktemp("ssh-signers")
    for who in ("alice", "eve"):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", who,
                        "-f", str(folder / who)], check=True)  # fmt: skip
    public = (folder / "alice.pub").read_text().split()[:2]
    allowed = folder / "allowed_signers"
    allowed.write_text(f'alice@example.net namespaces="git" {" ".join(public)}\n')
    return SshKeys(
        alice=ssh_signer_of(folder / "alice", "alice@example.net"),
        eve=ssh_signer_of(folder / "eve", "eve"),
        allowed_signers=allowed,
    )


@dataclass(frozen=True)
class Policy:
    """One verify mode: the [source] keys that turn it on, a trusted and an unknown signer."""

    source: dict[str, object]
    trusted: Signer
    unknown: Signer


@pytest.fixture(params=["gpg", "ssh"])
def policy(
    request: pytest.FixtureRequest, tmp_path: Path, gpg: Gpg, gpg_keys: GpgKeys, ssh_keys: SshKeys
) -> Policy:
    if request.param == "gpg":
        keyring = gpg.export(tmp_path / "keyring.asc", gpg_keys.alice_fpr)
        source: dict[str, object] = {"verify": "gpg", "gpg_keyring": str(keyring)}
        return Policy(source, gpg_keys.alice, gpg_keys.mallory)
    source = {"verify": "ssh", "allowed_signers": str(ssh_keys.allowed_signers)}
    return Policy(source, ssh_keys.alice, ssh_keys.eve)


@pytest.fixture
def keyring(tmp_path: Path, gpg: Gpg, gpg_keys: GpgKeys) -> Path:
    """Alice's public key, exported: the gpg keyring of the nodes below."""
    return gpg.export(tmp_path / "keyring.asc", gpg_keys.alice_fpr)


# --- helpers ---------------------------------------------------------------------------


def snapshot(root: Path) -> dict[str, bytes]:
    return {rel: path.read_bytes() for rel, path in tree.files(root)}


def move_printer(repo: ConfigRepo, to: int) -> None:
    """A change that shows in the live tree."""
    text = re.sub(r"fixed-address 192\.0\.2\.\d+;", f"fixed-address 192.0.2.{to};",
                  repo.read("dhcp/hosts.conf"), count=1)  # fmt: skip
    repo.write("dhcp/hosts.conf", text)


def force_push(repo: ConfigRepo, sha: str) -> None:
    """Point the remote's main at sha, whatever it was (a force-push); the clone follows."""
    git(repo.work, "push", "-qf", "origin", f"{sha}:refs/heads/main")
    git(repo.work, "reset", "-q", "--hard", sha)


def printed_status(node: Node) -> str:
    out = io.StringIO()
    cli.print_status(status.report(node), out)
    return out.getvalue()


def assert_refused_untouched(node: Node, before: dict[str, bytes], deployed: str) -> None:
    """Nothing was rendered or touched: the live tree byte for byte, the record, no stage."""
    assert snapshot(node.config.deploy.target) == before
    state = node.store.load()
    assert state.deployed is not None and state.deployed.sha == deployed
    assert not node.workspace.stage.exists()


def cli_run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([EXE, *args], capture_output=True, text=True, timeout=120, check=False)


# --- gpg and ssh: trusted, unsigned, unknown -----------------------------------------------


def test_a_commit_signed_by_a_trusted_key_deploys(
    policy: Policy, repo: ConfigRepo, make_node: NodeFactory
) -> None:
    node = make_node(source=policy.source)
    sha = policy.trusted.commit(repo, "Signed")
    attempt = reconcile(node)
    assert attempt.result == "deployed", attempt.message
    assert attempt.sha == sha and attempt.signer == policy.trusted.name
    assert "trust" in attempt.timings
    assert node.store.history()[-1].signer == policy.trusted.name


def test_an_unsigned_commit_is_refused_and_nothing_is_touched(
    policy: Policy, repo: ConfigRepo, make_node: NodeFactory
) -> None:
    node = make_node(source=policy.source)
    good = policy.trusted.commit(repo, "Signed")
    assert reconcile(node).result == "deployed"
    before = snapshot(node.config.deploy.target)
    move_printer(repo, 77)
    unsigned = repo.commit("Unsigned change")
    attempt = reconcile(node)
    assert attempt.result == "refused" and attempt.step == "trust"
    assert attempt.sha == unsigned and attempt.signer is None
    assert f"commit {unsigned[:12]} is not signed" in attempt.message
    assert "render" not in attempt.timings  # refused before anything was rendered
    assert_refused_untouched(node, before, good)
    shown = printed_status(node)
    assert f"refused {unsigned[:12]}" in shown
    assert f"step trust: commit {unsigned[:12]} is not signed" in shown


def test_a_commit_by_an_unknown_key_is_refused_naming_the_key(
    policy: Policy, repo: ConfigRepo, make_node: NodeFactory
) -> None:
    node = make_node(source=policy.source)
    good = policy.trusted.commit(repo, "Signed")
    reconcile(node)
    before = snapshot(node.config.deploy.target)
    move_printer(repo, 66)
    sha = policy.unknown.commit(repo, "Signed by someone else")
    attempt = reconcile(node)
    assert attempt.result == "refused" and attempt.step == "trust"
    assert f"commit {sha[:12]} is signed by" in attempt.message
    assert policy.unknown.key in attempt.message and "unknown signer" in attempt.message
    assert_refused_untouched(node, before, good)
    assert policy.unknown.key in printed_status(node)


def test_a_tampered_commit_has_a_bad_signature(
    policy: Policy, repo: ConfigRepo, make_node: NodeFactory
) -> None:
    """A signed commit whose tree was swapped for another after signing."""
    node = make_node(source=policy.source)
    signed = policy.trusted.commit(repo, "Signed")
    reconcile(node)
    before = snapshot(node.config.deploy.target)
    move_printer(repo, 55)
    evil_tree = git(repo.work, "rev-parse", f"{repo.commit('Evil, unsigned')}^{{tree}}")
    raw = git(repo.work, "cat-file", "commit", signed) + "\n"
    forged_raw = re.sub(r"^tree \w+", f"tree {evil_tree}", raw, count=1)
    forged = subprocess.run(
        ["git", "hash-object", "-t", "commit", "-w", "--stdin"], cwd=repo.work,
        input=forged_raw, capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    force_push(repo, forged)
    attempt = reconcile(node)
    assert attempt.result == "refused" and attempt.step == "trust"
    assert "BAD" in attempt.message and "changed after it was signed" in attempt.message
    assert_refused_untouched(node, before, signed)


def test_a_signature_of_the_other_kind_is_refused(
    tmp_path: Path, repo: ConfigRepo, make_node: NodeFactory, gpg_keys: GpgKeys,
    ssh_keys: SshKeys,
) -> None:  # fmt: skip
    node = make_node(source={"verify": "ssh", "allowed_signers": str(ssh_keys.allowed_signers)})
    sha = gpg_keys.alice.commit(repo, "Signed with gpg")
    attempt = reconcile(node)
    assert attempt.result == "refused" and attempt.step == "trust"
    assert f"commit {sha[:12]} is signed with an OpenPGP (gpg) key" in attempt.message
    assert 'verify = "ssh" accepts only signatures by an ssh key' in attempt.message
    assert not node.config.deploy.target.exists()


# --- gpg: expired and revoked keys, the keyring ------------------------------------------


def test_a_commit_by_an_expired_key_is_refused(
    tmp_path: Path, repo: ConfigRepo, make_node: NodeFactory, gpg: Gpg
) -> None:
    """Made and used in 2020 (gpg's own faked clock), expired a day later."""
    then = ("--faked-system-time", "20200101T000000!")
    fpr = gpg.new_key("Old <old@example.net>", "1d", *then)
    old_gpg = tmp_path / "gpg-in-2020"
    old_gpg.write_text("#!/bin/sh\nexec gpg --faked-system-time '20200101T120000!' \"$@\"\n")
    old_gpg.chmod(0o755)
    signer = gpg.signer(fpr, "Old <old@example.net>", program=str(old_gpg))
    keyring = gpg.export(tmp_path / "keyring.asc", fpr)
    node = make_node(source={"verify": "gpg", "gpg_keyring": str(keyring)})
    signer.commit(repo, "Signed in 2020")
    attempt = reconcile(node)
    assert attempt.result == "refused" and attempt.step == "trust"
    assert f"gpg key {fpr} (Old <old@example.net>), which has expired" in attempt.message


def test_a_commit_by_a_revoked_key_is_refused(
    tmp_path: Path, repo: ConfigRepo, make_node: NodeFactory, gpg: Gpg
) -> None:
    fpr = gpg.new_key("Gone <gone@example.net>")
    signer = gpg.signer(fpr, "Gone <gone@example.net>")
    signer.commit(repo, "Signed before the key was revoked")
    certificate = (gpg.home / "openpgp-revocs.d" / f"{fpr}.rev").read_text()
    gpg.run("--import", stdin=certificate.replace(":-----BEGIN", "-----BEGIN"))
    keyring = gpg.export(tmp_path / "keyring.asc", fpr)  # the key with its revocation
    node = make_node(source={"verify": "gpg", "gpg_keyring": str(keyring)})
    attempt = reconcile(node)
    assert attempt.result == "refused" and attempt.step == "trust"
    assert f"gpg key {fpr} (Gone <gone@example.net>), which is revoked" in attempt.message


def test_the_nodes_own_gnupg_is_never_used_and_the_keyring_is_read_again(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, repo: ConfigRepo, make_node: NodeFactory,
    gpg: Gpg, gpg_keys: GpgKeys, keyring: Path,
) -> None:  # fmt: skip
    """The agent's environment points GNUPGHOME at a home that holds Mallory's key:
    she is still unknown until the configured keyring file lists her."""
    monkeypatch.setenv("GNUPGHOME", str(gpg.home))
    node = make_node(source={"verify": "gpg", "gpg_keyring": str(keyring)})
    gpg_keys.mallory.commit(repo, "Mallory's")
    attempt = reconcile(node)
    assert attempt.result == "refused" and gpg_keys.mallory_fpr in attempt.message
    home = node.config.deploy.state_dir / "gnupg"
    assert (home / "pubring.kbx").is_file()
    gpg.export(keyring, gpg_keys.alice_fpr, gpg_keys.mallory_fpr)  # the operator adds her
    attempt = reconcile(node)
    assert attempt.result == "deployed" and attempt.signer == gpg_keys.mallory.name
    gpg.export(keyring, gpg_keys.alice_fpr)  # and removes her again: her commit stops
    move_printer(repo, 44)
    gpg_keys.mallory.commit(repo, "Mallory's second")
    assert reconcile(node).result == "refused"


def test_a_keyring_without_keys_fails_and_says_so(
    tmp_path: Path, repo: ConfigRepo, make_node: NodeFactory, gpg_keys: GpgKeys
) -> None:
    empty = tmp_path / "keyring.asc"
    empty.write_text("not a key\n")
    node = make_node(source={"verify": "gpg", "gpg_keyring": str(empty)})
    gpg_keys.alice.commit(repo, "Signed")
    attempt = reconcile(node)
    assert attempt.result == "failed" and attempt.step == "trust"  # retried, not refused
    assert "[source] gpg_keyring: no public key could be imported" in attempt.message


# --- anti-rollback ---------------------------------------------------------------------


@pytest.fixture
def guarded(make_node: NodeFactory, keyring: Path) -> Node:
    """A node that deploys only Alice's commits, and only forward."""
    return make_node(
        source={"verify": "gpg", "gpg_keyring": str(keyring), "require_descendant": True}
    )


def test_a_force_push_to_older_history_is_refused_until_overridden(
    repo: ConfigRepo, guarded: Node, gpg_keys: GpgKeys
) -> None:
    alice, node = gpg_keys.alice, guarded
    old = alice.commit(repo, "A")
    assert reconcile(node).result == "deployed"
    move_printer(repo, 33)
    new = alice.commit(repo, "B")
    assert reconcile(node).result == "deployed"
    before = snapshot(node.config.deploy.target)
    force_push(repo, old)  # signed, but old: replaying it would undo B
    attempt = reconcile(node)
    assert attempt.result == "refused" and attempt.step == "trust"
    assert f"moved to {old[:12]}, which does not descend from {new[:12]}" in attempt.message
    assert "dhcp-gitops sync --allow-non-descendant" in attempt.message
    assert_refused_untouched(node, before, new)
    assert "does not descend" in printed_status(node)
    attempt = reconcile(node, allow_non_descendant=True)  # the operator means it
    assert attempt.result == "deployed" and attempt.sha == old
    assert "192.0.2.33" not in (node.config.deploy.target / "hosts.conf").read_text()
    move_printer(repo, 34)
    alice.commit(repo, "C")
    assert reconcile(node).result == "deployed"  # forward from there, as usual


def test_unrelated_history_is_refused_and_the_cli_override_deploys_it(
    repo: ConfigRepo, guarded: Node, gpg_keys: GpgKeys
) -> None:
    node, config = guarded, str(guarded.config.file)
    deployed = gpg_keys.alice.commit(repo, "A")
    assert reconcile(node).result == "deployed"
    before = snapshot(node.config.deploy.target)
    git(repo.work, "checkout", "-q", "--orphan", "rewritten")
    move_printer(repo, 22)
    orphan = gpg_keys.alice.commit(repo, "A new root")  # force-pushed over main
    done = cli_run("sync", "--config", config)
    assert done.returncode == 1, done.stdout + done.stderr
    assert f"refused {orphan[:12]} at step trust" in done.stdout
    assert f"live: {node.config.deploy.target} still {deployed[:12]}" in done.stdout
    assert_refused_untouched(node, before, deployed)
    done = cli_run("sync", "--config", config, "--allow-non-descendant")
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.startswith(f"deployed {orphan[:12]}")
    assert f"signed by {gpg_keys.alice.name}" in done.stdout


def test_rewritten_history_that_merges_the_deployed_commit_deploys(
    repo: ConfigRepo, guarded: Node, gpg_keys: GpgKeys
) -> None:
    """What the README advises when no override can be given (a supervised agent)."""
    alice, node = gpg_keys.alice, guarded
    deployed = alice.commit(repo, "A")
    assert reconcile(node).result == "deployed"
    git(repo.work, "checkout", "-q", "--orphan", "rewritten")
    move_printer(repo, 21)
    alice.commit(repo, "A new root")
    assert reconcile(node).result == "refused"
    run_git(repo.work, *alice.options, "merge", "-S", "-q", "-s", "ours",
            "--allow-unrelated-histories", "-m", "Adopt the deployed history", deployed,
            env=alice.env)  # fmt: skip
    run_git(repo.work, "push", "-qf", "origin", "HEAD:main", env=alice.env)
    attempt = reconcile(node)
    assert attempt.result == "deployed" and attempt.signer == alice.name
    assert "192.0.2.21" in (node.config.deploy.target / "hosts.conf").read_text()


def test_the_override_does_not_waive_the_signature(
    repo: ConfigRepo, guarded: Node, gpg_keys: GpgKeys
) -> None:
    node = guarded
    old = repo.commit("Unsigned, old")
    gpg_keys.alice.commit(repo, "A")
    assert reconcile(node).result == "deployed"
    force_push(repo, old)
    attempt = reconcile(node, allow_non_descendant=True)
    assert attempt.result == "refused" and "is not signed" in attempt.message


def test_without_require_descendant_a_force_push_deploys(
    repo: ConfigRepo, make_node: NodeFactory, keyring: Path, gpg_keys: GpgKeys
) -> None:
    node = make_node(source={"verify": "gpg", "gpg_keyring": str(keyring)})
    old = gpg_keys.alice.commit(repo, "A")
    move_printer(repo, 33)
    gpg_keys.alice.commit(repo, "B")
    assert reconcile(node).result == "deployed"
    force_push(repo, old)
    attempt = reconcile(node)
    assert attempt.result == "deployed" and attempt.sha == old


def test_rollback_is_the_explicit_override_but_needs_a_signature(
    repo: ConfigRepo, guarded: Node, gpg_keys: GpgKeys
) -> None:
    alice, node = gpg_keys.alice, guarded
    first = alice.commit(repo, "A")
    assert reconcile(node).result == "deployed"
    move_printer(repo, 11)
    unsigned = repo.commit("Unsigned")
    assert reconcile(node).result == "refused"
    move_printer(repo, 12)
    head = alice.commit(repo, "B, signed, on top of the unsigned one")
    assert reconcile(node).result == "deployed"  # the deployed commit is what is checked
    before = snapshot(node.config.deploy.target)
    attempt = reconcile(node, rollback_to=unsigned)
    assert attempt.result == "refused" and "is not signed" in attempt.message
    assert_refused_untouched(node, before, head)
    attempt = reconcile(node, rollback_to=first[:10])  # older: allowed, it is named on purpose
    assert attempt.result == "deployed" and attempt.sha == first
    assert attempt.signer == alice.name
    pinned = reconcile(node)  # the head did not move: the rollback holds, re-verified
    assert pinned.result == "current" and pinned.sha == first and pinned.signer == alice.name
    move_printer(repo, 13)
    newer = alice.commit(repo, "C")  # descends from the head the rollback was made from
    attempt = reconcile(node)
    assert attempt.result == "deployed" and attempt.sha == newer
    assert node.store.load().pin is None


def test_the_rollback_command_deploys_an_older_signed_commit(
    repo: ConfigRepo, guarded: Node, gpg_keys: GpgKeys
) -> None:
    node, config = guarded, str(guarded.config.file)
    first = gpg_keys.alice.commit(repo, "A")
    reconcile(node)
    move_printer(repo, 14)
    gpg_keys.alice.commit(repo, "B")
    reconcile(node)
    done = cli_run("rollback", "--config", config)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.startswith(f"deployed {first[:12]}")


# --- the answers of gpg and ssh-keygen, as read (captured from the real tools) --------------

SHA = "0123456789abcdef0123456789abcdef01234567"
FPR = "E1FD7D2264BDAB411B2BF946948DC85B5AA53B40"
GOOD = f"""[GNUPG:] NEWSIG
[GNUPG:] KEY_CONSIDERED {FPR} 0
[GNUPG:] GOODSIG 948DC85B5AA53B40 Alice <alice@example.net>
[GNUPG:] VALIDSIG {FPR} 2026-11-25 1795569392 0 4 0 22 8 00 {FPR}
[GNUPG:] TRUST_UNDEFINED 0 pgp
"""
UNKNOWN = f"""[GNUPG:] NEWSIG
[GNUPG:] ERRSIG 948DC85B5AA53B40 22 8 00 1795569392 9 {FPR}
[GNUPG:] NO_PUBKEY 948DC85B5AA53B40
"""
BAD = """[GNUPG:] NEWSIG
[GNUPG:] BADSIG 948DC85B5AA53B40 Alice <alice@example.net>
"""


@pytest.mark.parametrize(
    ("code", "output", "expected"),
    [
        (0, GOOD, f"gpg key {FPR} (Alice <alice@example.net>)"),
        (1, GOOD, "gpg did not accept"),  # git said no: never trusted on gpg's word alone
        (1, UNKNOWN, f"signed by gpg key {FPR}, which is not in the keyring"),
        (1, UNKNOWN.replace(f" {FPR}", ""), "signed by gpg key 948DC85B5AA53B40, which"),
        (1, BAD, "BAD signature claiming gpg key 948DC85B5AA53B40 (Alice"),
        (1, "", "gpg did not accept its signature: no answer"),
    ],
)
def test_gpg_answers(code: int, output: str, expected: str) -> None:
    source = Source(url="file:///r", verify="gpg", gpg_keyring=Path("/k.asc"))
    try:
        said = gpg_signer(Answer(code, output), SHA, source)
    except TrustError as err:
        said = err.message
    assert expected in said


@pytest.mark.parametrize(
    ("code", "output", "expected"),
    [
        (0, 'Good "git" signature for ops@example.net with ED25519 key SHA256:abc',
         "ops@example.net (ED25519 key SHA256:abc)"),
        (1, 'Good "git" signature with RSA key SHA256:xyz\nNo principal matched.',
         "signed by RSA key SHA256:xyz, which no principal in /a allows"),
        (1, "Could not verify signature.\nSignature verification failed: incorrect signature",
         "BAD ssh signature"),
        (1, "error: gpg.ssh.allowedSignersFile needs to be configured",
         "ssh-keygen did not accept its signature: error: gpg.ssh"),
    ],
)  # fmt: skip
def test_ssh_answers(code: int, output: str, expected: str) -> None:
    source = Source(url="file:///r", verify="ssh", allowed_signers=Path("/a"))
    try:
        said = ssh_signer(Answer(code, output), SHA, source)
    except TrustError as err:
        said = err.message
    assert expected in said
