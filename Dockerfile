# dhcp-gitops agent with ISC dhcpd in one image. The agent is the main process
# and runs dhcpd as its child: the config in /etc/dhcp-gitops/agent.toml must
# say [dhcpd] restart = "supervise" (there is no systemd in the container).
# Run it with host networking, CAP_NET_RAW and CAP_SYS_ADMIN: see docs/operations.md, "Container".
#
#   docker build -t dhcp-gitops:dev .
#   podman build --format docker -t dhcp-gitops:dev .      (keeps the HEALTHCHECK)
#
# Behind a TLS-intercepting proxy, hand pip that proxy's CA bundle (and, if you
# have one, your pip.conf) as build secrets; they are mounted for one RUN of the
# build stage only and never land in a layer of the image:
#   podman build --secret id=pip_ca,src=/etc/ssl/certs/ca-certificates.crt \
#                --secret id=pip_conf,src=/etc/pip.conf -t dhcp-gitops:dev .
# scripts/container-check.sh does exactly that from this machine's settings.

# --- build: the project and its dependencies in a venv at its final path ----
FROM debian:bookworm-slim AS build
# Index settings of the build machine, if any (build stage only; not in the final image).
ARG PIP_INDEX_URL=""
ARG PIP_EXTRA_INDEX_URL=""
ARG PIP_TRUSTED_HOST=""
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
        python3 python3-venv ca-certificates \
 && rm -rf /var/lib/apt/lists/*
RUN python3 -m venv /opt/dhcp-gitops
COPY pyproject.toml README.md /src/
COPY agent /src/agent
COPY webhook /src/webhook
COPY repo-template /src/repo-template
RUN --mount=type=secret,id=pip_ca --mount=type=secret,id=pip_conf \
    set -eu; \
    [ -n "$PIP_INDEX_URL" ] || unset PIP_INDEX_URL; \
    [ -n "$PIP_EXTRA_INDEX_URL" ] || unset PIP_EXTRA_INDEX_URL; \
    [ -n "$PIP_TRUSTED_HOST" ] || unset PIP_TRUSTED_HOST; \
    if [ -s /run/secrets/pip_conf ]; then export PIP_CONFIG_FILE=/run/secrets/pip_conf; fi; \
    if [ -s /run/secrets/pip_ca ]; then export PIP_CERT=/run/secrets/pip_ca; fi; \
    /opt/dhcp-gitops/bin/pip install --no-cache-dir --disable-pip-version-check /src; \
    /opt/dhcp-gitops/bin/pip uninstall -y -q pip setuptools   # 25 MB the agent never uses

# --- the image -------------------------------------------------------------
FROM debian:bookworm-slim
# isc-dhcp-server's scripts would try to start dhcpd while it installs: a
# policy-rc.d that denies every start keeps them down (removed again after).
RUN set -eu; \
    guard=""; \
    if [ ! -e /usr/sbin/policy-rc.d ]; then \
        guard=/usr/sbin/policy-rc.d; printf '#!/bin/sh\nexit 101\n' > "$guard"; chmod 755 "$guard"; \
    fi; \
    apt-get update; \
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
        isc-dhcp-server bubblewrap git openssh-client gnupg iproute2 util-linux mount \
        python3 ca-certificates; \
    apt-get clean; \
    rm -rf /var/lib/apt/lists/* /var/log/apt /var/log/dpkg.log /var/cache/debconf/*-old; \
    if [ -n "$guard" ]; then rm -f "$guard"; fi
# The venv uses the image's /usr/bin/python3 (same base, same Python), so it
# works as copied; python3-venv and pip's build tools stay in the build stage.
COPY --from=build /opt/dhcp-gitops /opt/dhcp-gitops
ENV PATH=/opt/dhcp-gitops/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    PYTHONUNBUFFERED=1
# No /etc/dhcp in the image: the agent swaps the target with a stage beside it
# (renameat2 RENAME_EXCHANGE), and overlayfs refuses that for a folder of an
# image layer (EXDEV). The agent makes /etc/dhcp in the container's writable
# layer and deploys it from git when it starts. Never mount a volume on
# /etc/dhcp (a mount point cannot be exchanged either).
RUN rm -rf /etc/dhcp \
 && mkdir -p /etc/dhcp-gitops /var/lib/dhcp-gitops \
 && dhcp-gitops --version
# Leases (dhcpd's) and the agent's state (mirror, state.json, history, releases).
VOLUME ["/var/lib/dhcp", "/var/lib/dhcp-gitops"]
# The agent's HTTP API; the default listen is 127.0.0.1:8647 (host networking).
EXPOSE 8647
# Standard library only; assumes [http] listen reaches 127.0.0.1 (the default or 0.0.0.0).
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python3", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8647/healthz', timeout=4)"]
ENTRYPOINT ["dhcp-gitops"]
CMD ["agent", "--config", "/etc/dhcp-gitops/agent.toml"]
