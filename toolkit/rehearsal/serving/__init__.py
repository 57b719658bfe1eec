"""The serve drill: real inference replicas behind HAProxy, reclaimed on a schedule, under open-loop load.

- ``model``: the replicas' bigram language model, built at start-up from text that ships with Python;
- ``server``: one replica, an OpenAI-style HTTP server (``/v1/completions``, ``/health``);
- ``balancer``: HAProxy (the ALB's stand-in) and its runtime API;
- ``loadgen``: the open-loop load generator (Poisson arrivals, every request recorded);
- ``handoff``: the agent's hook on a replica (replacement first, drain, exit before the reclaim);
- ``capacity``: the spot group and the handler's on-demand fallback;
- ``drill``: the simulation (three runs: spotkit and two baselines); ``analysis``: the figures;
  ``report``: table, ``drill.json`` and plot.

Import the submodules; this package imports nothing heavy (the hook runs on every notice).
"""
