"""ISC dhcpd: dhcpd.conf's language, `dhcpd -t` in the sandbox, failover pair rules,
restarts, the lease file and OMAPI.

    dhcpd/
    ├── server.py     Server and Language: the seam's dhcpd side
    ├── lexer.py      dhcpd.conf's tokens, strings read exactly as conflex.c reads them
    ├── conf.py       dhcpd.conf parsed as far as the pair checks need
    ├── sandbox.py    the include check, then the real `dhcpd -t` on the staged bytes
    ├── pair.py       the rules a failover pair keeps, which `dhcpd -t` cannot see
    ├── dangers.py    changes that pass every check but hurt a running pair (plan)
    ├── restart.py    supervise, command or none; health
    ├── orphan.py     a dhcpd a previous agent left running: found, adopted or stopped
    ├── output.py     dhcpd's output: a FIFO that outlives the agent, read into its log
    ├── leases.py     the lease file kept across a failed restart
    ├── failover.py   failover state as dhcpd records it in the lease file
    ├── omapi.py      failover state now, over OMAPI (omshell)
    ├── importer.py   `dhcp-gitops import`: the seam's dhcpd side, of
    ├── lift.py         the failover declaration found and lifted into pair.toml,
    ├── template.py     the failover file as a template,
    └── proof.py        and the repo rendered back, compared and run by `dhcpd -t`
"""

from agent.servers.dhcpd.importer import Importer
from agent.servers.dhcpd.server import Language, Server

__all__ = ["Importer", "Language", "Server"]
