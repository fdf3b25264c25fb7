"""Design agents that designrun-runner runs as plain commands.

``demo`` is the offline, deterministic agent used by default (``python -m designrun.agents.demo``);
``protocol`` is the line protocol every agent uses to report progress, events and artifacts. These
modules import nothing from the server side (Flask, SQLAlchemy, designrun's models or services).
"""
