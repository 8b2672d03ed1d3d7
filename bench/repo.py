"""The config repo every pipeline deploys from: one dhcpd.conf with N static hosts.

One file, so that the three tools deploy byte-identical content: the agent lays
dhcp/ over the target (no template), ansible's `template` renders the same file
(nothing in it is Jinja), rsync copies it. Includes would resolve against each
pipeline's own target path, which no single file could name for all three.

Addresses: the server's own link is 192.0.2.0/24 (documentation range); the
hosts' fixed addresses are in 10.16.0.0/16, a relayed network no interface has.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from lab.repo import ConfigRepo, git

HERE = Path(__file__).resolve().parent
PLAYBOOK = HERE / "ansible" / "playbook.yml"
CONFIG = "dhcp/dhcpd.conf"
HOST_BASE = 256  # fixed addresses start at 10.16.1.0

HEADER = """\
# dhcpd.conf of the benchmarks: one server, {hosts} static hosts.
authoritative;
ddns-update-style none;
default-lease-time 3600;
max-lease-time 7200;

# The server's own link (inside the benchmark's network namespace).
subnet 192.0.2.0 netmask 255.255.255.0 {{
  option routers 192.0.2.254;
  range 192.0.2.100 192.0.2.199;
}}

# A relayed network holding every fixed address below.
subnet 10.16.0.0 netmask 255.255.0.0 {{
  option routers 10.16.0.1;
}}
"""


def host(index: int, name: str | None = None) -> str:
    """A host declaration with a MAC and a fixed address unique to index (< 65,000)."""
    mac = ":".join(
        f"{b:02x}" for b in (0x02, 0, 0, index >> 16 & 255, index >> 8 & 255, index & 255)
    )
    address = index + HOST_BASE
    return (
        f"host {name or f'h{index}'} {{\n"
        f"  hardware ethernet {mac};\n"
        f"  fixed-address 10.16.{address >> 8}.{address & 255};\n"
        "}\n"
    )


def dhcpd_conf(hosts: int) -> str:
    return HEADER.format(hosts=hosts) + "".join(host(i) for i in range(hosts))


@dataclass
class BenchRepo:
    """The bare "forge" repo and a working clone that commits one change per round."""

    repo: ConfigRepo
    hosts: int
    changes: int = 0

    @classmethod
    def create(cls, root: Path, hosts: int) -> BenchRepo:
        repo = ConfigRepo(root, None)
        repo.write(CONFIG, dhcpd_conf(hosts))
        # ansible-pull runs a playbook from the repo it pulls: it is committed beside dhcp/.
        shutil.copy(PLAYBOOK, repo.work / "playbook.yml")
        repo.commit(f"{hosts} hosts")
        return cls(repo, hosts)

    @property
    def url(self) -> str:
        return self.repo.url

    @property
    def bare(self) -> Path:
        return self.repo.bare

    def change(self) -> tuple[str, str]:
        """Commit and push one more host; (sha, its name: the marker "live" looks for)."""
        self.changes += 1
        name = f"bench-change-{self.changes}"
        with (self.repo.work / CONFIG).open("a") as config:
            config.write(host(self.hosts + self.changes, name))
        git(self.repo.work, "commit", "-qam", f"Add {name}")
        git(self.repo.work, "push", "-q", "origin", "HEAD:main")
        return git(self.repo.work, "rev-parse", "HEAD"), f"host {name} {{"
