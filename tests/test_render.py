"""agent.engine.render: overlay and templates, pure; every refusal names the repo file."""

from __future__ import annotations

import pytest

from agent.engine.render import Layer, check_name, render, variables
from agent.errors import RenderError
from agent.source.snapshot import RepoFile

PAIR = RepoFile(
    "pair.toml",
    b'[failover]\nname = "fo"\n[primary]\naddress = "192.0.2.1"\n'
    b'[secondary]\naddress = "192.0.2.2"\n',
)


def values(role: str = "primary") -> dict[str, object]:
    return variables("dhcp1", role, "/etc/dhcp", PAIR)


def layers(base: dict[str, bytes], role: dict[str, bytes] | None = None) -> list[Layer]:
    """dhcp/ and roles/primary/ layers from {relative path: content}."""
    return [
        ("dhcp", [RepoFile(f"dhcp/{k}", v) for k, v in base.items()]),
        ("roles/primary", [RepoFile(f"roles/primary/{k}", v) for k, v in (role or {}).items()]),
    ]


def test_role_files_replace_base_files_and_add_new_ones() -> None:
    out = render(layers({"a.conf": b"base\n", "b.conf": b"b\n"}, {"a.conf": b"role\n"}), values())
    assert out.files == {"a.conf": b"role\n", "b.conf": b"b\n"}
    assert out.sources == {"a.conf": "roles/primary/a.conf", "b.conf": "dhcp/b.conf"}


def test_role_template_replaces_a_static_base_file() -> None:
    out = render(layers({"x.conf": b"static\n"}, {"x.conf.j2": b"{{ node.role }}\n"}), values())
    assert out.files == {"x.conf": b"primary\n"}


def test_templates_see_node_peer_pair_and_target() -> None:
    text = b"{{ node.name }} {{ node.address }} {{ peer.address }} {{ pair.failover.name }}"
    out = render(layers({"f.j2": text + b" {{ target }}\n"}), values())
    assert out.files["f"] == b"dhcp1 192.0.2.1 192.0.2.2 fo /etc/dhcp\n"
    out = render(layers({"f.j2": text + b"\n"}), variables("dhcp2", "secondary", "/x", PAIR))
    assert out.files["f"] == b"dhcp2 192.0.2.2 192.0.2.1 fo\n"


def test_block_lines_leave_no_blank_lines() -> None:
    text = b"a\n{% if node.role == 'primary' %}\n  p;\n{% endif %}\nb\n"
    assert render(layers({"f.j2": text}), values()).files["f"] == b"a\n  p;\nb\n"


def test_templates_include_other_templates_of_the_tree() -> None:
    base = {"main.j2": b'{% include "parts/x.j2" %}', "parts/x.j2": b"part {{ node.role }}\n"}
    assert render(layers(base), values()).files["main"] == b"part primary\n"


def test_standalone_node_has_an_empty_peer() -> None:
    v = variables("solo", "standalone", "/etc/dhcp", None)
    assert v["peer"] == {} and v["pair"] == {}


def test_binary_files_pass_through_untouched() -> None:
    blob = bytes(range(256))
    assert render(layers({"blob.bin": blob}), values()).files["blob.bin"] == blob


@pytest.mark.parametrize(
    ("base", "role", "file", "message"),
    [
        ({"a.j2": b"{{ nope }}"}, {}, "dhcp/a.j2:1", "'nope' is undefined"),
        ({"a.j2": b"ok\n{{ peer.nope }}"}, {}, "dhcp/a.j2:2", "has no attribute 'nope'"),
        ({"a.j2": b"{% if %}"}, {}, "dhcp/a.j2:1", "Expected an expression"),
        ({"a.j2": b"{{ ''.__class__.__mro__ }}"}, {}, "dhcp/a.j2:1", "SecurityError"),
        ({"a.j2": b"{{ cycler.__init__.__globals__ }}"}, {}, "dhcp/a.j2", "unsafe"),
        ({"a.j2": b"{% include '/etc/passwd' %}"}, {}, "dhcp/a.j2", "TemplateNotFound"),
        ({"a.j2": b"\xff\xfe"}, {}, "dhcp/a.j2", "not UTF-8"),
        ({"x": b"", "x.j2": b""}, {}, "dhcp/x.j2", "both dhcp/x and dhcp/x.j2"),
        ({"d": b"file"}, {"d/inner.conf": b""}, "roles/primary/d/inner.conf", "is a file"),
        ({}, {"bad\nname": b""}, "'roles/primary/bad\\nname'", "control character"),
        ({'q"uote': b""}, {}, 'dhcp/q"uote', "quote"),
    ],
)
def test_refusals_name_the_repo_file(
    base: dict[str, bytes], role: dict[str, bytes], file: str, message: str
) -> None:
    with pytest.raises(RenderError) as raised:
        render(layers(base, role), values())
    assert file in raised.value.message
    assert message in raised.value.message


def test_a_broken_pair_toml_names_its_line() -> None:
    with pytest.raises(RenderError, match=r"pair\.toml:2: .*"):
        variables("n", "primary", "/t", RepoFile("pair.toml", b"[failover]\nname = \n"))


@pytest.mark.parametrize("name", ["dhcp/ok.conf", "dhcp/sub dir/x.conf", "dhcp/ünï.conf"])
def test_ordinary_names_pass(name: str) -> None:
    check_name(name)


@pytest.mark.parametrize(
    "name", ["dhcp/../x", "dhcp//x", "dhcp/a\x7f", "dhcp/a\\b", "dhcp/\udcff.conf"]
)
def test_unsafe_names_are_refused(name: str) -> None:
    with pytest.raises(RenderError):
        check_name(name)
