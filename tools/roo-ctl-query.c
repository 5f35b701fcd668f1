/* roo-ctl-query.c: roo-ctl query: the status's workers and partition table, each key asked
 * of its owner only (or every worker, for all keys), every page followed, the answers merged
 * into one document printed as JSON or as a table. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "roo-ctl.h"
#include "state/table.h"

/* The cluster as a status shows it: its workers, and who owns each partition. */
typedef struct view {
    json_t *status;        /* the whole answer */
    const json_t *workers; /* in status: an array of objects */
    const json_t *owners;  /* in status: a worker index per partition; NULL if it has none */
    uint32_t partitions;
} view;

static void view_finish(view *v)
{
    json_decref(v->status);
    memset(v, 0, sizeof(*v));
}

/* Ask any target for the status; a worker that says no or answers nonsense is an error. */
static int view_fetch(const targets *t, view *ret_view)
{
    roo__ext_request sreq = { .cmd = ROO__EXT_STATUS };
    char *text = NULL, *error = NULL;
    const json_t *owners;
    json_int_t parts;
    bool ok = false;
    size_t who = 0;
    view v = { 0 };
    int rc;

    rc = ctl_ask_any(t, &sreq, ctl_now_ms() + (int64_t)t->timeout_s * 1000, false, &ok, &text,
                     &error, &who);
    if (rc == 0 && !ok) {
        fprintf(stderr, "roo-ctl: %s: %s\n", ctl_addr_text(&t->addrs[who]), error);
        rc = -EPROTO;
    }
    if (rc == 0)
        rc = ctl_parse_answer(text, ctl_addr_text(&t->addrs[who]), &v.status);
    free(text);
    free(error);
    if (rc < 0)
        return rc;
    v.workers = json_object_get(v.status, "workers");
    if (!json_is_array(v.workers)) {
        fprintf(stderr, "roo-ctl: %s: the status lists no workers\n",
                ctl_addr_text(&t->addrs[who]));
        view_finish(&v);
        return ROO_EWIRE;
    }
    /* The partition table, if whole: one owner per partition (a forming cluster has none). */
    parts = json_integer_value(json_object_get(v.status, "partitions"));
    owners = json_object_get(v.status, "owners");
    if (parts >= 1 && parts <= UINT16_MAX && json_array_size(owners) == (size_t)parts) {
        v.owners = owners;
        v.partitions = (uint32_t)parts;
        for (size_t i = 0; i < json_array_size(owners); i++)
            if (!json_is_integer(json_array_get(owners, i)))
                v.owners = NULL;
    }
    *ret_view = v;
    return 0;
}

/* The worker of the status with that index, or NULL. */
static const json_t *worker_at(const view *v, json_int_t index)
{
    for (size_t i = 0; i < json_array_size(v->workers); i++) {
        const json_t *w = json_array_get(v->workers, i);
        if (json_integer_value(json_object_get(w, "index")) == index)
            return w;
    }
    return NULL;
}

static const char *worker_name(const json_t *w)
{
    const char *name = json_string_value(json_object_get(w, "name"));
    return name && name[0] ? name : "?";
}

/* The worker's --external address, parsed; false if it has none (or nothing that parses). */
static bool worker_addr(const json_t *w, roo__addr *ret_addr)
{
    const char *ext = json_string_value(json_object_get(w, "external"));

    return ext && ext[0] && roo__addr_parse(ext, ret_addr) == 0;
}

/*
 * What a query gathers from the workers it asks: the values as they come, printed (for
 * JSON) or as table rows; every page of every worker, so only as text, never as jansson
 * values. Each worker answers for the partitions it owns, so each key comes once.
 */
typedef struct gathered {
    ctl_format format;
    roo__buf members;    /* JSON: the members of "values", printed (roo__json_members_add) */
    ctl_rows rows;       /* table */
    size_t count;        /* values */
    json_t *asked;       /* the names of the workers asked */
    json_t *unreachable; /* the names of those whose keys are missing */
    json_t *not_owned;   /* keys a worker was asked for and does not own (their text) */
} gathered;

/* A query page's "next", the cursor to send back as `after`: hex digits only, to bytes. */
static int cursor_of(const json_t *next, roo__buf *ret_after)
{
    const char *hex = json_string_value(next);
    size_t n = json_string_length(next);

    ret_after->len = 0;
    if (!hex || n == 0 || n % 2)
        return ROO_EWIRE;
    for (size_t i = 0; i < n; i += 2) {
        int hi = roo__hex_digit(hex[i]), lo = roo__hex_digit(hex[i + 1]);
        uint8_t byte = (uint8_t)(hi * 16 + lo);
        if (hi < 0 || lo < 0)
            return ROO_EWIRE;
        roo__buf_append(ret_after, &byte, 1);
    }
    return 0;
}

/*
 * Every page of one worker's answer to req, merged into g. A worker's "no" (a state type
 * it does not have...) comes back in *ret_error; an answer that is not a query's, as
 * ROO_EWIRE with a line on stderr.
 */
