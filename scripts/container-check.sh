#!/usr/bin/env bash
# Proof that the Dockerfile builds and its image runs, on a fresh Debian 12, as root:
#   scripts/container-check.sh
# 1. installs podman, runc and debootstrap (apt; package scripts may not start services)
# 2. if the Dockerfile's base image is not in podman's local storage, makes it
#    with debootstrap from this machine's own Debian mirror and imports it:
#    no image registry is needed, nothing is pulled
# 3. builds the image (chroot isolation, host network: pip and apt run as on this host)
# 4. runs `dhcp-gitops --version` and `dhcpd --version` in it, with no network at
#    all, then two real deploys of the container's /etc/dhcp from the demo pair's
#    repo (git, dhcpd -t in its bubblewrap sandbox, the atomic swap)
# 5. prints the image size and the time of each phase
# Podman's default network is never used (it would create a bridge on this host).
# Exits non-zero on any failure. IMAGE=name:tag overrides dhcp-gitops:dev.
set -euo pipefail
cd "$(dirname "$0")/.."

image=${IMAGE:-dhcp-gitops:dev}
# The one base image the Dockerfile builds FROM (stages named with AS are not images).
base=$(awk 'toupper($1) == "FROM" { print $2 }' Dockerfile | sort -u)
if [ "$(printf '%s\n' "$base" | wc -l)" -ne 1 ] || [ -z "$base" ]; then
  echo "container-check: expected one base image in Dockerfile, found: $base" >&2
  exit 1
fi

[ "$(id -u)" -eq 0 ] || { echo "container-check: run as root" >&2; exit 1; }

