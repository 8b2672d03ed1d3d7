#!/usr/bin/env bash
# Idempotent set-up for a Debian 12 machine: the apt packages dhcp-gitops needs
# and a virtualenv (.venv) with the project installed in editable mode.
#   scripts/setup.sh          what the agent and the demo need
#   scripts/setup.sh --test   also what the tests and the benchmarks need: sshd, the DHCP
#                             clients, the pipelines the benchmarks compare against (rsync,
#                             inotify, ansible-pull) and the test and bench extras
#   scripts/setup.sh --bench  the same (the test suite runs a smoke run of the benchmarks)
set -euo pipefail
cd "$(dirname "$0")/.."

# gnupg: git runs gpg to check signed commits (source.verify = "gpg").
# bubblewrap: dhcpd -t runs in bwrap's sandbox (docs/security.md).
packages=(git openssh-client isc-dhcp-server bubblewrap iproute2 util-linux python3 python3-venv ca-certificates gnupg)
extra="."
if [ "${1:-}" = "--test" ] || [ "${1:-}" = "--bench" ]; then
  # dhclient and perfdhcp (kea-admin) are the clients of the pair's end-to-end tests;
  # rsync and inotify-tools make the hand-made pipeline the benchmarks compare with;
  # patch applies what `dhcp-gitops diff` prints (tests/test_diff.py);
  # kea-dhcp4-server is the Kea backend's validator and server (a Kea node installs it
  # too: docs/kea.md).
  packages+=(openssh-server openssh-client openssl isc-dhcp-client kea-admin rsync inotify-tools patch
             kea-dhcp4-server)
  extra=".[test,bench]"
fi

as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  # Package scripts would start isc-dhcp-server, kea-dhcp4-server and sshd in this machine's own
  # network namespace; a policy-rc.d that denies every start keeps them down.
  guard=""
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    guard=/usr/sbin/policy-rc.d
    as_root sh -c 'printf "#!/bin/sh\nexit 101\n" > /usr/sbin/policy-rc.d && chmod 755 /usr/sbin/policy-rc.d'
    trap 'as_root rm -f "$guard"' EXIT
  fi
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# Debian's python3 (3.11 on Debian 12), not whatever else is first on PATH.
if [ ! -x .venv/bin/python ]; then
  /usr/bin/python3 -m venv .venv
fi
stamp=".venv/.dhcp-gitops-$(sha256sum pyproject.toml | cut -c1-16)-${extra//[^a-z]/}"
if [ ! -e "$stamp" ]; then
  echo "setup: installing the project into .venv ($extra)"
  .venv/bin/pip install -q -e "$extra"
  rm -f .venv/.dhcp-gitops-*
  touch "$stamp"
fi
