/* build.c: roo-python's set-up: the roo application (pipelines, steps, state types, sinks)
 * from the plan that wallaroo._roo_plan made of the module's application_setup(). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "python/pyhost.h"

static char *xstrdup(const char *s)
{
    char *d = strdup(s);
    if (!d)
        abort(); /* roo's policy: out of memory aborts (state is safe in LMDB) */
    return d;
}

static void *xgrow(void *p, size_t n, size_t size)
{
    void *q = realloc(p, n * size);
    if (!q)
        abort();
    return q;
}

static roo__py_stage *add_stage(roo__py_app *pa, roo__py_kind kind, const char *pipeline,
                                const char *name, PyObject *fn)
{
    roo__py_stage *st = calloc(1, sizeof(*st));

    if (!st)
        abort();
    st->app = pa;
    st->kind = kind;
    st->pipeline = pipeline;
    st->name = xstrdup(name);
    Py_INCREF(fn);
    st->fn = fn;
    pa->stages = xgrow(pa->stages, pa->nstages + 1, sizeof(*pa->stages));
    pa->stages[pa->nstages++] = st;
    return st;
}

/* The state type named `name`, made on first use. Python checked that one name has one
 * state class, so the first factory is everyone's. */
static roo__py_state *state_named(roo__py_app *pa, const char *name, const char *label,
                                  PyObject *factory)
{
    roo__py_state *s;

    for (size_t i = 0; i < pa->nstates; i++)
        if (strcmp(pa->states[i]->name, name) == 0)
            return pa->states[i];
    s = calloc(1, sizeof(*s));
    if (!s)
        abort();
    s->name = xstrdup(name);
    s->label = xstrdup(label ? label : name);
    Py_INCREF(factory);
    s->factory = factory;
    s->app = pa;
    s->type = (roo_state_type){
        .name = s->name,
        .size = sizeof(PyObject *),
        .init = roo__py_state_init,
        .finish = roo__py_state_finish,
        .serialize = roo__py_state_serialize,
        .deserialize = roo__py_state_deserialize,
        .format = roo__py_state_format,
        .ctx = s,
    };
    pa->states = xgrow(pa->states, pa->nstates + 1, sizeof(*pa->states));
    pa->states[pa->nstates++] = s;
    return s;
}

static int setup_error(const char *what, int rc)
{
    if (PyErr_Occurred())
        PyErr_Print();
    roo_log(ROO_LOG_ERROR, "roo-python: %s: %s", what, roo_strerror(rc));
    return rc;
}

/* One step of a pipeline: (kind, name, fn, multi, state, label, factory, key_fn). */
static int build_step(roo_pipeline *rp, roo__py_app *pa, const char *pname, PyObject *step,
                      roo__py_stage **ret_stage)
{
    int kind, multi, rc;
    const char *name, *sname, *label;
    PyObject *fn, *factory, *key_fn;
    roo__py_stage *st;

    if (!PyArg_ParseTuple(step, "isOpzzOO", &kind, &name, &fn, &multi, &sname, &label, &factory,
                          &key_fn))
        return setup_error("a step of the plan is malformed", ROO_ESETUP);
    if (kind == 0) {
        st = add_stage(pa, ROO__PY_STATELESS, pname, name, fn);
        st->multi = multi;
        rc =
            roo_pipeline_to(rp, &(roo_step){ .name = name, .compute = roo__py_compute, .ctx = st });
    } else {
        if (!sname || kind < ROO__PY_KEY_CONST || kind > ROO__PY_KEY_U64)
            return setup_error("a state step of the plan is malformed", ROO_ESETUP);
        st = add_stage(pa, ROO__PY_STATE, pname, name, fn);
        st->multi = multi;
        st->key_kind = (roo__py_key)kind;
        st->state = state_named(pa, sname, label, factory);
        if (key_fn != Py_None) {
            Py_INCREF(key_fn);
            st->key_fn = key_fn;
        } else if (kind != ROO__PY_KEY_CONST) {
            return setup_error("a partitioned state step has no partition function", ROO_ESETUP);
        }
        rc = roo_pipeline_to_state(rp, &(roo_state_step){ .name = name,
                                                          .state = &st->state->type,
                                                          .key = roo__py_key_of,
                                                          .compute = roo__py_state_compute,
                                                          .ctx = st });
    }
    if (rc < 0)
        return setup_error("cannot add a step", rc);
    *ret_stage = st;
    return 0;
}

