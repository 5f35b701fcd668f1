# embed.py: write wallaroo.py into a C file as one NUL-terminated array, so that roo-python
# carries its `wallaroo` module inside the binary. Usage: embed.py wallaroo.py out.c
import sys

src = open(sys.argv[1], "rb").read()
if b"\0" in src:
    sys.exit("embed.py: %s holds a NUL byte" % sys.argv[1])
with open(sys.argv[2], "w") as f:
    f.write("/* Generated from wallaroo.py by embed.py: do not edit. */\n")
    f.write("extern const char roo__py_wallaroo_source[];\n")
    f.write("const char roo__py_wallaroo_source[] = {\n")
    for i in range(0, len(src), 16):
        f.write("    " + ", ".join("0x%02x" % b for b in src[i:i + 16]) + ",\n")
    f.write("    0x00\n};\n")
