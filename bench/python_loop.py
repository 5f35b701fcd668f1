# python_loop.py: the ceiling for roo-python's Alphabet: the application's own decoder,
# state computation and encoder called in a plain loop over the same frames, in one
# process, with no sockets and no durability. Used by bench/python.
# Usage: python_loop.py VOTES_FILE MODULE   (PYTHONPATH must find MODULE and wallaroo)
import importlib
import sys
import time

import wallaroo


def main():
    data = open(sys.argv[1], "rb").read()
    app = importlib.import_module(sys.argv[2])
    frames = []
    i = 0
    while i < len(data):
        n = int.from_bytes(data[i:i + 4], "big")
        frames.append(data[i + 4:i + 4 + n])
        i += 4 + n
    plan = wallaroo._roo_plan(app.application_setup(["loop"]), ["loop"], app)
    _, _, _, dec, steps, (enc,) = plan[4][0]
    (_, _, comp, _, _, _, factory, _), = steps
    state = factory()
    out = 0
    t0 = time.perf_counter()
    for f in frames:
        res, save = comp(dec(f), state)
        out += len(enc(res))
    dt = time.perf_counter() - t0
    print("%d %.6f %d" % (len(frames), dt, out))


main()