/* One pipeline: (name, header_len, little_endian, decode_fn, [step...], [encode_fn...]). */
static int build_pipeline(roo_app *app, roo__py_app *pa, PyObject *p)
{
    const char *name;
    unsigned header_len;
    int little, rc;
    PyObject *dec, *steps, *encs;
    roo_sink sinks[64];
    Py_ssize_t nsinks;
    roo_pipeline *rp;
    roo__py_stage *dec_st, *st;
    char *pname;

    if (!PyArg_ParseTuple(p, "sIpOO!O!", &name, &header_len, &little, &dec, &PyList_Type, &steps,
                          &PyList_Type, &encs) ||
        PyList_GET_SIZE(encs) < 1 || PyList_GET_SIZE(encs) > 64)
        return setup_error("a pipeline of the plan is malformed", ROO_ESETUP);
    pname = xstrdup(name);
    pa->pipelines = xgrow(pa->pipelines, pa->npipelines + 1, sizeof(*pa->pipelines));
    pa->pipelines[pa->npipelines++] = pname;

    dec_st = add_stage(pa, ROO__PY_DECODER, pname, "decoder", dec);
    rc = roo_app_add_pipeline(
        app, pname,
        &(roo_source){ .framing = ROO_FRAMING_LENGTH,
                       .header_len = header_len,
                       .byte_order = little ? ROO_LITTLE_ENDIAN : ROO_BIG_ENDIAN,
                       .decode = roo__py_decode,
                       .ctx = dec_st },
        &rp);
    if (rc < 0)
        return setup_error("cannot add a pipeline", rc);
    st = add_stage(pa, ROO__PY_WIRE, pname, "(messages to other threads and workers)",
                   pa->serialize);
    rc = roo__pipeline_set_msg_ops(
        rp, &(roo__msg_ops){ .pack = roo__py_pack, .unpack = roo__py_unpack, .ctx = st });
    if (rc < 0)
        return setup_error("cannot set the pipeline's message ops", rc);
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(steps); i++) {
        rc = build_step(rp, pa, pname, PyList_GET_ITEM(steps, i), &st);
        if (rc < 0)
            return rc;
    }
    /* to_sinks: every output to each sink, through that sink's encoder. */
    nsinks = PyList_GET_SIZE(encs);
    for (Py_ssize_t i = 0; i < nsinks; i++) {
        char sname[32];
        snprintf(sname, sizeof(sname), i ? "encoder %zd" : "encoder", i + 1);
        st = add_stage(pa, ROO__PY_SINK, pname, sname, PyList_GET_ITEM(encs, i));
        sinks[i] = (roo_sink){ .encode = roo__py_encode, .ctx = st };
    }
    rc = roo_pipeline_to_sinks(rp, sinks, (size_t)nsinks);
    if (rc < 0)
        return setup_error("cannot end a pipeline in its sink", rc);
    return 0;
}

int roo__py_build(roo_app *app, roo__py_app *pa, PyObject *plan)
{
    const char *name;
    PyObject *warnings, *ser, *deser, *pipes, *w;
    int rc;

    if (!PyArg_ParseTuple(plan, "sO!OOO!", &name, &PyList_Type, &warnings, &ser, &deser,
                          &PyList_Type, &pipes))
        return setup_error("the plan is malformed", ROO_ESETUP);
    rc = roo_app_set_name(app, name);
    if (rc < 0)
        return setup_error("cannot name the application", rc);
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(warnings); i++) {
        w = PyList_GET_ITEM(warnings, i);
        if (PyUnicode_Check(w))
            roo_log(ROO_LOG_WARN, "%s", PyUnicode_AsUTF8(w));
    }
    Py_INCREF(ser);
    pa->serialize = ser;
    Py_INCREF(deser);
    pa->deserialize = deser;
    rc = roo__app_set_thread_hooks(
        app, &(roo__thread_hooks){ .enter = roo__py_thread_enter, .leave = roo__py_thread_leave });
    if (rc < 0)
        return setup_error("cannot set the thread hooks", rc);
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(pipes); i++) {
        rc = build_pipeline(app, pa, PyList_GET_ITEM(pipes, i));
        if (rc < 0)
            return rc;
    }
    return 0;
}

void roo__py_app_clear(roo__py_app *pa)
{
    for (size_t i = 0; i < pa->nstages; i++) {
        roo__py_stage *st = pa->stages[i];
        Py_XDECREF(st->fn);
        Py_XDECREF(st->key_fn);
        free(st->name);
        free(st);
    }
    for (size_t i = 0; i < pa->nstates; i++) {
        roo__py_state *s = pa->states[i];
        Py_XDECREF(s->factory);
        free(s->name);
        free(s->label);
        free(s);
    }
    for (size_t i = 0; i < pa->npipelines; i++)
        free(pa->pipelines[i]);
    free(pa->stages);
    free(pa->states);
    free(pa->pipelines);
    Py_XDECREF(pa->serialize);
    Py_XDECREF(pa->deserialize);
    Py_XDECREF(pa->repr_fn);
    Py_XDECREF(pa->traceback_fn);
    Py_XDECREF(pa->state_json_fn);
    Py_XDECREF(pa->wallaroo);
    Py_XDECREF(pa->module);
    memset(pa, 0, sizeof(*pa));
}
