"""Live child processes of the test process, read from /proc (Linux)."""
import os
from pathlib import Path


def children_running(*fragments):
    """Command lines of live (not zombie) children of this process holding every one of ``fragments``."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode("utf-8", "replace")
                state, ppid = (entry / "stat").read_text().rsplit(")", 1)[1].split()[:2]
            except OSError:
                continue
            if all(f in cmdline for f in fragments) and int(ppid) == os.getpid() and state != "Z":
                found.append(cmdline)
    return found
