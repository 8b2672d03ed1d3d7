"""A disk that fills up while the stage is written: nothing live changes, the error
says so, and the stage is gone.

The target sits on a small tmpfs mounted in a private mount namespace (`unshare
--mount`), so neither the mount nor a full disk is ever seen outside the test.
The real `dhcp-gitops sync` runs inside it, twice: the good commit, then one that
does not fit. The tree before and after is archived from inside the namespace.
"""

from __future__ import annotations

import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from agent.engine.state import Store
from lab.repo import ConfigRepo, git
from tests.conftest import NodeFactory

EXE = str(Path(sys.executable).with_name("dhcp-gitops"))

# Inside the namespace: mount, deploy the good head, archive it, push the commit
# that does not fit (prepared on a side branch), sync again, archive again.
SCRIPT = r"""
set -u
mount -t tmpfs -o "size=$SIZE,nr_inodes=$INODES,mode=0755" dhcp-gitops-test "$MNT"
"$EXE" sync --config "$CONFIG" > "$OUT/first.log" 2>&1 || exit 90
tar -C "$MNT" -cf "$OUT/before.tar" .
git -C "$WORK" push -q origin bad:main || exit 91
"$EXE" sync --config "$CONFIG" > "$OUT/second.log" 2>&1
echo $? > "$OUT/second.rc"
tar -C "$MNT" -cf "$OUT/after.tar" .
"""


def contents(archive: Path) -> dict[str, bytes]:
    """Every entry of a tar: files with their bytes, folders as empty."""
    found: dict[str, bytes] = {}
    with tarfile.open(archive) as tar:
        for member in tar.getmembers():
            data = tar.extractfile(member) if member.isfile() else None
            found[member.name] = data.read() if data else b""
    return found


def full_disk_sync(tmp_path: Path, repo: ConfigRepo, config: Path, size: str, inodes: int) -> Path:
    mnt, out = tmp_path / "mnt", tmp_path / "out"
    out.mkdir()
    env = {
        "SIZE": size, "INODES": str(inodes), "MNT": str(mnt), "OUT": str(out),
        "EXE": EXE, "CONFIG": str(config), "WORK": str(repo.work),
        "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
    }  # fmt: skip
    done = subprocess.run(
        ["unshare", "--mount", "--propagation", "private", "sh", "-c", SCRIPT],
        env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, f"{done.returncode}: {done.stderr}{_logs(out)}"
    assert not any(mnt.iterdir())  # the mount never showed outside the namespace
    return out


def _logs(out: Path) -> str:
    return "".join(f"\n--- {p.name}\n{p.read_text()}" for p in sorted(out.glob("*.log")))


@pytest.mark.parametrize(
    ("size", "inodes", "bad"),
    [
        ("256k", 4096, {"dhcp/fill.conf": b"#" * 600_000}),  # out of blocks
        ("4m", 40, {f"dhcp/hosts.d/h{i}.conf": b"# host\n" for i in range(60)}),  # of inodes
    ],
    ids=["blocks", "inodes"],
)
def test_a_full_disk_while_staging_changes_nothing_live(
    tmp_path: Path,
    repo: ConfigRepo,
    make_node: NodeFactory,
    dhcpd_binary: str,
    size: str,
    inodes: int,
    bad: dict[str, bytes],
) -> None:
    good = git(repo.work, "rev-parse", "HEAD")
    git(repo.work, "checkout", "-q", "-b", "bad")
    for rel, data in bad.items():
        repo.write(rel, data)
    git(repo.work, "add", "-A")
    git(repo.work, "commit", "-qm", "Does not fit")
    (tmp_path / "mnt").mkdir()
    lease_file = tmp_path / "dhcpd.leases"
    lease_file.write_bytes(b"lease 192.0.2.10 {\n  binding state active;\n}\n")
    node = make_node(
        deploy={"target": str(tmp_path / "mnt" / "dhcp")},
        dhcpd={"lease_file": str(lease_file)},
    )
    out = full_disk_sync(tmp_path, repo, node.config.file, size, inodes)

    second = (out / "second.log").read_text()
    assert (out / "second.rc").read_text().strip() != "0"
    assert "No space left on device" in second
    before, after = contents(out / "before.tar"), contents(out / "after.tar")
    assert after == before  # target, its files and the workspace: byte for byte
    assert not any("dhcp-gitops/stage" in name for name in after)
    state = Store(node.config.deploy.state_dir).load()
    assert state.deployed is not None and state.deployed.sha == good
    assert state.last_attempt is not None and state.last_attempt.result == "failed"
    assert "No space left on device" in state.last_attempt.message
    assert ".dhcp.dhcp-gitops/stage/" in state.last_attempt.message  # names the file
    assert lease_file.read_bytes() == b"lease 192.0.2.10 {\n  binding state active;\n}\n"
