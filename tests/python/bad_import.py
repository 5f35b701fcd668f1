# bad_import.py: a module that fails to import (python_errors.sh).
import wallaroo
import no_such_module_for_roo_tests  # noqa: F401


def application_setup(args):
    return wallaroo.ApplicationBuilder("never").build()
