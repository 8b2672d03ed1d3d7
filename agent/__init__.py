"""dhcp-gitops agent: keeps /etc/dhcp of an ISC dhcpd server in step with a git repository."""

__version__ = "0.1.0"
