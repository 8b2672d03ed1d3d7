"""dhcp-gitops agent: keeps the config of a DHCP server in step with a git repository.

    agent/
    ├── cli.py          `dhcp-gitops COMMAND`: the one place errors meet the user
    ├── config/         agent.toml, checked whole at start (files.py: what its keys name)
    ├── errors.py       every error, as one drawn tree
    ├── process.py      the one place that runs subprocesses
    ├── tree.py         directory trees on disk: write durably, hash, remove
    ├── logs.py         the log: text or JSON lines, journald levels, throttled repeats
    ├── fault.py        named crash points for the SIGKILL campaign
    ├── status_text.py  the status document for people, and the exit status for scripts
    │
    ├── source/         the git source: bare mirror, the files of a commit
    │                   (snapshot), and the trust put in it (signatures, history)
    ├── engine/         the deploy engine: reconcile() and its steps (render,
    │                   stage, publish), records (state, history, releases),
    │                   the recovery of a run a crash cut short, status from disk
    ├── servers/        the seam: everything one DHCP server software needs;
    │   ├── base.py     Server and Language, the interface the rest calls
    │   ├── sandbox.py  where every validator runs: bubblewrap, the stage only
    │   ├── dhcpd/      ISC dhcpd, the first backend
    │   └── kea/        ISC Kea (kea-dhcp4 with the HA hook), the second
    ├── daemon/         the long-running agent: the reconcile loop, the peer
    │                   client and gate of a pair, notifications
    └── review/         commands that show a change before it goes live: validate,
                        plan, diff, init, import, demo, and their output formats

    webhook/            the HTTP surface (FastAPI): imports agent, never the reverse

Dependencies point one way: cli -> review, daemon -> engine -> source, servers;
every backend sits behind agent.servers.base, so the engine, the daemon and
the review commands never import a backend's modules. docs/design.md has the
invariants the code keeps.
"""

__version__ = "0.1.0"
