"""The failover file as a Jinja template: the text around the declaration kept
verbatim, the declaration rendered from pair.toml for either role.

For `dhcp-gitops import`; verbatim() also keeps a server's own *.j2 file as it is.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from agent.servers.dhcpd.lift import PRIMARY_KEYS
from agent.servers.dhcpd.pair import ROLES

TEMPLATE_NOTE = """\
{#
Imported by dhcp-gitops import. The text around the failover declaration is the
server's own, kept verbatim in raw blocks; the declaration is rendered from
pair.toml for either role (node: this server's table, peer: the other's).
#}
"""


def block_template(pair: Mapping[str, Mapping[str, Any]], indent: str, primary_known: bool) -> str:
    """Jinja that renders either role's declaration from pair.toml (no newline at the end)."""
    i = indent
    return "\n".join([
        'failover peer "{{ pair.failover.name }}" {',
        '{% if node.role == "primary" %}',
        f"{i}primary;",
        *_primary_lines(pair["failover"], i, primary_known),
        "{% else %}",
        f"{i}secondary;",
        "{% endif %}",
        *_setting(pair, "address", f"{i}address", "node"),
        *_setting(pair, "port", f"{i}port", "node"),
        *_setting(pair, "address", f"{i}peer address", "peer"),
        *_setting(pair, "port", f"{i}peer port", "peer"),
        *_setting(pair, "max_response_delay", f"{i}max-response-delay", "node"),
        *_setting(pair, "max_unacked_updates", f"{i}max-unacked-updates", "node"),
        *_setting(pair, "load_balance_max_seconds", f"{i}load balance max seconds", "node"),
        *_statements(pair, i),
        "}",
    ])  # fmt: skip


def _primary_lines(failover: Mapping[str, Any], i: str, primary_known: bool) -> list[str]:
    # Without the primary's copy its values are unknown: the lines stay, so that
    # rendering the primary fails (naming the key) until pair.toml has them.
    keys = [k for k in PRIMARY_KEYS if k in failover] if primary_known else ["mclt", "split"]
    return [f"{i}{key} {_expr('pair.failover.' + key)};" for key in keys]


def _setting(pair: Mapping[str, Mapping[str, Any]], key: str, words: str, whose: str) -> list[str]:
    """`words VALUE;` from [failover], or from this node's (or the peer's) own table."""
    if key in pair["failover"]:
        return [f"{words} {_expr('pair.failover.' + key)};"]
    held = [role for role in ROLES if key in pair[role]]
    line = f"{words} {_expr(f'{whose}.{key}')};"
    if len(held) == 1:  # one server says it, the other not: render it where it is said
        return [f"{{% if {whose}.{key} is defined %}}", line, "{% endif %}"]
    return [line] if held else []


def _statements(pair: Mapping[str, Mapping[str, Any]], i: str) -> list[str]:
    if "statements" in pair["failover"]:
        listed = "pair.failover.statements"
    elif "statements" in pair["primary"]:
        listed = "node.statements"
    else:
        return []
    return [f"{{% for statement in {listed} %}}", f"{i}{_expr('statement')};", "{% endfor %}"]


def _expr(expression: str) -> str:
    return "{{ " + expression + " }}"


def failover_template(text: str, span: tuple[int, int], block: str) -> str:
    start, end = span
    return TEMPLATE_NOTE + verbatim(text[:start]) + block + verbatim(text[end:])


# A raw block cannot hold `{%` (`{% endraw %}` would end it), and Jinja turns
# every carriage return into a newline: both go out as string expressions.
_UNRAW = re.compile(r"(\{%|\r)")


def verbatim(text: str) -> str:
    """Jinja source that renders to exactly `text` in render's environment."""
    parts = _UNRAW.split(text)
    return "".join(_literal(p) if n % 2 else _raw(p) for n, p in enumerate(parts))


def _raw(text: str) -> str:
    if not text.strip():
        return text  # blanks and newlines: nothing Jinja reads, and no tag follows them
    # lstrip_blocks would strip blanks that open the line of `{% endraw %}`.
    blanks = re.search(r"(?<=\n)[^\S\n]+\Z", text)
    cut = blanks.start() if blanks else len(text)
    return f"{{% raw %}}{text[:cut]}{{% endraw %}}" + (_literal(text[cut:]) if text[cut:] else "")


def _literal(text: str) -> str:
    return _expr(json.dumps(text))  # JSON escapes are Jinja string escapes too


def block_indent(text: str, span: tuple[int, int]) -> str:
    """The indentation of the declaration's first inner line, for a familiar look."""
    lines = text[span[0] : span[1]].splitlines()
    found = re.match(r"[ \t]+", lines[1]) if len(lines) > 2 else None
    return found.group() if found else "  "