static int query_worker(const roo__addr *wa, const roo__ext_request *req, int64_t deadline,
                        gathered *g, char **ret_error)
{
    roo__ext_request page = *req;
    roo__buf after = { 0 };
    int rc;

    for (;;) {
        bool ok = false;
        char *text = NULL;
        json_t *doc = NULL, *values, *next, *not_owned;
        bool more;

        page.after = after;
        rc = ctl_request(wa, &page, deadline, &ok, &text, ret_error);
        if (rc == 0 && !ok)
            rc = -EPROTO;
        if (rc == 0)
            rc = ctl_parse_answer(text, ctl_addr_text(wa), &doc);
        free(text);
        if (rc < 0)
            break;
        values = json_object_get(doc, "values");
        next = json_object_get(doc, "next");
        not_owned = json_object_get(doc, "not_owned");
        if (!json_is_object(values) || (next && !json_is_null(next) && !json_is_string(next))) {
            fprintf(stderr, "roo-ctl: %s: the answer is not a query's\n", ctl_addr_text(wa));
            rc = ROO_EWIRE;
        } else {
            for (void *it = json_object_iter(values); it; it = json_object_iter_next(values, it)) {
                const char *key = json_object_iter_key(it);
                size_t len = json_object_iter_key_len(it);
                if (g->format == CTL_TABLE)
                    ctl_rows_add(&g->rows, key, len, json_object_iter_value(it));
                else
                    roo__json_members_add(&g->members, key, len, json_object_iter_value(it));
                g->count++;
            }
            if (json_is_array(not_owned))
                roo__json_extend(g->not_owned, not_owned);
            if (json_is_string(next) && (rc = cursor_of(next, &after)) < 0)
                fprintf(stderr, "roo-ctl: %s: a query page's cursor is not hex\n",
                        ctl_addr_text(wa));
        }
        more = json_is_string(next);
        json_decref(doc); /* and next with it */
        if (rc < 0 || !more)
            break;
        free(*ret_error);
        *ret_error = NULL;
    }
    roo__buf_finish(&after);
    return rc;
}

/* Add a worker's name to a list of them ("asked", "unreachable"), once. */
static void add_name(json_t *names, const char *name)
{
    for (size_t i = 0; i < json_array_size(names); i++)
        if (strcmp(json_string_value(json_array_get(names, i)), name) == 0)
            return;
    roo__json_push(names, roo__json_str(name));
}

/* The index of the worker that owns key, as the engine places it (state/table.h). */
static json_int_t owner_of(const view *v, const roo__buf *key)
{
    uint16_t p = roo__partition_of(roo__key_hash(key->data, key->len), v->partitions);

    return json_integer_value(json_array_get(v->owners, p));
}

/* A key as the workers print it (buf.h), for messages and to match their "not_owned". */
static void key_text(const roo__buf *key, roo__buf *ret_text)
{
    ret_text->len = 0;
    roo__buf_append_key_text(ret_text, key->data, key->len);
    roo__buf_append(ret_text, "", 1);
}

/* A whole-state query: every worker answers for the partitions it owns. */
static int query_all(const view *v, const roo__ext_request *req, uint64_t timeout_s, gathered *g)
{
    int rc = 0;

    for (size_t i = 0; i < json_array_size(v->workers); i++) {
        const json_t *w = json_array_get(v->workers, i);
        const char *name = worker_name(w);
        char *error = NULL;
        roo__addr wa;
        int qrc;

        if (!worker_addr(w, &wa)) {
            fprintf(stderr, "roo-ctl: worker %s has no --external address: its keys are missing\n",
                    name);
            add_name(g->unreachable, name);
            rc = 1;
            continue;
        }
        add_name(g->asked, name);
        qrc = query_worker(&wa, req, ctl_now_ms() + (int64_t)timeout_s * 1000, g, &error);
        if (qrc < 0) {
            fprintf(stderr, "roo-ctl: worker %s (%s) did not answer: %s\n", name,
                    ctl_addr_text(&wa), error && *error ? error : roo_strerror(qrc));
            add_name(g->unreachable, name);
            rc = 1;
        }
        free(error);
    }
    return rc;
}

/*
 * Named keys: each goes to its owner only, found as the engine finds it (state/table.h:
 * the key's hash scaled to the partitions, then the table). A worker names the keys it
 * was asked for and does not own: the table changed since the status (a partition move),
 * so roo-ctl reads the status again and asks their new owner, a few times at most.
 */
