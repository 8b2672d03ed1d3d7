"""Prometheus metrics of one agent, in a registry of its own."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info, generate_latest

from agent.engine.document import PeerSection
from agent.engine.state import Attempt
from agent.servers.base import PairState

DURATION_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.deployed = Info("dhcp_gitops_deployed", "The commit live on this node", registry=r)
        self.last_success = Gauge(
            "dhcp_gitops_last_success_timestamp_seconds",
            "When a reconcile last ended deployed or current (Unix time)",
            registry=r,
        )
        self.duration = Histogram(
            "dhcp_gitops_reconcile_duration_seconds",
            "Time one reconcile took",
            buckets=DURATION_BUCKETS,
            registry=r,
        )
        self.results = Counter(
            "dhcp_gitops_reconciles", "Reconciles by result", ["result"], registry=r
        )
        self.failures = Counter(
            "dhcp_gitops_failures", "Refused, failed or rolled back reconciles by step",
            ["step"], registry=r,
        )  # fmt: skip
        self.webhooks = Counter(
            "dhcp_gitops_webhooks", "Webhook deliveries by provider and outcome",
            ["provider", "outcome"], registry=r,
        )  # fmt: skip
        self.dhcpd_up = Gauge(
            "dhcp_gitops_dhcpd_up", "1 when the supervised dhcpd runs", registry=r
        )
        self.drift = Gauge(
            "dhcp_gitops_drift", "1 when the live tree is not the deployed one", registry=r
        )
        self.peer_reachable = Gauge(
            "dhcp_gitops_peer_reachable", "1 when the peer agent answers", registry=r
        )
        self.peer_same_commit = Gauge(
            "dhcp_gitops_peer_same_commit", "1 when the peer runs our commit", registry=r
        )
        self.peer_skew = Gauge(
            "dhcp_gitops_peer_clock_skew_seconds",
            "The peer's clock minus ours (dhcpd refuses failover at 60 s)",
            registry=r,
        )
        self.failover = Gauge(
            "dhcp_gitops_failover_state", "1 for each failover peer's current state",
            ["peer", "side", "state"], registry=r,
        )  # fmt: skip

    def observe_pair(self, peer: PeerSection | None, states: list[PairState]) -> None:
        if peer is not None:
            self.peer_reachable.set(1 if peer.reachable else 0)
            self.peer_same_commit.set(1 if peer.same_commit else 0)
            if peer.clock_skew_seconds is not None:
                self.peer_skew.set(peer.clock_skew_seconds)
        self.failover.clear()  # a state left behind must not read as still held
        for s in states:
            self.failover.labels(s.peer, "mine", s.mine).set(1)
            self.failover.labels(s.peer, "partner", s.partner).set(1)

    def observe(self, attempt: Attempt, deployed_sha: str | None) -> None:
        result = attempt.result or "failed"
        self.results.labels(result).inc()
        self.duration.observe(sum(attempt.timings.values()))
        if result in ("deployed", "current"):
            self.last_success.set_to_current_time()
        else:
            self.failures.labels(attempt.step or "reconcile").inc()
        if deployed_sha:
            self.deployed.info({"sha": deployed_sha})

    def render(self) -> bytes:
        return generate_latest(self.registry)
