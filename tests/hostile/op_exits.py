"""Answers two layernorm requests right, then exits with status 3 in the middle of the third."""
import os
import sys

import op_reference as ref

calls = 0


def answer(request):
    global calls
    calls += 1
    if calls == 3:
        sys.stderr.write("out of memory (simulated)\n")
        sys.stderr.flush()
        os._exit(3)
    return ref.reply(request, ref.correct(request))


ref.hello()
ref.serve(answer)
