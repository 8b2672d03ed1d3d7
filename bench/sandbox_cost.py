"""What the sandbox costs one validation: `dhcpd -t` in bwrap against the bind it replaced.

    PYTHONPATH=. .venv/bin/python bench/sandbox_cost.py [ROUNDS]

One validation is what `agent.servers.dhcpd.sandbox.run_dhcpd_t` does: build the
argv, run `dhcpd -t -cf TARGET/dhcpd.conf` on a staged tree seen at TARGET, read its
answer. "bwrap" is that function as it is; "unshare" is the sandbox before it, a
private mount namespace (`unshare --mount`, plus `--map-root-user` without root)
where `mount --bind STAGE TARGET` put the stage over the target and the rest of
the host stayed visible. Two configs: the repo-template's primary, and the same
with 10,000 host declarations in hosts.conf. ROUNDS rounds (default 30), the two
ways interleaved and taking turns going first; printed: median and p95 in ms.
Last, what listing dhcpd's libraries once costs (ldd; the sandbox keeps it per
binary, so only a validation after the binary changed pays it).

A measurement, not a test: it imports agent/ and the standard library only.
"""

from __future__ import annotations

import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from agent import process, tree
from agent.config import Dhcpd
from agent.engine import render
from agent.review.template import template_dir
from agent.servers import sandbox as bwrap_sandbox
from agent.servers.dhcpd import sandbox
from agent.source.snapshot import WorkTree

HOSTS = 10_000
DHCPD = Dhcpd(binary=shutil.which("dhcpd", path="/usr/sbin:/sbin:/usr/bin") or "/usr/sbin/dhcpd")
# The sandbox before bwrap (agent/servers/dhcpd/sandbox.py until issue 12): bind $1
# over $2, enter $2, run the rest.
BIND_AND_RUN = 'mount --bind "$1" "$2" && cd "$2" && shift 2 && exec "$@"'

Validation = Callable[[Path, Path], None]


def with_bwrap(stage: Path, target: Path) -> None:
    problems = sandbox.run_dhcpd_t(stage, target, DHCPD)
    assert not problems, problems


def with_unshare(stage: Path, target: Path) -> None:
    unshare = ["unshare", "--mount", "--propagation", "private"]
    if os.geteuid() != 0:
        unshare.append("--map-root-user")
    config = str(target / DHCPD.config)
    argv = [*unshare, "--", "sh", "-c", BIND_AND_RUN, "dhcp-gitops", str(stage), str(target),
            DHCPD.binary, "-t", "-cf", config]  # fmt: skip
    result = process.run(argv, timeout=sandbox.TIMEOUT, check=False)
    assert result.returncode == 0, sandbox.parse_errors(result.stderr + result.stdout)


WAYS: dict[str, Validation] = {"bwrap": with_bwrap, "unshare": with_unshare}


def staged(root: Path, name: str, target: Path, hosts: int) -> Path:
    """The template's primary, rendered for target, written to root/name."""
    rendered = render.render_pair(WorkTree(template_dir()), "", "primary", "dhcp1", str(target))
    files = dict(rendered.files)
    if hosts:
        files["hosts.conf"] = host_declarations(hosts)
    stage = root / name
    tree.write(stage, files)
    return stage


def host_declarations(count: int) -> bytes:
    lines = [
        f"host h{i} {{ hardware ethernet 02:00:{i >> 16 & 255:02x}:{i >> 8 & 255:02x}:"
        f"{i & 255:02x}:01; fixed-address 10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}; }}\n"
        for i in range(count)
    ]
    return "".join(lines).encode()


def timed(validation: Validation, stage: Path, target: Path) -> float:
    start = time.perf_counter()
    validation(stage, target)
    return (time.perf_counter() - start) * 1000


def p95(samples: list[float]) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]


Samples = dict[tuple[str, str], list[float]]  # (config, way) -> ms of each round


def measure(stages: dict[str, Path], target: Path, rounds: int) -> Samples:
    samples: Samples = {(c, w): [] for c in stages for w in WAYS}
    for stage in stages.values():
        for validation in WAYS.values():
            validation(stage, target)  # warm: page cache, the sandbox's library list
    for n in range(rounds):
        order = list(WAYS) if n % 2 == 0 else list(reversed(WAYS))
        for config, stage in stages.items():
            for way in order:
                samples[(config, way)].append(timed(WAYS[way], stage, target))
    return samples


def ldd_once() -> float:
    start = time.perf_counter()
    bwrap_sandbox._libraries(DHCPD.binary)
    return (time.perf_counter() - start) * 1000


def main(argv: list[str]) -> int:
    rounds = int(argv[1]) if len(argv) > 1 else 30
    with tempfile.TemporaryDirectory(prefix="dhcp-gitops-sandbox-cost-") as tmp:
        root = Path(tmp)
        target = root / "etc" / "dhcp"
        target.mkdir(parents=True)  # the bind needs its mount point; bwrap makes its own
        stages = {
            "repo-template": staged(root, "template", target, 0),
            f"{HOSTS:,} hosts": staged(root, "hosts", target, HOSTS),
        }
        samples = measure(stages, target, rounds)
    print(f"one validation (dhcpd -t), {rounds} rounds, uid {os.geteuid()}")
    print(f"{'config':<16} {'sandbox':<8} {'median ms':>10} {'p95 ms':>8}")
    for (config, way), ms in samples.items():
        print(f"{config:<16} {way:<8} {statistics.median(ms):>10.1f} {p95(ms):>8.1f}")
    print(f"ldd of {DHCPD.binary}, once per binary: {ldd_once():.1f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
