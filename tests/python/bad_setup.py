# bad_setup.py: an application_setup that raises (python_errors.sh).
import wallaroo


def application_setup(args):
    raise RuntimeError("application_setup fails on purpose")
