"""Every error the agent raises on purpose, as one tree.

    DhcpGitopsError                 base; the CLI prints .message and exits .exit_code (1)
    ├── ConfigError                 agent.toml is wrong (exit 2): names the file and key
    ├── UsageError                  the command line asks for something impossible (exit 2)
    ├── LockBusy                    another reconcile holds the state dir
    ├── CommandError                a subprocess failed: argv, exit code, stdout, stderr
    ├── OmapiError                  dhcpd's OMAPI gave no failover state (not up yet, no
    │                               omapi-port, wrong key, unknown peer)
    ├── CredentialError             [source] token_file cannot be used (named, never shown)
    └── StepError                   a reconcile step refused or failed; .step names it
        ├── FetchError              the remote or the mirror
        │   └── RemoteFault         the remote's own answer (no such branch, none in time):
        │                           the mirror is not at fault, so it is not cloned again
        ├── TrustError              the commit is unsigned, signed by an unknown key, or does
        │                           not descend from the deployed one ([source] verify)
        ├── RenderError             the repo content (names the repo file)
        │   └── HostFilesError      the target holds files the repo does not cover, which
        │                           the deploy would delete ([deploy] host_files)
        ├── ValidateError           dhcpd -t or our checks refused: .problems
        │   └── PolicyError         a statement this node's [policy] allow does not
        │                           name (execute(), a file dhcpd would write)
        ├── SandboxError            this machine cannot run dhcpd -t in its sandbox (no
        │                           bwrap, no user namespaces, no dhcpd): failed, retried
        ├── PublishError            the exchange of the staged tree and the target
        ├── PeerError               the peer kept this node from restarting (retried)
        │   └── PeerRefused         the primary refused or rolled back this commit
        ├── RestartError            restart or health check failed
        └── RolledBack              verify failed; the previous tree is live again

Messages are for the user: they say what is live now, never a secret.

Three exceptions stay where they are raised and caught, and never reach a user:
agent.engine.forkserver.Unavailable (spawn a renderer instead),
agent.servers.kea.jsonc.ParseError (becomes a Problem) and the renderer's
_CpuLimit (SIGXCPU in a template's frame).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Problem:
    """One finding, located: dhcpd's `FILE line N: message` or one of ours."""

    file: str
    line: int | None
    message: str
    context: tuple[str, ...] = ()
    source: str | None = None  # the repo file the live file was rendered from

    def __str__(self) -> str:
        where = self.source or self.file
        return f"{where}:{self.line}: {self.message}" if self.line else f"{where}: {self.message}"


class DhcpGitopsError(Exception):
    exit_code = 1

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class ConfigError(DhcpGitopsError):
    exit_code = 2


class UsageError(DhcpGitopsError):
    exit_code = 2


class LockBusy(DhcpGitopsError):
    pass


class CommandError(DhcpGitopsError):
    def __init__(self, argv: list[str], returncode: int, stdout: str, stderr: str) -> None:
        last = (stderr.strip() or stdout.strip() or "no output").splitlines()[-1]
        super().__init__(f"{argv[0]} exited with {returncode}: {last}")
        self.argv = argv
        self.returncode = returncode
        self.stdout = stdout
        self.stderr = stderr


class OmapiError(DhcpGitopsError):
    """OMAPI gave no failover state: dhcpd not listening (yet), unknown peer, bad key."""


class CredentialError(DhcpGitopsError):
    """The token file cannot be used; the message names the file, never its content."""


class StepError(DhcpGitopsError):
    step = "reconcile"

    def __init__(
        self, message: str, problems: list[Problem] | None = None, step: str | None = None
    ) -> None:
        super().__init__(message)
        self.problems = problems or []
        if step:
            self.step = step


class FetchError(StepError):
    step = "fetch"


class RemoteFault(FetchError):
    """The remote's own answer (no such branch, none in time): the mirror is not at fault."""


class TrustError(StepError):
    """A refusal by the [source] verify or require_descendant policy (not a failure to check)."""

    step = "trust"


class RenderError(StepError):
    step = "render"

    def __init__(self, file: str, message: str, line: int | None = None) -> None:
        problem = Problem(file=file, line=line, message=message, source=file)
        super().__init__(str(problem), [problem])


class HostFilesError(RenderError):
    """The new tree would drop live files neither the repo nor preserve covers."""

    def __init__(self, message: str) -> None:
        StepError.__init__(self, message)


class ValidateError(StepError):
    step = "validate"


class PolicyError(ValidateError):
    """The config reaches beyond DHCP where the node has not consented: a verdict of its
    own, so a reader tells it apart from a config the server rejects."""


class SandboxError(StepError):
    """The validator cannot run here, whatever the commit: not the commit's fault."""

    step = "validate"


class PublishError(StepError):
    step = "publish"


class PeerError(StepError):
    step = "peer"


class PeerRefused(PeerError):
    pass


class RestartError(StepError):
    step = "restart"


class RolledBack(StepError):
    step = "verify"
