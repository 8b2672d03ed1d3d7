#!/bin/sh
# rsync-watch.sh SRC DST RESTART-ARGV...
#
# The hand-made pipeline dhcp-gitops replaces, as such pipelines are usually
# written: wait for a change under SRC, copy SRC over DST with rsync (the
# role's own dhcpd.failover left alone), restart dhcpd, watch again.
#
# close_write and moved_to only: a `git pull` rewrites a file as DELETE, CREATE,
# MODIFY, CLOSE_WRITE, and waking on the DELETE would copy a tree without the
# file. (A deleted file therefore reaches DST with the next write.) Nothing is
# validated and the copy is not atomic: that is the point of the comparison.
set -u
src=$1 dst=$2
shift 2
# inotifywait prints "Watches established." on stderr each time it is ready.
while inotifywait -r -e close_write,moved_to "$src"; do
  rsync -a --delete --exclude dhcpd.failover "$src/" "$dst/"
  "$@"
done
