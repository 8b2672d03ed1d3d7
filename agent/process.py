"""The one place that runs subprocesses (git runs through GitPython)."""

from __future__ import annotations

import logging
import os
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from agent.errors import CommandError

log = logging.getLogger(__name__)

NOT_FOUND = 127  # CommandError.returncode when argv[0] does not exist, as a shell says
TIMED_OUT = -9  # CommandError.returncode when the command ran out of time (it was killed)


@dataclass(frozen=True)
class Completed:
    argv: list[str]
    returncode: int
    stdout: str
    stderr: str


def run(
    argv: Sequence[str],
    *,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
    timeout: float = 120,
    check: bool = True,
    input: str | None = None,
) -> Completed:
    """Run argv to completion; raise CommandError on a non-zero exit when check is set.

    input goes to the command's stdin (a script with a secret in it stays out of argv);
    without it the command gets no stdin at all.
    """
    args = [str(a) for a in argv]
    log.debug("run %s", args)
    full_env = {**os.environ, **env} if env else None
    try:
        done = subprocess.run(
            args,
            cwd=cwd,
            env=full_env,
            capture_output=True,
            text=True,
            errors="replace",
            timeout=timeout,
            input=input,
            stdin=None if input is not None else subprocess.DEVNULL,
            check=False,
        )
    except FileNotFoundError as err:
        raise CommandError(args, NOT_FOUND, "", f"{args[0]}: not found") from err
    except subprocess.TimeoutExpired as err:
        raise CommandError(args, TIMED_OUT, "", f"timed out after {timeout:g} s") from err
    result = Completed(args, done.returncode, done.stdout, done.stderr)
    if check and done.returncode != 0:
        raise CommandError(args, done.returncode, done.stdout, done.stderr)
    return result
