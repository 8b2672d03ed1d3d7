"""The benchmarks: push-to-live against the floor, ansible-pull and rsync; scale; storms; idle.

`scripts/bench.sh` runs them all and writes docs/benchmarks.{md,json,svg};
`python -m bench --help` lists the modes. Every comparison is measured in the
same run, interleaved round by round, because these machines are shared.
"""
