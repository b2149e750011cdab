"""kill -9 at any moment leaves the previous complete file or the new one, never half of one."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import torch

WRITER = """
import sys, torch
from bench.storage import save_torch, write_json
path, kind = sys.argv[1], sys.argv[2]
print("ready", flush=True)
i = 0
while True:
    i += 1
    if kind == "json":
        write_json(path, {"version": i, "payload": [i] * 20000})
    else:
        save_torch(path, {"version": torch.tensor(i), "payload": torch.full((200_000,), float(i))})
"""


def _check(path, kind) -> int:
    if kind == "json":
        data = json.loads(path.read_text())
        assert data["payload"] == [data["version"]] * 20000
        return data["version"]
    data = torch.load(path, weights_only=True)
    assert torch.equal(data["payload"], torch.full((200_000,), float(data["version"])))
    return int(data["version"])


def test_kill_9_never_leaves_a_truncated_file(tmp_path):
    for kind in ("json", "torch"):
        folder = tmp_path / kind
        folder.mkdir()
        path = folder / f"result.{kind}"
        seen = set()
        for attempt in range(4):
            proc = subprocess.Popen([sys.executable, "-c", WRITER, str(path), kind], stdout=subprocess.PIPE, text=True)
            assert proc.stdout.readline().strip() == "ready"  # imports done: now it only writes
            time.sleep(0.2 + 0.13 * attempt)  # land the kill at different points of a write
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
            if path.exists():
                seen.add(_check(path, kind))
        assert seen, "the writer never completed a file"
        # A temporary file may survive a kill -9, but only under its own hidden name.
        assert {p.name for p in folder.iterdir() if not p.name.endswith(".tmp")} == {path.name}
        assert all(p.name.startswith(f".{path.name}.") for p in folder.iterdir() if p.name.endswith(".tmp"))
