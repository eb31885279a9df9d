"""Run one command; write its wall time and peak RSS as JSON to RESULT.

    python -S benchmarks/measure.py RESULT COMMAND [ARG ...]

Linux counts a process's memory from before ``exec`` in its ``ru_maxrss``, so a command forked
straight from ``run.py`` (which holds thousands of parsed migrations) would be charged for
``run.py``'s memory. Forked from this small process instead, it is charged for its own. The
time is taken here, from fork to exit, so this script's start-up is not counted either.
"""

import json
import os
import sys
import time


def main(result: str, command: list[str]) -> None:
    started = time.perf_counter()
    pid = os.fork()
    if pid == 0:
        try:
            os.execvp(command[0], command)
        finally:
            os._exit(127)
    _, status, usage = os.wait4(pid, 0)
    elapsed = time.perf_counter() - started
    with open(result, "w") as out:
        json.dump({"seconds": elapsed, "rss_kb": usage.ru_maxrss, "exit": os.waitstatus_to_exitcode(status)}, out)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2:])
