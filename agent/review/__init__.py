"""The review commands, run on a pair folder before it reaches any server: validate, plan,
init, import and demo, and their output formats."""
