"""Writes nothing, not even a hello line, and sleeps."""
import time

time.sleep(60)
