"""The ``bpcheck`` console script: the command line (``bpcheck.cli.cli``), and exit 3 for an internal error.

A failure of bpcheck's own -- an import that breaks, an exception no command expected -- must not look
like a verdict: exit 1 means the code under test is wrong, 2 bad input or nothing judged. So anything
uncaught prints its traceback and exits 3 (README, "Exit codes").
"""
import sys
import traceback

INTERNAL_ERROR = 3


def run():
    try:
        from bpcheck.cli.cli import main
        main()
    except Exception:                          # SystemExit (click's exit codes) and KeyboardInterrupt pass
        traceback.print_exc()
        print("bpcheck: internal error (exit 3): this is bpcheck's fault, not your code's", file=sys.stderr)
        sys.exit(INTERNAL_ERROR)
