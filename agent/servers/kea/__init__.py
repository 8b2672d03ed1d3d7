"""Kea DHCPv4: kea-dhcp4.conf's language, `kea-dhcp4 -t` in the sandbox, HA pair
rules, reloads over the control socket.

    kea/
    ├── server.py     Server and Language: the seam's Kea side
    ├── jsonc.py      Kea's JSON: comments, includes, the line of every key
    ├── conf.py       kea-dhcp4.conf read as far as the pair checks need
    ├── sandbox.py    the include check, then the real `kea-dhcp4 -t` on the staged bytes
    ├── pair.py       the rules an HA pair keeps, which `kea-dhcp4 -t` cannot see
    ├── dangers.py    changes that pass every check but hurt a running pair (plan)
    ├── control.py    the control socket: one JSON command, one answer
    └── restart.py    reload, supervise, command or none; health
"""

from agent.servers.kea.server import Language, Server

__all__ = ["Language", "Server"]
