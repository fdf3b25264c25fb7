"""``designrun-runner-check``: a conformance and chaos kit for runner authors.

It starts an embedded designrun (temporary SQLite database and local storage on a free loopback
port), creates a run, hands the job to the runner command under test and injects seeded faults
in front of the runner API while the runner works: answers lost after the server committed them,
bursts of 503, 429 with ``Retry-After``, slow answers, a short token lifetime, one refused
request, optionally a user cancel. It then scores what the server stored and saw.

Modules: faults.py (profiles and the seeded fault plan), injector.py (the WSGI middleware that
applies the plan and records every exchange), embedded.py (the server, the run, the cancel),
scorecard.py (the checks), cli.py (the console script).

Unlike ``designrun.runner``, this package imports the server: it embeds one.
"""
