"""Development tools: the demo, the development PanDA monitor and its page, the schedd simulator.

Nothing in the daemon or the plug-in imports this package; it imports from both (see
docs/architecture.md, "Layers"). ``pandad demo`` and ``pandad devmonitor`` reach it through
pandad/cli.py, and ``python3 -m pandad.dev.simulate`` runs the simulator.
"""
