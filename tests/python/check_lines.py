# check_lines.py: check the text outputs of examples/python/alphabet_partitioned.py
# ("<letter> => <total>" lines) against the framed votes that were sent: each letter's
# outputs, in the order they arrived, must be exactly the running sums of its votes, in the
# order they were sent (one source connection keeps a key's order), starting from START
# totals if given. Usage: check_lines.py VOTES OUTPUT [--start TOTALS.json]
#                                                   [--allow-repeats]
# --allow-repeats: an output may repeat an earlier running sum (output resent after a
# restart) as long as the sums only move forward.
import json
import sys


def main():
    args = sys.argv[1:]
    start = {}
    repeats = False
    if "--allow-repeats" in args:
        args.remove("--allow-repeats")
        repeats = True
    if "--start" in args:
        i = args.index("--start")
        start = json.load(open(args[i + 1]))
        del args[i:i + 2]
    votes_file, out_file = args
    data = open(votes_file, "rb").read()
    sums = {}
    i = 0
    while i < len(data):
        n = int.from_bytes(data[i:i + 4], "big")
        letter = chr(data[i + 4])
        votes = int.from_bytes(data[i + 5:i + 9], "big")
        total = sums.setdefault(letter, [start.get(letter, 0)])
        total.append(total[-1] + votes)
        i += 4 + n
    seen = {}
    bad = 0
    nlines = 0
    for line in open(out_file, encoding="utf-8"):
        nlines += 1
        letter, _, total = line.rstrip("\n").partition(" => ")
        want = sums.get(letter)
        k = seen.get(letter, 0)
        if want is None:
            print("letter %r was not sent" % letter)
            bad += 1
            continue
        got = int(total)
        if k + 1 < len(want) and got == want[k + 1]:
            seen[letter] = k + 1
        elif repeats and got in want[1:k + 1]:
            pass
        else:
            print("letter %s: output %d is %d, want %s" % (letter, k + 1, got,
                                                         want[k + 1] if k + 1 < len(want) else "none"))
            bad += 1
        if bad > 10:
            break
    for letter, want in sums.items():
        if seen.get(letter, 0) != len(want) - 1:
            print("letter %s: %d outputs, want %d" % (letter, seen.get(letter, 0), len(want) - 1))
            bad += 1
    print("%d lines, %d letters: %s" % (nlines, len(sums), "PASS" if not bad else "FAIL"))
    return 1 if bad else 0


sys.exit(main())
