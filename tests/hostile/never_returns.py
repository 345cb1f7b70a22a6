"""Never returns, on any call: the probe cases bpcheck asks before a run hang too."""
import time


def backprop(spec, params, x, y):
    while True:
        time.sleep(3600)
