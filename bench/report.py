"""docs/benchmarks.{json,md,svg}: every figure, the tables, the latency distributions.

The JSON holds everything, raw samples included; the Markdown is written from
it (tables, the targets and whether they were met); the plot shows the
distributions behind the tables.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.stats import comparison, percentile

Doc = dict[str, Any]


# --- targets ----------------------------------------------------------------------


def targets(scenarios: Doc) -> list[Doc]:
    """The issue's targets, each with the figure measured and whether it was met."""
    found: list[Doc] = []
    push = scenarios.get("push")
    if push:
        ratios = push["ratios"]
        found.append(_target("push-to-live <= 1.5x the floor", ratios["agent/floor"], 1.5, "<="))
        if "ansible/agent" in ratios:
            found.append(
                _target(
                    "at least 10x faster than ansible-pull (facts gathered)",
                    ratios["ansible/agent"],
                    10,
                    ">=",
                )
            )
        if "ansible-nofacts/agent" in ratios:
            found.append(
                _target(
                    "at least 10x faster than ansible-pull (no facts)",
                    ratios["ansible-nofacts/agent"],
                    10,
                    ">=",
                )
            )
        found.append(_target("within 1.5x of the rsync pipeline", ratios["agent/rsync"], 1.5, "<="))
    scale = scenarios.get("scale")
    if scale and scale["sizes"]:
        largest = max(scale["sizes"], key=int)
        ratio = scale["sizes"][largest]["ratios"]["agent/(dhcpd -t + restart)"]
        name = f"{int(largest):,} hosts <= 1.5x (dhcpd -t + restart)"
        found.append(_target(name, ratio, 1.5, "<="))
    idle = scenarios.get("idle")
    if idle:
        rss = idle["rss_mb"]["agent"]["max"]
        found.append(_value("idle RSS <= 60 MB", rss, 60, "<=", f"{rss:.1f} MB"))
    storm = scenarios.get("storm")
    if storm:
        n = storm["reconciles"]
        found.append(_value("storm <= 3 reconciles", n, 3, "<=", str(n)))
    return found


def _target(name: str, ratio: Doc, limit: float, sense: str) -> Doc:
    value = float(ratio["paired"] if "paired" in ratio else ratio["p50"])
    return _value(name, value, limit, sense, f"{value:.2f}x")


def _value(name: str, value: float, limit: float, sense: str, shown: str) -> Doc:
    met = value <= limit if sense == "<=" else value >= limit
    return {"target": name, "value": value, "limit": limit, "shown": shown, "met": met}


# --- JSON ----------------------------------------------------------------------------


def write_json(path: Path, doc: Doc) -> None:
    path.write_text(json.dumps(_finite(doc), indent=1, sort_keys=False) + "\n")


