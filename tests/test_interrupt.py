"""Interruptions lose nothing: SIGTERM (as Ctrl-C) keeps every finished case and writes a valid
partial report; SIGKILL keeps every flushed line; ``--resume`` then ends with exactly the records of
an uninterrupted run -- none lost, none duplicated."""
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

BPCHECK = str(Path(sys.executable).with_name("bpcheck"))
REPO = Path(__file__).resolve().parents[1]
REPORT = ["report", "--examples", "2", "--losses", "mse,sse,bce_with_logits", "--activations", "tanh,relu,gelu",
          "--jobs", "1", "--no-progress", "--seed", "5", "--no-ops"]
VALIDATE = ["validate", f"{REPO / 'examples' / 'numpy_mlp.py'}:backprop", "--losses", "mse,sse,bce_with_logits",
            "--activations", "tanh,relu,gelu", "--jobs", "1", "--min-cases", "40", "--seed", "5"]


def interrupted(command, meta):
    """What report.json's ``meta`` says: ``report`` writes meta["interrupted"] (True or False);
    ``validate`` writes its verdict into meta and sets verdict["interrupted"] only when interrupted."""
    if command == "report":
        return meta["interrupted"]
    return meta["verdict"].get("interrupted", False)


def records(out, torn_ok=False):
    """The records of OUT/cases.jsonl. A SIGKILL can land inside a write, so with ``torn_ok`` the file may end
    in one line without its newline (a record cut short); ``--resume`` must then cut it off."""
    text = (out / "cases.jsonl").read_text()
    lines = text.split("\n")
    torn = lines.pop()
    assert torn == "" or torn_ok, f"a line without its newline after an orderly run: {torn[:200]!r}"
    parsed = [json.loads(line) for line in lines]
    return {r["case"]: {k: v for k, v in r.items() if k != "seconds"} for r in parsed}, [r["case"] for r in parsed]


def run_until(args, out, signum, lines_wanted=6, timeout=300):
    """Start ``bpcheck args --out out``, send ``signum`` once cases.jsonl holds ``lines_wanted`` lines."""
    proc = subprocess.Popen([BPCHECK, *args, "--out", str(out)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    deadline = time.monotonic() + timeout
    path = out / "cases.jsonl"
    while time.monotonic() < deadline and proc.poll() is None:
        if path.exists() and len(path.read_text().splitlines()) >= lines_wanted:
            proc.send_signal(signum)
            break
        time.sleep(0.05)
    stdout, stderr = proc.communicate(timeout=timeout)
    return proc.returncode, stdout, stderr


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    out = {}
    for name, args in (("report", REPORT), ("validate", VALIDATE)):
        d = tmp_path_factory.mktemp(f"whole-{name}")
        subprocess.run([BPCHECK, *args, "--out", str(d)], capture_output=True, text=True, timeout=600)
        out[name] = records(d)[0]
    return out


@pytest.mark.parametrize("command, args", [("report", REPORT), ("validate", VALIDATE)])
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGKILL])
def test_interrupt_then_resume_gives_the_uninterrupted_records(command, args, signum, uninterrupted, tmp_path):
    code, stdout, stderr = run_until(args, tmp_path, signum)
    partial, order = records(tmp_path, torn_ok=signum == signal.SIGKILL)
    assert 0 < len(partial) < len(uninterrupted[command]), (code, stderr[-500:])
    assert len(order) == len(set(order))
    if signum == signal.SIGTERM:
        assert code == 130, (code, stdout[-800:], stderr[-800:])
        report = json.loads((tmp_path / "report.json").read_text())
        assert report["counts"]["cases"] == len(partial)
        assert interrupted(command, report["meta"]) is True, report["meta"]
    else:
        assert code == -signal.SIGKILL
    done = subprocess.run([BPCHECK, *args, "--out", str(tmp_path), "--resume"], capture_output=True, text=True,
                          timeout=600)
    assert done.returncode in (0, 1), done.stdout[-800:] + done.stderr[-800:]
    final, order = records(tmp_path)
    assert len(order) == len(set(order)), "a case was recorded twice"
    assert final == uninterrupted[command]
    assert interrupted(command, json.loads((tmp_path / "report.json").read_text())["meta"]) is False
