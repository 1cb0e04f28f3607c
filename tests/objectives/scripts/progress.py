"""Writes as a progress bar and a chunked writer do: metrics ended by ``\\r`` (each
update over the last), a UTF-8 character split across two writes, no final newline."""

import sys
import time

out = sys.stdout.buffer
for step in (1, 2, 3):
    out.write(f"step={step} score={step / 10}\r".encode())
    out.flush()
    time.sleep(0.02)
out.write(b"\nvalidated: caf\xc3")
out.flush()
time.sleep(0.05)  # the two bytes of the character arrive in two reads
out.write(b"\xa9 ok")