def _finite(value: Any) -> Any:
    """NaN (an empty sample, a zero yardstick) is not JSON: null."""
    if isinstance(value, float):
        return None if math.isnan(value) or math.isinf(value) else round(value, 3)
    if isinstance(value, dict):
        return {str(k): _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


# --- Markdown ---------------------------------------------------------------------------


def ms(value: float | None) -> str:
    if value is None or math.isnan(value):
        return "-"
    return f"{value / 1000:.2f} s" if value >= 10_000 else f"{value:.0f} ms"


def times(ratio: Doc) -> str:
    value = ratio.get("paired", ratio.get("p50"))
    return "-" if value is None or math.isnan(value) else f"{value:.2f}x"


def table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def write_markdown(path: Path, doc: Doc, plot: str | None, intro: str) -> None:
    scenarios = doc["scenarios"]
    parts = [intro.format(**doc["meta"]), _targets_md(doc["targets"])]
    sections: list[tuple[str, Callable[[Doc], str]]] = [
        ("push", _push_md),
        ("scale", _scale_md),
        ("pair", _pair_md),
        ("storm", _storm_md),
        ("idle", _idle_md),
        ("watched", _watched_md),
    ]
    parts += [render(scenarios[name]) for name, render in sections if name in scenarios]
    if plot:
        parts.append(f"## Distributions\n\n![latency distributions]({plot})")
    parts += [FINDINGS, REMAINS]
    path.write_text("\n\n".join(parts) + "\n")


def _targets_md(found: list[Doc]) -> str:
    rows = [[t["target"], t["shown"], "met" if t["met"] else "**missed**"] for t in found]
    return "## Targets\n\n" + table(["target", "measured", ""], rows)


def _push_md(push: Doc) -> str:
    pipes = push["pipelines"]
    floor = pipes["floor"]["total_ms"]["samples"]
    rows = []
    for name, fig in pipes.items():
        total = fig["total_ms"]
        ratio = push["ratios"].get(f"{name}/agent") or push["ratios"].get(f"agent/{name}")
        rows.append(
            [
                name,
                ms(total["p50"]),
                ms(total["p95"]),
                ms(total["min"]),
                ms(total["max"]),
                times(comparison(total["samples"], floor)),
                _versus_agent(name, ratio),
            ]
        )
    text = f"## 1-3. Push to live: {push['config']['rounds']} changes, interleaved\n\n"
    text += PUSH_TEXT.format(**push["config"]) + "\n\n"
    text += table(["pipeline", "p50", "p95", "min", "max", "/ floor", "vs agent"], rows)
    text += "\n\nWhere the time goes (p50 of each step, ms):\n\n"
    step_rows = [
        [name, ", ".join(f"{s} {v['p50']:.0f}" for s, v in fig["steps_ms"].items())]
        for name, fig in pipes.items()
        if fig["steps_ms"]
    ]
    text += table(["pipeline", "steps"], step_rows)
    agent_extra = pipes["agent"]["extra_ms"]
    if "recorded_ms" in agent_extra:
        recorded = ms(agent_extra["recorded_ms"]["p50"])
        text += (
            f"\n\nThe agent records the deploy (/status shows it) {recorded} after the"
            " webhook (p50): once dhcpd has stayed up `health_timeout` (1 s here)."
        )
    return text


def _versus_agent(name: str, ratio: Doc | None) -> str:
    if name == "agent" or ratio is None:
        return ""
    if name.startswith("ansible"):
        return f"agent {times(ratio)} faster"
    return f"agent takes {times(ratio)}"


def _scale_md(scale: Doc) -> str:
    rows, profiles = [], []
    for hosts, fig in scale["sizes"].items():
        ys = fig["yardsticks_ms"]
        r = fig["ratios"]
        rows.append(
            [
                f"{int(hosts):,}",
                f"{fig['config_bytes'] / 1e6:.1f} MB",
                ms(percentile(ys["dhcpd -t"], 50)),
                ms(percentile(ys["dhcpd -t + restart"], 50)),
                ms(fig["pipelines"]["floor"]["total_ms"]["p50"]),
                ms(fig["pipelines"]["agent"]["total_ms"]["p50"]),
                times(r["agent/(dhcpd -t)"]),
                times(r["agent/(dhcpd -t + restart)"]),
                times(r["agent/floor"]),
                f"{fig['agent_memory_kb'].get('VmHWM', 0) / 1024:.0f} MB",
                f"{fig['dhcpd_memory_kb'].get('VmRSS', 0) / 1024:.0f} MB",
            ]
        )
        if "profile" in fig:
            profiles.append(
                f"<details><summary>profile of one reconcile, {hosts} hosts"
                f"</summary>\n\n```\n{fig['profile']['text']}\n```\n</details>"
            )
    header = [
        "hosts",
        "config",
        "dhcpd -t",
        "dhcpd -t + restart",
        "floor",
        "agent",
        "agent / dhcpd -t",
        "agent / (dhcpd -t + restart)",
        "agent / floor",
        "agent peak RSS",
        "dhcpd RSS",
    ]
    text = f"## 4. Scale: static host declarations, {scale['config']['rounds']} changes each\n\n"
    text += SCALE_TEXT + "\n\n" + table(header, rows)
    return "\n\n".join([text, *profiles])


def _pair_md(pair: Doc) -> str:
    rows = []
    for key, fig in pair["agent_ms"].items():
        hand = pair["floor_ms"].get(key)
        ratio = pair["ratios"].get(key)
        rows.append(
            [
                key,
                ms(fig["p50"]),
                ms(fig["p95"]),
                ms(hand["p50"]) if hand else "",
                ms(hand["p95"]) if hand else "",
                times(ratio) if ratio else "",
            ]
        )
    text = f"## 5. The failover pair: {pair['config']['rounds']} pushes\n\n" + PAIR_TEXT
    return (
        text
        + "\n\n"
        + table(
            ["from the push to", "agents p50", "p95", "by hand p50", "p95", "agents / by hand"],
            rows,
        )
    )


def _storm_md(storm: Doc) -> str:
    c, r, idle = storm["config"], storm["response_ms"], storm["idle_ping_ms"]
    rows = [
        [
            "response time p50 / p99",
            f"{r['p50']:.1f} / {r['p99']:.1f} ms",
            f"idle agent (signed pings): {idle['p50']:.1f} / {idle['p99']:.1f} ms",
        ],
        ["answers", ", ".join(f"{n}x {code}" for code, n in storm["codes"].items()), ""],
        [
            "reconciles",
            str(storm["reconciles"]),
            ", ".join(f"{n} {res}" for res, n in storm["results"].items()),
        ],
        [
            "newest commit live at the end",
            "yes" if storm["newest_live"] else "**no**",
            f"{ms(storm['newest_live_after_last_push_ms'])} after its push",
        ],
    ]
    text = f"## 6. Webhook storm: {c['deliveries']} deliveries in {c['seconds']:g} s\n\n"
    return text + STORM_TEXT.format(**c) + "\n\n" + table(["", "storm", "for comparison"], rows)


def _idle_md(idle: Doc) -> str:
    c = idle["config"]
    rows = [
        [
            name,
            f"{fig['p50']:.1f} MB",
            f"{fig['max']:.1f} MB",
            f"{idle['cpu_percent'][name]['with_children']:.2f} %",
        ]
        for name, fig in idle["rss_mb"].items()
    ]
    text = f"## 7. Idle: {c['seconds']:g} s, polling every {c['poll_interval']:g} s, no change\n\n"
    text += table(["process", "RSS p50", "RSS max", "CPU (with children)"], rows)
    commands = ", ".join(f"{n}x {cmd}" for cmd, n in sorted(idle["git_commands"].items()))
    fetched = "**a fetch happened**" if idle["fetched"] else "no fetch"
    text += f"\n\ngit commands the agent ran: {commands or 'none'}; {fetched}; "
    text += f"{idle['reconciles']} reconciles."
    poll = idle.get("ansible-pull -o, nothing new")
    if poll:
        share = 100 * poll["cpu_s"] / c["poll_interval"]
        text += (
            f" One `ansible-pull --only-if-changed` with nothing new takes {poll['wall_s']:.1f} s"
            f" and {poll['cpu_s']:.1f} CPU-s: polling with it every {c['poll_interval']:g} s"
            f" would keep {share:.0f} % of a core busy."
        )
    return text


def _watched_md(watched: Doc) -> str:
    c, lat = watched["config"], watched["latency_ms"]
    rows = [[name, ms(fig["p50"]), ms(fig["p95"])] for name, fig in lat.items()]
    ratios = ", ".join(f"{e} {times(r)}" for e, r in watched["ratios"].items())
    text = (
        f"## The cost of being watched: /status and /metrics beside a lease file of "
        f"{c['leases']:,} leases ({c['lease_file_bytes'] / 1e6:.1f} MB)\n\n"
    )
    text += WATCHED_TEXT + "\n\n" + table(["agent, endpoint", "p50", "p95"], rows)
    return text + f"\n\nLarge lease file / small one: {ratios}."


PUSH_TEXT = """\
Each round commits one more host to a config of {hosts} hosts and pushes it; then
each pipeline deploys that commit on its own server (a network namespace with a
real dhcpd), the order rotating from round to round. The clock starts at each
pipeline's trigger and stops when dhcpd serves the new config: its pid file names
a new, running dhcpd, whose config holds the new host (dhcpd writes the pid file
after opening its sockets). Ratios are medians of round-by-round ratios; the
rounds follow {warmup_rounds} warm-up round(s), dropped.

- **floor**: what any correct deploy must do, by hand, each step timed alone: `git
  fetch`, write the files (fsync'd), `dhcpd -t`, exchange the folders
  (renameat2), restart (SIGTERM, wait, start: `bench/scripts/restart-dhcpd.sh`).
  Its dhcpd, for `-t` as for serving, runs through the same wrapper as the agent's
  (`ip netns exec` into the server's namespace, about 2.5 ms).
- **agent**: a signed GitHub push webhook to `dhcp-gitops agent`, dhcpd supervised.
- **rsync**: `git pull` into a checkout watched by inotifywait, then `rsync -a --delete
  --exclude dhcpd.failover` into the live folder and the same restart script;
  no validation, no atomic swap (`bench/scripts/rsync-watch.sh`).
- **ansible**: `ansible-pull` of the repo: `template` with `validate: dhcpd -t -cf %s`,
  a handler running the same restart script (`bench/ansible/playbook.yml`);
  facts gathered as by default, and once more without (`ansible-nofacts`)."""

SCALE_TEXT = """\
One dhcpd.conf with that many `host` declarations (fixed addresses in a relayed
10.16.0.0/16). The yardsticks are the floor's own steps on the same config in
the same rounds: `dhcpd -t` alone, and `dhcpd -t` plus the restart; the floor
adds the fetch of the change and the write of the files. Peak RSS is the
agent's VmHWM after the rounds (one agent per size)."""

PAIR_TEXT = """\
The pair's harness (lab/pair.py): primary and secondary in namespaces of their
own on one bridge, real dhcpd talking failover, each agent naming the other as its
peer, `failover_timeout` set, `health_timeout` 1 s. The forge delivers the push to
both; the secondary restarts only once the primary has recorded it. "By hand" is
the same rolling restart done carefully in the same lab after the agents are
stopped: restart the primary, wait for failover normal and `health_timeout`,
restart the secondary, wait for failover normal (blocks, not interleaved)."""

STORM_TEXT = """\
A burst of {commits} commits pushed in the first second, and a steady stream of
signed GitHub push deliveries ({senders} senders on a fixed schedule), each with
its own delivery id and naming the newest commit pushed so far. Response times
are compared with signed pings to the same agent at rest."""

WATCHED_TEXT = """\
Both endpoints report dhcpd's failover state from its lease file. Two agents, one
with a small lease file and one with a large one; before each request a lease is
appended to both, as a busy dhcpd does."""

FINDINGS = """\
## What these measurements changed in the agent

Each figure below was measured with this harness before and after the change.

- **50,000 hosts: 2.1x -> 1.2x (dhcpd -t + restart).** The profile of one
  reconcile showed 1.4 of its 1.8 s in `validate.outside_includes`: the check
  that no include leaves the live folder tokenized all 4.2 MB in Python before
  `dhcpd -t` ran. A file without the word "include" is no longer tokenized
  (`agent/servers/dhcpd/sandbox.py`). The same look found a hole: dhcpd reads keywords in
  any case, so `INCLUDE "/etc/shadow";` passed the check; it is caught now.
- **Webhook storm: 101 reconciles -> 3.** Triggers collapsed only while a
  reconcile ran; once the newest commit was live, each further delivery of it
  ran a reconcile of its own that found it current (99 of them). A push naming
  the commit being deployed or the one last tried now only asks the remote
  (`ls-remote`), as the poll timer does, and reconciles only if the branch moved
  on (`agent/daemon/loop.py`, `webhook/app.py`).
- **/status and /metrics beside a 14 MB lease file: 55x and 67x -> 1x.** Both
  read the whole lease file on every request for the failover state (110 ms).
  `failover.read` now keeps what it read per file and reads only what dhcpd
  appended since; a rewrite (new inode) or a shorter file is read again
  (`agent/servers/dhcpd/failover.py`).
- **Failover pair: 1.5x -> 1.1x the same rolling restart by hand.** The
  secondary, waiting for the primary to record the commit, looked at its
  /status every 0.5 s; now every 0.1 s (`agent/daemon/peer.py`)."""

REMAINS = """\
## What remains, and why

- **Push to live, a few ms over the floor**: validation runs `dhcpd -t` in a
  private mount namespace (unshare and a bind mount, about 3.5 ms) so that
  includes read the staged files at their live paths; the floor's `dhcpd -t`
  reads the stage in place, which is only right for a config without includes.
  The fetch also checks that the mirror can read the commit's trees (`git
  rev-list --objects`, a few ms; a damaged mirror is cloned again). The
  supervisor's stop waits for dhcpd with `Popen.wait(timeout)`, which polls
  with growing sleeps (up to 8 ms late); a pidfd would wake at once
  (`agent/servers/dhcpd/restart.py`, being reworked while this was measured).
- **Recorded vs live**: /status says "deployed" `health_timeout` after dhcpd
  serves (1 s here, 3 s by default): the agent's own check that dhcpd stays up.
- **Small configs against `dhcpd -t` + restart**: at 1,000 and 10,000 hosts
  `dhcpd -t` and the restart take tens of ms, so the fetch and the fixed costs
  above weigh more (1.5-1.6x, while the agent stays within 1.2x of the floor);
  the ratio falls as configs grow (50,000 hosts: 1.3x, the agent level with
  the floor).
- **Peak RSS grows with the config**: one reconcile of the 4.2 MB config of
  50,000 hosts allocates 13 MB at its peak (the file read from git, the
  rendered tree, the text scanned for includes; tracemalloc), on top of the
  56 MB the service (FastAPI, pydantic, GitPython) holds at rest. The idle
  target is met with little margin.
- **Pairs at scale, not measured here**: while the primary waits for failover
  normal, each check parses the whole live config for its failover peers
  (`loop._failover_normal`): 1.6 s of CPU per check at 50,000 hosts."""
