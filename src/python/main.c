/* main.c: roo-python (also built as machida and machida3): runs a Wallaroo Python
 * application module as a roo worker, with Wallaroo's command line.
 *
 * DESIGN
 * main() takes roo-python's own flags out of argv (--application-module, --python-errors,
 * and Wallaroo's Pony runtime flags, which mean nothing here), starts one CPython
 * interpreter on the main thread, creates the embedded `wallaroo` module, and hands the
 * rest of argv to roo_main(). roo_main() parses the worker's flags and calls setup() on the
 * main thread before it opens any port: setup() imports the module, calls its
 * application_setup(args) with the whole command line (as machida did), asks
 * wallaroo._roo_plan() to check and flatten the result, and builds the roo application from
 * it (build.c). setup() then releases the GIL; from there on a processing thread holds it
 * from each wakeup to its next sleep, and callbacks on other threads take it for their own
 * duration (host.c). When roo_main() returns, every engine thread has ended and every
 * state object is released: main() takes the GIL back and finalizes.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "python/pyhost.h"

/* wallaroo.py, compiled in by embed.py (see meson.build). */
extern const char roo__py_wallaroo_source[];

static roo__py_app the_app;
static PyThreadState *main_ts; /* the main thread's state while roo runs (GIL released) */
static const char *module_name;
static PyObject *setup_args; /* application_setup's argument: argv without Pony flags */
static char pony_ignored[512];
static unsigned long threads_flag = 1;

/* ---- command line ---- */

/* Pony runtime flags that take a value when written without '='. */
static const char *const pony_valued[] = {
    "--ponythreads",   "--ponyminthreads", "--ponymaxthreads",       "--ponycdinterval",
    "--ponygcinitial", "--ponygcfactor",   "--ponysuspendthreshold",
};

static bool pony_takes_value(const char *a)
{
    for (size_t i = 0; i < sizeof(pony_valued) / sizeof(pony_valued[0]); i++)
        if (strcmp(a, pony_valued[i]) == 0)
            return true;
    return false;
}

static void note_ignored(const char *a, const char *v)
{
    size_t n = strlen(pony_ignored);
    snprintf(pony_ignored + n, sizeof(pony_ignored) - n, "%s%s%s%s", n ? " " : "", a, v ? " " : "",
             v ? v : "");
}

/* "--flag VALUE" or "--flag=VALUE": its value, advancing *i past it; NULL if not this flag. */
static const char *flag_value(int argc, char **argv, int *i, const char *flag, bool *ret_missing)
{
    size_t n = strlen(flag);

    *ret_missing = false;
    if (strncmp(argv[*i], flag, n) != 0)
        return NULL;
    if (argv[*i][n] == '=')
        return argv[*i] + n + 1;
    if (argv[*i][n] != '\0')
        return NULL;
    if (*i + 1 >= argc) {
        *ret_missing = true;
        return NULL;
    }
    return argv[++*i];
}

typedef struct cmdline {
    int roo_argc;
    char **roo_argv; /* for roo_main: argv without roo-python's own flags */
    int py_argc;
    char **py_argv; /* for application_setup: argv without the Pony flags */
    bool help, version, errors_exit;
} cmdline;

static int parse_cmdline(int argc, char **argv, cmdline *c)
{
    bool missing, app_part = false;
    const char *v;
    int start;

    c->roo_argv = calloc((size_t)argc + 1, sizeof(char *));
    c->py_argv = calloc((size_t)argc + 1, sizeof(char *));
    if (!c->roo_argv || !c->py_argv)
        return -ENOMEM;
    c->roo_argv[c->roo_argc++] = argv[0];
    c->py_argv[c->py_argc++] = argv[0];
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (app_part || strcmp(a, "--") == 0) {
            /* roo's application options: passed through untouched. */
            app_part = true;
            c->roo_argv[c->roo_argc++] = argv[i];
            c->py_argv[c->py_argc++] = argv[i];
            continue;
        }
        if (strncmp(a, "--pony", 6) == 0) {
            if (!strchr(a, '=') && pony_takes_value(a) && i + 1 < argc &&
                strncmp(argv[i + 1], "--", 2) != 0) {
                note_ignored(a, argv[i + 1]);
                i++;
            } else {
                note_ignored(a, NULL);
            }
            continue;
        }
        start = i;
        if ((v = flag_value(argc, argv, &i, "--application-module", &missing)) || missing) {
            if (missing) {
                fprintf(stderr, "%s: option '--application-module' needs a value (see --help)\n",
                        argv[0]);
                return -EINVAL;
            }
            module_name = v;
            /* application_setup sees it, as under machida. */
            for (int j = start; j <= i; j++)
                c->py_argv[c->py_argc++] = argv[j];
            continue;
        }
        if ((v = flag_value(argc, argv, &i, "--python-errors", &missing)) || missing) {
            if (missing || (strcmp(v, "exit") != 0 && strcmp(v, "log") != 0)) {
                fprintf(stderr, "%s: --python-errors takes 'log' or 'exit' (see --help)\n",
                        argv[0]);
                return -EINVAL;
            }
            c->errors_exit = strcmp(v, "exit") == 0;
            continue;
        }
        c->py_argv[c->py_argc++] = argv[i];
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0)
            c->help = true;
        if (strcmp(a, "--version") == 0 || strcmp(a, "-V") == 0)
            c->version = true;
        if (strcmp(a, "--threads") == 0 && i + 1 < argc)
            threads_flag = strtoul(argv[i + 1], NULL, 10);
        else if (strncmp(a, "--threads=", 10) == 0)
            threads_flag = strtoul(a + 10, NULL, 10);
        c->roo_argv[c->roo_argc++] = argv[i];
    }
    return 0;
}

