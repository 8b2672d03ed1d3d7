"""The long-running agent around the engine: the reconcile loop, the peer gate of a pair,
and the notifications of each attempt."""
