/*
 * libFuzzer target for od_mp_boundary and od_mp_parse (libs/http).
 * The input's first line is a Content-Type value, the rest the body; when
 * the first line gives no boundary, "XyZ" is used so bodies still get
 * parsed.
 * Properties checked beyond "no crash, no sanitizer report":
 *  - a boundary found is 1–70 bytes inside the Content-Type value;
 *  - od_mp_parse returns 0 or -1; -1 comes with a message and no call of the
 *    callback; each part's data lies inside the body, after the previous
 *    part's, and never holds a delimiter line;
 *  - round trip: the parts read, written back as a canonical CRLF body
 *    (quoted name and filename with `"` and `\` escaped, the same
 *    Content-Type), read back to the same parts.
 */
#include "od/multipart.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "od/buf.h"

typedef struct state {
    const char *body;
    size_t len;
    const char *b;
    size_t blen;
    const char *prev_end; /* the end of the previous part's data */
    size_t parts;
    od_buf_t out;    /* the canonical body */
    od_buf_t expect; /* per part: 4 (pointer-free) strings as size_t length + bytes, -1 length for absent */
    size_t pos;
} state_t;

static void put_str(od_buf_t *b, const char *p, size_t len)
{
    size_t v = p == NULL ? SIZE_MAX : len;
    od_buf_append(b, &v, sizeof(v));
    if (p != NULL)
        od_buf_append(b, p, len);
}

static void check_str(state_t *st, const char *p, size_t len)
{
    size_t v;
    if (st->pos + sizeof(v) > st->expect.len)
        abort();
    memcpy(&v, st->expect.base + st->pos, sizeof(v));
    st->pos += sizeof(v);
    if ((p == NULL) != (v == SIZE_MAX))
        abort();
    if (p == NULL)
        return;
    if (v != len || st->pos + len > st->expect.len || memcmp(st->expect.base + st->pos, p, len) != 0)
        abort();
    st->pos += len;
}

/* A quoted-string with `"` and `\` escaped. */
static void put_quoted(od_buf_t *b, const char *p, size_t len)
{
    od_buf_append(b, "\"", 1);
    for (size_t i = 0; i < len; i++) {
        if (p[i] == '"' || p[i] == '\\')
            od_buf_append(b, "\\", 1);
        od_buf_append(b, p + i, 1);
    }
    od_buf_append(b, "\"", 1);
}

/* Whether `data` holds "\n--" boundary followed by `--` or by spaces/tabs
 * and a line end, i.e. a delimiter that should have ended it. */
static int holds_delimiter(const state_t *st, const char *data, size_t len)
{
    for (size_t i = 0; i + 3 + st->blen <= len; i++) {
        if (data[i] != '\n' || memcmp(data + i + 1, "--", 2) != 0 || memcmp(data + i + 3, st->b, st->blen) != 0)
            continue;
        size_t k = i + 3 + st->blen;
        if (k + 1 < len && data[k] == '-' && data[k + 1] == '-')
            return 1;
        while (k < len && (data[k] == ' ' || data[k] == '\t'))
            k++;
        if (k < len && (data[k] == '\n' || (data[k] == '\r' && k + 1 < len && data[k + 1] == '\n')))
            return 1;
    }
    return 0;
}

static int on_first(void *arg, const od_mp_part_t *p)
{
    state_t *st = arg;
    if (p->name == NULL || p->data == NULL || p->data < st->body || p->data + p->len > st->body + st->len ||
        p->data < st->prev_end || holds_delimiter(st, p->data, p->len))
        abort();
    st->prev_end = p->data + p->len;
    st->parts++;

    od_buf_append(&st->out, "--", 2);
    od_buf_append(&st->out, st->b, st->blen);
    od_buf_puts(&st->out, "\r\nContent-Disposition: form-data; name=");
    put_quoted(&st->out, p->name, p->name_len);
    if (p->filename != NULL) {
        od_buf_puts(&st->out, "; filename=");
        put_quoted(&st->out, p->filename, p->filename_len);
    }
    if (p->ctype != NULL) {
        od_buf_puts(&st->out, "\r\nContent-Type: ");
        od_buf_append(&st->out, p->ctype, p->ctype_len);
    }
    od_buf_puts(&st->out, "\r\n\r\n");
    od_buf_append(&st->out, p->data, p->len);
    od_buf_puts(&st->out, "\r\n");

    put_str(&st->expect, p->name, p->name_len);
    put_str(&st->expect, p->filename, p->filename_len);
    put_str(&st->expect, p->ctype, p->ctype_len);
    put_str(&st->expect, p->data, p->len);
    return 0;
}

static int on_second(void *arg, const od_mp_part_t *p)
{
    state_t *st = arg;
    check_str(st, p->name, p->name_len);
    check_str(st, p->filename, p->filename_len);
    check_str(st, p->ctype, p->ctype_len);
    check_str(st, p->data, p->len);
    st->parts++;
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *in = (const char *)data;
    const char *nl = memchr(in, '\n', size);
    size_t ct_len = nl ? (size_t)(nl - in) : size;
    const char *body = nl ? nl + 1 : in + size;
    size_t len = size - (size_t)(body - in);

    state_t st = {.body = body, .len = len, .out = OD_BUF_INIT, .expect = OD_BUF_INIT};
    if (od_mp_boundary(in, ct_len, &st.b, &st.blen) == 0) {
        if (st.blen < 1 || st.blen > OD_MP_BOUNDARY_MAX || st.b < in || st.b + st.blen > in + ct_len)
            abort();
    } else {
        st.b = "XyZ";
        st.blen = 3;
    }
    st.prev_end = body;

    const char *err = NULL;
    int rc = od_mp_parse(body, len, st.b, st.blen, on_first, &st, &err);
    if (rc == -1) {
        if (err == NULL || st.parts != 0)
            abort();
    } else if (rc != 0 || err != NULL) {
        abort();
    } else {
        size_t parts = st.parts;
        od_buf_append(&st.out, "--", 2);
        od_buf_append(&st.out, st.b, st.blen);
        od_buf_puts(&st.out, "--\r\n");
        st.parts = 0;
        rc = od_mp_parse(st.out.base, st.out.len, st.b, st.blen, on_second, &st, &err);
        if (rc != 0 || st.parts != parts || st.pos != st.expect.len)
            abort();
    }
    od_buf_free(&st.out);
    od_buf_free(&st.expect);
    return 0;
}
