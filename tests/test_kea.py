"""The Kea backend with the real kea-dhcp4 from Debian: its language, `kea-dhcp4 -t` in the
sandbox, reconcile on a Kea node, and init/validate/plan of a Kea pair repo.

kea-dhcp4 never serves here (restart "none"): tests/test_kea_pair.py checks the pair rules.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from agent import config, tree
from agent.engine.reconcile import Node, reconcile
from agent.errors import ConfigError, ValidateError
from agent.review.template import template_dir
from agent.servers import for_config, kea
from agent.servers.kea import jsonc, sandbox
from lab.repo import ConfigRepo, git
from tests.conftest import NodeFactory, StartAgent

EXE = str(Path(sys.executable).with_name("dhcp-gitops"))
KEA = "/usr/sbin/kea-dhcp4"


@pytest.fixture(autouse=True)
def _needs_kea() -> None:
    """Every test here runs the real kea-dhcp4: fail, never skip, without it."""
    if not Path(KEA).is_file():
        pytest.fail("kea-dhcp4 is missing: scripts/setup.sh --test installs kea-dhcp4-server")


@pytest.fixture
def repo(tmp_path: Path) -> ConfigRepo:
    """The example Kea pair from repo-template-kea, committed and pushed (make_node's)."""
    r = ConfigRepo(tmp_path / "repo", template_dir("kea"))
    r.commit("Initial Kea pair")
    return r


def kea_node(
    make_node: NodeFactory, tmp_path: Path, name: str = "dhcp1", role: str = "primary"
) -> Node:
    target = tmp_path / name / "etc" / "kea"
    return make_node(
        name, role, node={"server": "kea"}, kea={"restart": "none"}, deploy={"target": str(target)}
    )


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([EXE, *args], capture_output=True, text=True, timeout=120, check=False)


def live(root: Path) -> dict[str, bytes]:
    return {rel: path.read_bytes() for rel, path in tree.files(root)}


# --- config -------------------------------------------------------------------


def test_a_kea_node_deploys_to_etc_kea_unless_told_and_dhcpd_keeps_etc_dhcp() -> None:
    raw = {"node": {"name": "k", "role": "primary", "server": "kea"}, "source": {"url": "/r"}}
    assert config.AgentConfig.model_validate(raw).deploy.target == Path("/etc/kea")
    raw["node"] = {"name": "d", "role": "primary"}
    assert config.AgentConfig.model_validate(raw).deploy.target == Path("/etc/dhcp")


def test_a_kea_section_from_agent_toml_takes_a_socket_path(
    make_node: NodeFactory, tmp_path: Path
) -> None:
    node = make_node(node={"server": "kea"}, kea={"control_socket": "/run/k.sock"})
    assert node.config.kea.control_socket == Path("/run/k.sock")
    with pytest.raises(ConfigError, match="control_socket: an absolute path"):
        make_node(node={"server": "kea"}, kea={"control_socket": "k.sock"})


def test_for_config_picks_the_kea_backend(make_node: NodeFactory, tmp_path: Path) -> None:
    node = kea_node(make_node, tmp_path)
    assert isinstance(node.server, kea.Server) and node.server.health().mode == "none"
    assert isinstance(for_config(node.config), kea.Server)


# --- Kea's JSON -----------------------------------------------------------------


def test_comments_go_but_not_inside_strings_and_lines_follow_includes() -> None:
    main = (
        b'// kea\n{ "Dhcp4": { # one\n  "a": "x # y // z /* w */",\n'
        b'  <?include "/etc/kea/sub.json"?>\n  /* two\n */ "c": 3 } }\n'
    )
    files = {"kea-dhcp4.conf": main, "sub.json": b'\n"b": [1,\n 2],'}
    doc = jsonc.load(files, "kea-dhcp4.conf", "/etc/kea")
    assert doc.value == {"Dhcp4": {"a": "x # y // z /* w */", "b": [1, 2], "c": 3}}
    assert doc.where(("Dhcp4", "a")) == ("kea-dhcp4.conf", 3)
    assert doc.where(("Dhcp4", "b", 1)) == ("sub.json", 3)
    assert doc.where(("Dhcp4", "c")) == ("kea-dhcp4.conf", 6)


@pytest.mark.parametrize(
    ("path", "why"),
    [
        ("sub.json", "is relative"),
        ("/etc/passwd", "is outside /etc/kea"),
        ("/etc/kea/../shadow", "is outside /etc/kea"),
    ],
)
def test_an_include_relative_or_outside_the_target_is_refused_at_its_line(
    path: str, why: str
) -> None:
    files = {"kea-dhcp4.conf": f'{{ "Dhcp4": {{\n  <?include "{path}"?>\n}} }}'.encode()}
    problems = sandbox.include_problems(files, "kea-dhcp4.conf", "/etc/kea")
    assert [(p.file, p.line) for p in problems] == [("/etc/kea/kea-dhcp4.conf", 2)]
    assert why in problems[0].message


@pytest.mark.parametrize(
    ("output", "file", "line", "message"),
    [
        # Measured, Kea 2.2.0: a syntax error in an included file, a semantic one.
        (
            'Syntax check failed with: /etc/kea/sub.json:2.2-8: got unexpected keyword "bogus" '
            "in Dhcp4 map.",
            "/etc/kea/sub.json",
            2,
            'got unexpected keyword "bogus" in Dhcp4 map.',
        ),
        (
            "Error encountered: Failed to create pool defined by: 198.51.100.10-192.0.2.20 "
            "(/etc/kea/sub.json:2:23)",
            "/etc/kea/sub.json",
            2,
            "Failed to create pool defined by: 198.51.100.10-192.0.2.20",
        ),
        (
            "Error encountered: Failed to select interface: interface 'eth9' doesn't exist in "
            "the system (/etc/kea/k.conf:3:44) (/etc/kea/k.conf:3:28)",
            "/etc/kea/k.conf",
            3,
            "Failed to select interface: interface 'eth9' doesn't exist in the system",
        ),
    ],
)
def test_kea_errors_are_located(output: str, file: str, line: int, message: str) -> None:
    (problem,) = sandbox.parse_errors("2026-12-04 INFO [kea] noise\n" + output, "/x")
    assert (problem.file, problem.line, problem.message) == (file, line, message)


# --- kea-dhcp4 -t in the sandbox --------------------------------------------------


def stage_of(tmp_path: Path, files: dict[str, str]) -> tuple[Path, Path]:
    stage, target = tmp_path / "stage", tmp_path / "kea"
    target.mkdir()
    for rel, text in files.items():
        (stage / rel).parent.mkdir(parents=True, exist_ok=True)
        (stage / rel).write_text(text)
    return stage, target


def minimal(target: Path, interfaces: str, extra: str = "") -> str:
    return (
        '{ "Dhcp4": {\n'
        f'  "interfaces-config": {{ "interfaces": [ {interfaces} ] }},\n'
        '  "lease-database": { "type": "memfile", "persist": false },\n'
        f'  <?include "{target}/subnets.json"?>{extra}\n'
        "} }\n"
    )


SUBNETS = '"subnet4": [ { "id": 1, "subnet": "192.0.2.0/24",\n  "pools": [ { "pool": "POOL" } ] } ]'


def test_interfaces_the_machine_lacks_validate_in_the_sandbox(tmp_path: Path) -> None:
    """The sandbox's network namespace has the config's interfaces, addresses too, so a
    config written for the servers validates here; the host's links do not change."""
    before = subprocess.run(["ip", "-br", "link"], capture_output=True, text=True).stdout
    target = tmp_path / "kea"
    conf = minimal(target, '"ens99/192.0.2.1", "ens99/192.0.2.7", "dgk-test0"')
    subnets = SUBNETS.replace("POOL", "192.0.2.100 - 192.0.2.199")
    stage, _ = stage_of(tmp_path, {"kea-dhcp4.conf": conf, "subnets.json": subnets})
    kea.Language(config.Kea()).validate(stage, target, {})
    assert subprocess.run(["ip", "-br", "link"], capture_output=True, text=True).stdout == before


def test_a_semantic_error_in_an_include_names_its_repo_file_and_line(tmp_path: Path) -> None:
    target = tmp_path / "kea"
    subnets = SUBNETS.replace("POOL", "198.51.100.10 - 192.0.2.20")
    stage, _ = stage_of(
        tmp_path, {"kea-dhcp4.conf": minimal(target, '"eth0"'), "subnets.json": subnets}
    )
    with pytest.raises(ValidateError) as caught:
        kea.Language(config.Kea()).validate(stage, target, {"subnets.json": "dhcp/subnets.json"})
    (problem,) = caught.value.problems
    assert str(problem).startswith("dhcp/subnets.json:2: Failed to create pool defined by")


# --- reconcile on a Kea node -------------------------------------------------------


def test_both_roles_deploy_each_naming_itself(
    repo: ConfigRepo, make_node: NodeFactory, tmp_path: Path
) -> None:
    for name, role in (("dhcp1", "primary"), ("dhcp2", "secondary")):
        node = kea_node(make_node, tmp_path, name, role)
        attempt = reconcile(node)
        assert attempt.result == "deployed", (attempt.message, attempt.problems)
        conf = (node.config.deploy.target / "kea-dhcp4.conf").read_text()
        assert f'"this-server-name": "{name}"' in conf
        assert (node.config.deploy.target / "subnets.json").is_file()


def test_a_json_error_is_refused_with_repo_file_and_line_and_live_is_unchanged(
    repo: ConfigRepo, make_node: NodeFactory, tmp_path: Path
) -> None:
    node = kea_node(make_node, tmp_path)
    assert reconcile(node).result == "deployed"
    before = live(node.config.deploy.target)
    repo.replace("dhcp/subnets.json", '"id": 1,', '"id": 1')  # the comma goes
    repo.commit("Break the JSON")
    attempt = reconcile(node)
    assert attempt.result == "refused" and attempt.step == "validate", attempt.message
    line = next(
        i for i, t in enumerate(repo.read("dhcp/subnets.json").splitlines(), 1) if '"subnet":' in t
    )
    assert [str(p).split(": ", 1)[0] for p in attempt.problems] == [f"dhcp/subnets.json:{line}"]
    assert live(node.config.deploy.target) == before


def test_a_pair_mismatch_is_refused_on_the_server_itself(
    repo: ConfigRepo, make_node: NodeFactory, tmp_path: Path
) -> None:
    """Invariant 10 for Kea: each agent renders its partner's side and compares."""
    node = kea_node(make_node, tmp_path)
    text = repo.read("dhcp/subnets.json").replace('"id": 1,', '"id": 2,')
    repo.write("roles/secondary/subnets.json", text)
    repo.commit("A subnet id of its own on the secondary")
    attempt = reconcile(node)
    assert attempt.result == "refused", attempt.message
    assert any("has id 2, on the primary 1" in p.message for p in attempt.problems)


# --- the review commands ----------------------------------------------------------


def test_init_server_kea_makes_a_pair_repo_that_validates(tmp_path: Path) -> None:
    folder = tmp_path / "kea-config"
    done = cli("init", "--server", "kea", str(folder))
    assert done.returncode == 0, done.stderr
    assert 'server = "kea"' in (folder / "pair.toml").read_text()
    assert git(folder, "status", "--porcelain") == ""
    target = tmp_path / "etc-kea"
    target.mkdir()
    checked = cli("validate", str(folder), "--target", str(target))
    assert (checked.returncode, checked.stdout) == (0, ""), checked.stdout + checked.stderr


def test_validate_names_the_template_line_of_an_ha_mismatch(
    repo: ConfigRepo, tmp_path: Path
) -> None:
    mode = "{{ 'hot-standby' if node.role == 'secondary' else pair.ha.mode }}"
    repo.replace("dhcp/kea-dhcp4.conf.j2", '"mode": "{{ pair.ha.mode }}"', f'"mode": "{mode}"')
    target = tmp_path / "etc-kea"
    target.mkdir()
    done = cli("validate", str(repo.work), "--target", str(target))
    assert done.returncode == 1
    line = next(
        i
        for i, t in enumerate(repo.read("dhcp/kea-dhcp4.conf.j2").splitlines(), 1)
        if '"mode":' in t
    )
    said = f"dhcp/kea-dhcp4.conf.j2:{line}: error: [secondary] HA mode 'hot-standby', the "
    assert said in done.stdout, done.stdout


def test_validate_works_without_root_interfaces_too(repo: ConfigRepo) -> None:
    """A CI runner's user: kea-dhcp4 -t runs in a user + mount + network namespace, where
    the links the config names can still be made."""
    with tempfile.TemporaryDirectory() as shared:  # pytest's own tmp folders are root's alone
        checkout, target = Path(shared) / "checkout", Path(shared) / "kea"
        shutil.copytree(repo.work, checkout)
        target.mkdir()
        Path(shared).chmod(0o755)
        (checkout / "roles" / "primary" / "interfaces.json").write_text(
            '"interfaces-config": { "interfaces": [ "ens99/192.0.2.1" ] },'
        )
        done = as_nobody("validate", str(checkout), "--target", str(target))
        assert (done.returncode, done.stdout) == (0, ""), done.stdout + done.stderr
        subnets = checkout / "dhcp" / "subnets.json"
        subnets.write_text(subnets.read_text().replace('"id": 1,', '"id": 1'))
        done = as_nobody("validate", str(checkout), "--target", str(target))
    assert done.returncode == 1 and "dhcp/subnets.json:" in done.stdout, done.stderr


def as_nobody(*args: str) -> subprocess.CompletedProcess[str]:
    nobody = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
    return subprocess.run([*nobody, EXE, *args], capture_output=True, text=True, timeout=120,
                          check=False)  # fmt: skip


def test_plan_warns_of_a_subnet_id_change_and_a_shrinking_pool(repo: ConfigRepo) -> None:
    base = git(repo.work, "rev-parse", "HEAD")
    repo.replace("dhcp/subnets.json", '"id": 1,', '"id": 7,')
    repo.replace("dhcp/subnets.json", "192.0.2.100 - 192.0.2.199", "192.0.2.100 - 192.0.2.149")
    repo.commit("Renumber")
    done = subprocess.run(
        [EXE, "plan", base, "HEAD", str(repo.work)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 1, done.stderr
    assert "changes id 1 to 7" in done.stdout and "shrink by 50 address(es)" in done.stdout


def test_the_wheel_carries_the_kea_template() -> None:
    """template_dir() finds agent/repo_template_kea in an installed wheel: pyproject's
    force-include must put it there (no wheel is built here: hatchling is not installed)."""
    text = (Path(__file__).parent.parent / "pyproject.toml").read_text()
    assert '"repo-template-kea" = "agent/repo_template_kea"' in text


# --- the agent process --------------------------------------------------------------


def test_a_kea_agent_deploys_at_start_and_reports_on_status(
    repo: ConfigRepo, start_agent: StartAgent, tmp_path: Path
) -> None:
    head = repo.commit("Head at start")
    target = tmp_path / "dhcp1" / "etc" / "kea"
    sock = str(tmp_path / "no-kea.sock")  # never the host's /run/kea socket
    agent = start_agent(node={"server": "kea"}, deploy={"target": str(target)},
                        kea={"restart": "none", "control_socket": sock})  # fmt: skip
    doc = agent.wait_deployed(head)
    assert doc["live"]["drift"] == "none"
    assert doc["failover"] == []  # no Kea answers on the socket: no HA state to show
    assert (target / "kea-dhcp4.conf").is_file()