cleanup_cmds=()
cleanup() {
  local i
  for ((i = ${#cleanup_cmds[@]} - 1; i >= 0; i--)); do eval "${cleanup_cmds[i]}" || true; done
}
trap cleanup EXIT

timings=()
phase() { phase_name=$1; phase_t0=$EPOCHREALTIME; echo "== $phase_name"; }
phase_done() {
  local s
  s=$(awk -v a="$phase_t0" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }')
  timings+=("$(printf '%-12s %7s s' "$phase_name" "$s")")
}
start=$EPOCHREALTIME

# The first http(s) URI of this machine's apt sources that serves suite $1
# (deb822 *.sources first, then one-line sources.list files). Read at run time:
# no mirror is named in this repository.
mirror_for() {
  local suite=$1 f
  {
    for f in /etc/apt/sources.list.d/*.sources; do
      [ -e "$f" ] || continue
      awk -v s="$suite" '
        function flush() { if (ok && uri != "" && !off) print uri; ok = 0; off = 0; uri = "" }
        /^[ \t]*#/ { next }
        /^[ \t]*$/ { flush(); next }
        tolower($1) == "uris:" { uri = $2 }
        tolower($1) == "suites:" { for (i = 2; i <= NF; i++) if ($i == s) ok = 1 }
        tolower($1) == "enabled:" && tolower($2) == "no" { off = 1 }
        END { flush() }' "$f"
    done
    for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
      [ -e "$f" ] || continue
      awk -v s="$suite" '$1 == "deb" {
        i = 2
        if ($i ~ /^\[/) { while (i < NF && $i !~ /\]$/) i++; i++ }
        if ($(i + 1) == s) print $i }' "$f"
    done
  } | grep -E '^https?://' | head -n1
}

phase install
need=()
for p in podman runc debootstrap ca-certificates; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || need+=("$p")
done
if [ "${#need[@]}" -gt 0 ]; then
  echo "installing ${need[*]}"
  # As scripts/setup.sh: a policy-rc.d that denies every start keeps package
  # scripts from starting services on this machine while they install.
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
    chmod 755 /usr/sbin/policy-rc.d
    cleanup_cmds+=("rm -f /usr/sbin/policy-rc.d")
  fi
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
podman --version
phase_done

phase base-image
if podman image exists "$base"; then
  echo "$base is in local storage"
else
  mirror=$(mirror_for bookworm)
  security=$(mirror_for bookworm-security)
  if [ -z "$mirror" ]; then
    echo "container-check: no http(s) apt source for bookworm in /etc/apt" >&2
    exit 1
  fi
  rootfs=$(mktemp -d /var/tmp/dhcp-gitops-base.XXXXXX)
  cleanup_cmds+=("rm -rf --one-file-system '$rootfs' '$rootfs.log'")
  echo "debootstrap --variant=minbase bookworm from this machine's mirror"
  debootstrap --variant=minbase bookworm "$rootfs" "$mirror" >"$rootfs.log" 2>&1 \
    || { tail -n 30 "$rootfs.log" >&2; rm -f "$rootfs.log"; exit 1; }
  rm -f "$rootfs.log"
  # Like Debian's own slim image: apt sources in deb822 with updates and
  # security, no docs, man pages or translations (dpkg skips them from now on),
  # no apt lists or caches, and none of this host's identity.
  rm -f "$rootfs/etc/apt/sources.list" "$rootfs/etc/hostname" "$rootfs/etc/resolv.conf"
  {
    printf 'Types: deb\nURIs: %s\nSuites: bookworm bookworm-updates\nComponents: main\n' "$mirror"
    printf 'Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n'
    if [ -n "$security" ]; then
      printf '\nTypes: deb\nURIs: %s\nSuites: bookworm-security\nComponents: main\n' "$security"
      printf 'Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n'
    fi
  } > "$rootfs/etc/apt/sources.list.d/debian.sources"
  cat > "$rootfs/etc/dpkg/dpkg.cfg.d/slim" <<'EOF'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/groff/*
path-exclude /usr/share/lintian/*
path-exclude /usr/share/locale/*
path-include /usr/share/locale/locale.alias
EOF
  find "$rootfs/usr/share/doc" -mindepth 1 -not -name copyright -not -type d -delete
  rm -rf "$rootfs"/usr/share/{man,info,groff,lintian}/* "$rootfs"/var/lib/apt/lists/* \
    "$rootfs"/var/cache/apt/*.bin "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/log/*.log
  find "$rootfs/usr/share/locale" -mindepth 1 -maxdepth 1 -not -name locale.alias -exec rm -rf {} +
  tar --numeric-owner -C "$rootfs" -c . | podman import --change 'CMD ["bash"]' - "$base" >/dev/null
  rm -rf --one-file-system "$rootfs"
  echo "imported $base"
fi
podman image exists "$base"
phase_done

phase build
# pip in the build stage reaches PyPI as pip does on this host: its CA bundle
# (a TLS-intercepting proxy's CA may be in it) and its pip.conf go in as build
# secrets, mounted for that one RUN and in no layer; index settings from PIP_*
# variables go in as build args of the build stage, which the image does not keep.
build_opts=()
pip_conf=${PIP_CONFIG_FILE:-/etc/pip.conf}
if [ -s "$pip_conf" ]; then
  build_opts+=(--secret "id=pip_conf,src=$pip_conf")
fi
pip_ca=${PIP_CERT:-}
if [ -z "$pip_ca" ] && [ -s "$pip_conf" ]; then
  pip_ca=$(sed -n 's/^[[:space:]]*cert[[:space:]]*=[[:space:]]*//p' "$pip_conf" | tail -n1)
fi
pip_ca=${pip_ca:-/etc/ssl/certs/ca-certificates.crt}
if [ -s "$pip_ca" ]; then
  build_opts+=(--secret "id=pip_ca,src=$pip_ca")
fi
for v in PIP_INDEX_URL PIP_EXTRA_INDEX_URL PIP_TRUSTED_HOST; do
  if [ -n "${!v:-}" ]; then build_opts+=(--build-arg "$v=${!v}"); fi
done
podman build --isolation chroot --network host --pull=never --format docker \
  "${build_opts[@]}" -t "$image" .
phase_done

phase run
# No network at all; no healthcheck timer (podman would ask systemd for one).
run=(podman run --rm --runtime runc --network none --no-healthcheck)
# Podman raises a root container's open-files limit to 1048576. Where this
# host's hard limit is lower and the runtime lacks CAP_SYS_RESOURCE (a
# sandboxed VM), runc cannot: use the host's limit. An explicit --ulimit
# replaces podman's default list, so its process limit (32768) is named too.
nofile=$(ulimit -Hn)
nproc=$(ulimit -Hu)
if [ "$nproc" = unlimited ] || [ "$nproc" -gt 32768 ]; then nproc=32768; fi
if [ "$nofile" != unlimited ] && [ "$nofile" -lt 1048576 ]; then
  run+=(--ulimit "nofile=$nofile:$nofile" --ulimit "nproc=$nproc:$nproc")
fi
# Runs one container, shows the command and its output, and checks the output.
check() {
  local expect=$1 out
  shift
  echo "\$ ${run[*]} $(printf '%q ' "$@")"
  out=$("${run[@]}" "$@" 2>&1) || { echo "$out"; echo "container-check: failed" >&2; return 1; }
  echo "$out" | tail -n 6
  grep -qE "$expect" <<<"$out" || { echo "container-check: expected /$expect/" >&2; return 1; }
}
check '^dhcp-gitops [0-9]' "$image" --version
check '^isc-dhcpd-' --entrypoint dhcpd "$image" --version   # dhcpd prints it on stderr
# What the agent runs besides Python: git, dhcpd -t in its sandbox (bwrap), ip. The demo makes the example
# pair's repo; then two deploys from it swap the container's own /etc/dhcp
# (which overlayfs allows only because the image ships none).
# shellcheck disable=SC2016 # expanded by the shell in the container
deploy_twice='
  dhcp-gitops demo --dir /tmp/demo >/dev/null
  printf "[node]\nname = \"dhcp1\"\nrole = \"primary\"\n[source]\nurl = \"/tmp/demo/config.git\"\n[dhcpd]\nrestart = \"none\"\n" >/tmp/agent.toml
  dhcp-gitops sync --config /tmp/agent.toml
  dhcp-gitops rollback --config /tmp/agent.toml --to "$(git -C /tmp/demo/config rev-list --max-parents=0 HEAD)"
  test -f /etc/dhcp/dhcpd.conf && test -d /etc/.dhcp.dhcp-gitops/previous && echo "/etc/dhcp swapped twice"'
check '^/etc/dhcp swapped twice$' --cap-add SYS_ADMIN --entrypoint sh "$image" -euc "$deploy_twice"
check '^ok$' --entrypoint sh "$image" -c 'command -v git bwrap ip dhcpd >/dev/null && echo ok'
phase_done

size=$(podman image inspect --format '{{.Size}}' "$image")
echo "== image $image: $((size / 1000000)) MB ($size bytes)"
podman images --filter "reference=$image"
echo "== timings"
printf '%s\n' "${timings[@]}"
awk -v a="$start" -v b="$EPOCHREALTIME" 'BEGIN { printf "total        %7.1f s\n", b - a }'
echo "container-check: OK"