static void usage(const char *program)
{
    printf("Usage: %s --application-module MODULE [WORKER OPTIONS]\n"
           "\n"
           "Runs a Wallaroo Python application (Wallaroo's 0.4-0.5 API: `import wallaroo`,\n"
           "`application_setup(args)` returning ApplicationBuilder(...).build()) as a roo\n"
           "worker. The module is imported from the current directory, then PYTHONPATH; the\n"
           "`wallaroo` module is built in. See docs/python.md.\n"
           "\n"
           "Python options:\n"
           "      --application-module MODULE  the application module to import (required)\n"
           "      --python-errors log|exit     on an exception in a user function: log it and\n"
           "                                   drop the message (log, the default), or log it\n"
           "                                   and exit 1 at once (exit, for tests)\n"
           "      --pony*                      Wallaroo's Pony runtime flags (--ponythreads N,\n"
           "                                   --ponynoblock, --ponypin...) are accepted and\n"
           "                                   ignored\n"
           "\n"
           "The worker options follow (roo's own --help):\n"
           "\n",
           program);
    fflush(stdout);
}

/* ---- the interpreter ---- */

static int start_python(int argc, char **argv)
{
    PyConfig config;
    PyStatus status;
    PyObject *code = NULL, *mod = NULL, *path, *dir = NULL;
    char cwd[4096];
    int rc = -1;

    PyConfig_InitPythonConfig(&config);
    config.install_signal_handlers = 0; /* SIGINT/SIGTERM/SIGHUP are roo's: a clean stop */
    config.buffered_stdio = 0;          /* a user's print() shows at once, like Wallaroo's */
    config.parse_argv = 0;              /* the flags are roo's, not Python's */
    status = PyConfig_SetBytesArgv(&config, argc, argv);
    if (PyStatus_Exception(status))
        goto fail;
    status = Py_InitializeFromConfig(&config);
    if (PyStatus_Exception(status))
        goto fail;
    PyConfig_Clear(&config);

    code = Py_CompileString(roo__py_wallaroo_source, "<roo-python>/wallaroo.py", Py_file_input);
    mod = code ? PyImport_ExecCodeModuleEx("wallaroo", code, "<roo-python>/wallaroo.py") : NULL;
    if (!mod)
        goto py_fail;
    the_app.wallaroo = mod;
    the_app.repr_fn = PyObject_GetAttrString(mod, "_roo_repr");
    the_app.traceback_fn = PyObject_GetAttrString(mod, "_roo_traceback");
    the_app.state_json_fn = PyObject_GetAttrString(mod, "_roo_state_json");
    if (!the_app.repr_fn || !the_app.traceback_fn || !the_app.state_json_fn)
        goto py_fail;

    /* The current directory first, then PYTHONPATH (already in sys.path), then the rest. */
    path = PySys_GetObject("path");
    if (!getcwd(cwd, sizeof(cwd)) || !path || !(dir = PyUnicode_DecodeFSDefault(cwd)) ||
        PyList_Insert(path, 0, dir) < 0)
        goto py_fail;
    rc = 0;
    goto out;
fail:
    fprintf(stderr, "%s: cannot start Python: %s\n", argv[0],
            status.err_msg ? status.err_msg : "unknown error");
    PyConfig_Clear(&config);
    return -1;
py_fail:
    PyErr_Print();
    fprintf(stderr, "%s: cannot set up the embedded wallaroo module\n", argv[0]);
out:
    Py_XDECREF(dir);
    Py_XDECREF(code);
    return rc;
}

