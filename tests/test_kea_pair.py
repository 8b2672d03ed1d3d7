"""The Kea HA pair rules: every mismatch that `kea-dhcp4 -t` accepts on each side alone.

Each case changes one role's rendered tree of the example Kea pair; the real
`kea-dhcp4 -t` (in the sandbox) must accept that side, and pair_problems must name
the role, the file and the line of the JSON key at fault.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from agent import config
from agent.engine import render
from agent.review.template import template_dir
from agent.servers import kea
from agent.servers.base import Files, is_warning
from agent.source.snapshot import WorkTree

LB = '"mode": "load-balancing"'
LEASE_CMDS = '{ "library": "/usr/lib/x86_64-linux-gnu/kea/hooks/libdhcp_lease_cmds.so" },'
SECONDARY_URL = "http://192.0.2.2:8001/"

# (id, role changed, file, [(old, new)], the line's needle, what the finding says)
CASES = [
    ("own-name-on-both", "secondary", "kea-dhcp4.conf",
     [('"this-server-name": "dhcp2"', '"this-server-name": "dhcp1"')],
     '"this-server-name"', "is the primary's too"),
    ("mode-differs", "secondary", "kea-dhcp4.conf", [(LB, '"mode": "hot-standby"')],
     '"mode"', "HA mode 'hot-standby', the primary's is 'load-balancing'"),
    ("unknown-mode", "primary", "kea-dhcp4.conf", [(LB, '"mode": "load-sharing"')],
     '"mode"', "HA mode 'load-sharing': one of"),
    ("this-server-names-no-peer", "primary", "kea-dhcp4.conf",
     [('"this-server-name": "dhcp1"', '"this-server-name": "dhcp9"')],
     '"this-server-name"', "names no peer"),
    ("port-not-mirrored", "secondary", "kea-dhcp4.conf",
     [(SECONDARY_URL, "http://192.0.2.2:8002/")], '"name": "dhcp2"',
     f"peer 'dhcp2' is secondary at http://192.0.2.2:8002/, on the primary secondary at "
     f"{SECONDARY_URL}"),
    ("peer-renamed", "secondary", "kea-dhcp4.conf",
     [('"name": "dhcp1"', '"name": "dhcp3"')], '"name": "dhcp3"',
     "peer 'dhcp3' is not in the primary's peers"),
    ("no-primary-peer", "secondary", "kea-dhcp4.conf",
     [('"role": "primary"', '"role": "secondary"')], '"peers"',
     "load-balancing needs exactly one primary peer, found 0"),
    ("role-the-mode-lacks", "primary", "kea-dhcp4.conf",
     [('"role": "secondary"', '"role": "standby"')], '"role": "standby"',
     "has role 'standby', which load-balancing does not take"),
    ("roles-swapped", "secondary", "kea-dhcp4.conf",
     [('"role": "primary"', '"role": "tmp"'), ('"role": "secondary"', '"role": "primary"'),
      ('"role": "tmp"', '"role": "secondary"')], '"role": "primary"',
     "this server ('dhcp2') is the secondary here, but its peer entry has role 'primary'"),
    ("url-without-port", "primary", "kea-dhcp4.conf",
     [(SECONDARY_URL, "http://192.0.2.2/")], '"url": "http://192.0.2.2/"',
     "give http://ADDRESS:PORT/"),
    ("no-lease-cmds", "secondary", "kea-dhcp4.conf", [(LEASE_CMDS, "")],
     '"hooks-libraries"', "libdhcp_lease_cmds.so is not loaded"),
    ("subnet-id", "secondary", "subnets.json", [('"id": 1,', '"id": 2,')], '"id": 2',
     "has id 2, on the primary 1: leases are filed by subnet id"),
    ("pools-differ", "secondary", "subnets.json",
     [("192.0.2.100 - 192.0.2.199", "192.0.2.100 - 192.0.2.149")], '"pools"',
     "pools 192.0.2.100-192.0.2.149; on the primary 192.0.2.100-192.0.2.199"),
    ("other-subnet", "secondary", "subnets.json", [("192.0.2.", "198.51.100.")],
     '"subnet"', "subnet 198.51.100.0/24 is not on the primary"),
]  # fmt: skip


@pytest.fixture(scope="module")
def target(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("live") / "kea"
    folder.mkdir()
    return folder


@pytest.fixture(scope="module")
def rendered(target: Path) -> dict[str, Files]:
    snapshot = WorkTree(template_dir("kea"))
    return {role: render.render_pair(snapshot, "", role, name, str(target)).files
            for role, name in (("primary", "dhcp1"), ("secondary", "dhcp2"))}  # fmt: skip


LANGUAGE = kea.Language(config.Kea())


def test_the_example_pair_has_no_pair_problem(rendered: dict[str, Files], target: Path) -> None:
    assert LANGUAGE.pair_problems(rendered, str(target)) == []


@pytest.mark.parametrize(("role", "file", "edits", "needle", "said"),
                         [c[1:] for c in CASES], ids=[c[0] for c in CASES])  # fmt: skip
def test_a_mismatch_kea_accepts_alone_is_caught_at_its_line(
    rendered: dict[str, Files],
    target: Path,
    tmp_path: Path,
    role: str,
    file: str,
    edits: list[tuple[str, str]],
    needle: str,
    said: str,
) -> None:
    text = rendered[role][file].decode()
    for old, new in edits:
        assert old in text, old
        text = text.replace(old, new)
    changed = {**rendered, role: {**rendered[role], file: text.encode()}}
    accepted_alone(changed[role], tmp_path / "stage", target)
    problems = [p for p in LANGUAGE.pair_problems(changed, str(target)) if not is_warning(p)]
    line = next(i for i, t in enumerate(text.splitlines(), 1) if needle in t)
    found = [p for p in problems if said in p.message]
    assert [(p.file, p.line) for p in found][:1] == [(f"{role}:{file}", line)], problems


def accepted_alone(files: Files, stage: Path, target: Path) -> None:
    """The real kea-dhcp4 -t takes this side: only the pair check can refuse it."""
    for rel, data in files.items():
        (stage / rel).parent.mkdir(parents=True, exist_ok=True)
        (stage / rel).write_bytes(data)
    LANGUAGE.validate(stage, target, {})


def test_dangers_name_an_ha_mode_and_peer_change(rendered: dict[str, Files], target: Path) -> None:
    before = rendered["primary"]
    text = before["kea-dhcp4.conf"].decode().replace(LB, '"mode": "hot-standby"')
    text = text.replace('"role": "secondary"', '"role": "standby"')
    said = LANGUAGE.dangers(before, {**before, "kea-dhcp4.conf": text.encode()}, str(target))
    assert any("HA mode changes from load-balancing to hot-standby" in s for s in said)
    assert any("the HA peers change" in s for s in said)


def test_dangers_name_a_reservation_moving_between_subnets(
    rendered: dict[str, Files], target: Path
) -> None:
    before = rendered["primary"]
    old = before["subnets.json"].decode()
    moved = old.replace('"reservations": [', '"reservations": [ ], "x-": [', 1)
    second = (
        ',\n  { "id": 2, "subnet": "198.51.100.0/24", "reservations": [ { "hw-address": '
        '"00:11:22:33:44:55", "ip-address": "198.51.100.10" } ] }\n]'
    )
    after_text = moved.replace('"x-": [', '"user-context": { "was": [', 1)
    after_text = after_text.replace("]\n  }\n]", "] }\n  }" + second, 1)
    after = {**before, "subnets.json": after_text.encode()}
    said = LANGUAGE.dangers(before, after, str(target))
    assert any("moves from subnet 192.0.2.0/24 to 198.51.100.0/24" in s for s in said), said
