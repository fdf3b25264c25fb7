"""The browser tests' agent, run by the local runner for each run (LOCAL_RUNNER_COMMAND).

A prompt containing ``[slow]`` prints a numbered line every 0.2 s for ten minutes (a long run to
cancel); ``[quiet]`` prints one line and waits (its log is written by the test itself); any
other prompt runs the demo design agent (a site, its CSS, a preview image, a report).
"""

import os
import sys
import time

prompt = os.environ.get("DESIGNRUN_PROMPT", "")
if "[slow]" in prompt:
    for number in range(3000):
        print(f"working on step {number}", flush=True)
        time.sleep(0.2)
elif "[quiet]" in prompt:
    print("waiting quietly", flush=True)
    time.sleep(600)
else:
    from designrun.agents.demo import main

    sys.exit(main())
