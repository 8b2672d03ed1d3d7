"""The deploy engine: one reconcile and its steps (render, stage, publish), its records and
the recovery that undoes a run a crash cut short."""