static int query_keys(const targets *t, view *v, const roo__ext_request *req, gathered *g)
{
    size_t n = req->nkeys;
    bool *todo = roo__xcalloc(n, sizeof(bool)), *done = roo__xcalloc(n, sizeof(bool));
    roo__buf *sub = roo__xcalloc(n, sizeof(roo__buf)), *texts = roo__xcalloc(n, sizeof(roo__buf));
    roo__buf list = { 0 };
    int rc = 0;

    for (size_t i = 0; i < n; i++) {
        todo[i] = true;
        key_text(&req->keys[i], &texts[i]);
    }
    for (int round = 0;; round++) {
        size_t left = 0;
        for (size_t i = 0; i < n; i++)
            done[i] = !todo[i];
        /* One request per owner, with all of its keys. */
        for (size_t i = 0; i < n; i++) {
            json_int_t owner;
            roo__ext_request part = *req;
            const json_t *w;
            char *error = NULL;
            roo__addr wa;
            int qrc;
            if (done[i])
                continue;
            owner = owner_of(v, &req->keys[i]);
            part.keys = sub;
            part.nkeys = 0;
            list.len = 0;
            for (size_t j = i; j < n; j++) {
                if (done[j] || owner_of(v, &req->keys[j]) != owner)
                    continue;
                done[j] = true;
                todo[j] = false;
                sub[part.nkeys++] = req->keys[j];
                if (list.len)
                    roo__buf_append(&list, ", ", 2);
                roo__buf_append(&list, texts[j].data, texts[j].len - 1);
            }
            roo__buf_append(&list, "", 1);
            w = worker_at(v, owner);
            if (!w) {
                fprintf(stderr, "roo-ctl: the status lists no worker %lld, the owner of %s\n",
                        (long long)owner, (const char *)list.data);
                rc = 1;
                continue;
            }
            if (!worker_addr(w, &wa)) {
                fprintf(stderr,
                        "roo-ctl: worker %s, the owner of %s, has no --external address: "
                        "cannot read them\n",
                        worker_name(w), (const char *)list.data);
                add_name(g->unreachable, worker_name(w));
                rc = 1;
                continue;
            }
            add_name(g->asked, worker_name(w));
            qrc = query_worker(&wa, &part, ctl_now_ms() + (int64_t)t->timeout_s * 1000, g, &error);
            if (qrc < 0) {
                fprintf(stderr, "roo-ctl: worker %s (%s), the owner of %s, did not answer: %s\n",
                        worker_name(w), ctl_addr_text(&wa), (const char *)list.data,
                        error && *error ? error : roo_strerror(qrc));
                add_name(g->unreachable, worker_name(w));
                rc = 1;
            }
            free(error);
        }
        /* The keys whose owner has changed: again, with a fresh table. */
        for (size_t i = 0; i < n; i++) {
            for (size_t x = 0; x < json_array_size(g->not_owned); x++) {
                const json_t *k = json_array_get(g->not_owned, x);
                if (json_string_length(k) == texts[i].len - 1 &&
                    memcmp(json_string_value(k), texts[i].data, texts[i].len - 1) == 0)
                    todo[i] = true;
            }
            left += todo[i];
        }
        json_array_clear(g->not_owned);
        if (!left || rc)
            break;
        if (round == 4) {
            fprintf(stderr,
                    "roo-ctl: %zu key(s) moved to another worker each time they were asked for "
                    "(partition moves under way?): ask again\n",
                    left);
            rc = 1;
            break;
        }
        usleep(200 * 1000);
        view_finish(v);
        if (view_fetch(t, v) < 0 || !v->owners) {
            rc = 1;
            break;
        }
    }
    for (size_t i = 0; i < n; i++)
        roo__buf_finish(&texts[i]);
    roo__buf_finish(&list);
    free(texts);
    free(sub);
    free(done);
    free(todo);
    return rc;
}

/*
 * query: the status says who the workers are and who owns what; their answers, every page,
 * merge into one document: {"workers": N, "unreachable": [...], "asked": [...], "count": N,
 * "values": {...}}. Exit 1 if some keys could not be read.
 */
int ctl_query(const targets *t, const roo__ext_request *req, ctl_format format)
{
    gathered g = { .format = format,
                   .asked = roo__json_array(),
                   .unreachable = roo__json_array(),
                   .not_owned = roo__json_array() };
    json_t *root;
    char *text;
    view v = { 0 };
    int rc;

    if (view_fetch(t, &v) < 0) {
        rc = 1;
        goto out;
    }
    if (req->nkeys && v.owners)
        rc = query_keys(t, &v, req, &g);
    else
        rc = query_all(&v, req, t->timeout_s, &g); /* no table yet: everyone, as for all keys */
    if (!v.status)
        goto out; /* the status could not be read again */
    if (format == CTL_TABLE) {
        ctl_rows_print(&g.rows, stdout);
        goto out;
    }
    root = roo__json_object();
    roo__json_set(root, "workers", roo__json_u64(json_array_size(v.workers)));
    roo__json_set(root, "unreachable", json_incref(g.unreachable));
    roo__json_set(root, "asked", json_incref(g.asked));
    roo__json_set(root, "count", roo__json_u64(g.count));
    text = roo__json_text_last(root, NULL, "values", &g.members);
    fputs(text, stdout);
    free(text);
    json_decref(root);
out:
    view_finish(&v);
    roo__buf_finish(&g.members);
    roo__buf_finish(&g.rows.text);
    json_decref(g.asked);
    json_decref(g.unreachable);
    json_decref(g.not_owned);
    return rc;
}