/* Import the module and build the roo application from its application_setup(). */
static int load_app(roo_app *app)
{
    PyObject *fn = NULL, *res = NULL, *plan_fn = NULL, *plan = NULL;
    int rc = ROO_ESETUP;

    the_app.module = PyImport_ImportModule(module_name);
    if (!the_app.module) {
        PyErr_Print();
        roo_log(ROO_LOG_ERROR,
                "cannot import the application module '%s' (looked in the current directory, "
                "then PYTHONPATH); the traceback is above",
                module_name);
        goto out;
    }
    fn = PyObject_GetAttrString(the_app.module, "application_setup");
    if (!fn || !PyCallable_Check(fn)) {
        PyErr_Clear();
        roo_log(ROO_LOG_ERROR, "module '%s' has no application_setup(args) function", module_name);
        goto out;
    }
    res = PyObject_CallOneArg(fn, setup_args);
    if (!res) {
        PyErr_Print();
        roo_log(ROO_LOG_ERROR, "%s.application_setup(args) raised; the traceback is above",
                module_name);
        goto out;
    }
    plan_fn = PyObject_GetAttrString(the_app.wallaroo, "_roo_plan");
    plan = plan_fn ? PyObject_CallFunctionObjArgs(plan_fn, res, setup_args, the_app.module, NULL)
                   : NULL;
    if (!plan) {
        PyErr_Print();
        roo_log(ROO_LOG_ERROR,
                "the application that %s.application_setup(args) describes "
                "cannot run on roo; the reason is above",
                module_name);
        goto out;
    }
    rc = roo__py_build(app, &the_app, plan);
out:
    Py_XDECREF(fn);
    Py_XDECREF(res);
    Py_XDECREF(plan_fn);
    Py_XDECREF(plan);
    return rc;
}

static int setup(roo_app *app, int argc, char **argv)
{
    int rc;

    (void)argc;
    (void)argv;
    if (pony_ignored[0])
        roo_log(ROO_LOG_INFO,
                "ignoring Pony runtime flags: %s (roo runs Python on its own "
                "threads: see --threads)",
                pony_ignored);
    if (threads_flag > 1)
        roo_log(ROO_LOG_INFO,
                "--threads %lu: the threads take turns with the GIL (one interpreter): Python "
                "runs on one at a time, and messages crossing threads are pickled; for more "
                "Python throughput run more workers",
                threads_flag);
    rc = load_app(app);
    if (rc == 0)
        roo_log(ROO_LOG_INFO, "Python %s: application module '%s' loaded", Py_GetVersion(),
                module_name);
    /* From here on processing threads take the GIL per wakeup, others per call (host.c). */
    main_ts = PyEval_SaveThread();
    return rc;
}

static PyObject *args_list(int argc, char **argv)
{
    PyObject *l = PyList_New(argc), *s;

    for (int i = 0; l && i < argc; i++) {
        s = PyUnicode_DecodeFSDefault(argv[i]);
        if (!s) {
            Py_CLEAR(l);
            break;
        }
        PyList_SET_ITEM(l, i, s);
    }
    return l;
}

int main(int argc, char **argv)
{
    cmdline c = { 0 };
    int status;

    if (parse_cmdline(argc, argv, &c) < 0) {
        status = 2;
        goto out;
    }
    if (c.help || c.version) {
        if (c.help)
            usage(argv[0]);
        status = roo_main(c.roo_argc, c.roo_argv, setup); /* prints and returns: no set-up */
        goto out;
    }
    if (!module_name) {
        fprintf(stderr, "%s: --application-module MODULE is required (see --help)\n", argv[0]);
        status = 2;
        goto out;
    }
    the_app.errors_exit = c.errors_exit;
    if (start_python(c.py_argc, c.py_argv) < 0) {
        status = 1;
        goto out;
    }
    setup_args = args_list(c.py_argc, c.py_argv);
    if (!setup_args) {
        PyErr_Print();
        status = 1;
    } else {
        status = roo_main(c.roo_argc, c.roo_argv, setup);
    }
    if (main_ts)
        PyEval_RestoreThread(main_ts);
    Py_CLEAR(setup_args);
    roo__py_app_clear(&the_app);
    if (Py_FinalizeEx() < 0 && status == 0)
        status = 1;
out:
    free(c.roo_argv);
    free(c.py_argv);
    return status;
}
