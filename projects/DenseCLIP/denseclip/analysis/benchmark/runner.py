"""Measurements in fresh processes: a process's peak resident set size counts everything it
ever touched, so each memory measurement runs alone in a process of its own."""

import json
import subprocess
import sys
from typing import Dict, Sequence


def in_fresh_processes(
    script: str, flag: str, names: Sequence[str], argv: Sequence[str]
) -> Dict[str, Dict[str, float]]:
    """{name: the JSON object that ``python SCRIPT FLAG NAME ARGV...`` prints on its last line},
    one fresh process per name; a failed process raises with the end of its stderr."""
    results = {}
    for name in names:
        command = [sys.executable, script, flag, name, *argv]
        done = subprocess.run(command, capture_output=True, text=True)
        if done.returncode:
            raise RuntimeError(f"memory measurement of {name} failed:\n{done.stderr[-3000:]}")
        results[name] = json.loads(done.stdout.strip().splitlines()[-1])
    return results
