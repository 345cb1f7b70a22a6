"""The bug zoo: ``tests/meta/zoo`` of a bpcheck checkout, its members and what each expects.

Each member implements the Python contract, with one realistic bug (``bug_*``) or
correctly (``ok_*``), and says in ``EXPECTED`` what bpcheck should conclude. The
selftest validates every member (``bpcheck.cli.selftest``), the false-alarm campaign
judges the correct ones (``bpcheck.proof.campaign``), and the baselines run bpcheck,
gradcheck and check_grads on all of them (``bpcheck.proof.baselines``).
"""
import importlib.util
from pathlib import Path

ZOO = Path(__file__).resolve().parents[2] / "tests" / "meta" / "zoo"


def members(zoo=ZOO):
    """[(name, path, EXPECTED)] of every member in ``zoo``, sorted."""
    zoo = Path(zoo)
    if not zoo.is_dir():
        raise FileNotFoundError(f"no bug zoo at {zoo} (selftest runs from a bpcheck checkout; --zoo DIR)")
    return [(path.stem, path, _load_module(path).EXPECTED) for path in sorted(zoo.glob("*.py"))
            if path.name.startswith(("bug_", "ok_"))]


def _load_module(path):
    spec = importlib.util.spec_from_file_location(f"bpcheck_zoo_{Path(path).stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
