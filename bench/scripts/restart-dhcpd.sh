#!/bin/sh
# restart-dhcpd.sh PIDFILE LOG DHCPD-ARGV...
#
# The restart of the hand-made pipelines (rsync, ansible-pull) and of the floor:
# what the agent's supervisor does, as a script. SIGTERM the dhcpd named in the
# pid file, wait until it is gone, start the same argv again, detached, and
# return at once; dhcpd writes its pid file when it serves (bench/lab.py).
set -u
pidfile=$1 log=$2
shift 2
pid=$(cat "$pidfile" 2>/dev/null || true)
if [ -n "$pid" ] && kill -TERM "$pid" 2>/dev/null; then
  # Gone, or a zombie its parent has not reaped yet: either way it has stopped serving.
  while [ -e "/proc/$pid" ] && ! grep -q '^State:[[:space:]]*Z' "/proc/$pid/status" 2>/dev/null; do
    sleep 0.005
  done
fi
# dhcpd refuses to start while its pid file names a process that still exists,
# and a zombie does until it is reaped.
rm -f "$pidfile"
setsid "$@" >>"$log" 2>&1 </dev/null &
