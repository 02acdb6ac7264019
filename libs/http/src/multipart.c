#define _GNU_SOURCE /* memmem */
#include "od/multipart.h"

#include <assert.h>
#include <stdbool.h>
#include <string.h>

#include "od/buf.h"

/* ---- tokens and parameters (RFC 9110 §5.6) ---- */

static bool is_tchar(unsigned char c)
{
    if ((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'))
        return true;
    return c != '\0' && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

static bool is_ows(char c)
{
    return c == ' ' || c == '\t';
}

/* ASCII case-insensitive equality with a lower-case literal. No locale. */
static bool eq_lower(const char *p, size_t len, const char *lit)
{
    size_t n = strlen(lit);
    if (len != n)
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = p[i];
        if (c >= 'A' && c <= 'Z')
            c = (char)(c - 'A' + 'a');
        if (c != lit[i])
            return false;
    }
    return true;
}

static size_t skip_ows(const char *s, size_t n, size_t i)
{
    while (i < n && is_ows(s[i]))
        i++;
    return i;
}

static size_t token_end(const char *s, size_t n, size_t i)
{
    while (i < n && is_tchar((unsigned char)s[i]))
        i++;
    return i;
}

typedef struct param {
    const char *name;
    size_t name_len;
    const char *val; /* a quoted value without its quotes, backslashes still in */
    size_t val_len;
    bool quoted;
    bool escaped; /* the quoted value has a backslash */
} param_t;

/*
 * The next `OWS ";" OWS name=value` of a header value s[*i..n), skipping
 * empty parameters (`;;`). Returns 1 with *pm, 0 at the end of the value,
 * -1 if malformed.
 */
static int next_param(const char *s, size_t n, size_t *i, param_t *pm)
{
    size_t k = skip_ows(s, n, *i);
    for (;;) {
        if (k == n)
            return 0;
        if (s[k] != ';')
            return -1;
        k = skip_ows(s, n, k + 1);
        if (k < n && s[k] != ';')
            break;
    }
    if (k == n)
        return 0;
    size_t e = token_end(s, n, k);
    if (e == k || e == n || s[e] != '=')
        return -1;
    pm->name = s + k;
    pm->name_len = e - k;
    k = e + 1;
    pm->quoted = pm->escaped = false;
    if (k < n && s[k] == '"') {
        size_t start = ++k;
        for (;; k++) {
            if (k == n)
                return -1; /* never closes */
            unsigned char c = (unsigned char)s[k];
            if (c == '"')
                break;
            if (c == '\\') {
                pm->escaped = true;
                if (++k == n)
                    return -1;
                c = (unsigned char)s[k];
            }
            if ((c < 0x20 && c != '\t') || c == 0x7f)
                return -1; /* no control characters, escaped or not */
        }
        pm->val = s + start;
        pm->val_len = k - start;
        pm->quoted = true;
        k++;
    } else {
        e = token_end(s, n, k);
        if (e == k)
            return -1;
        pm->val = s + k;
        pm->val_len = e - k;
        k = e;
    }
    *i = k;
    return 1;
}

/* RFC 2046 bchars. */
static bool is_bchar(char c)
{
    if ((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'))
        return true;
    return c != '\0' && strchr("'()+_,-./:=? ", c) != NULL;
}

int od_mp_boundary(const char *ctype, size_t len, const char **b, size_t *blen)
{
    assert(ctype != NULL || len == 0);
    static const char mt[] = "multipart/form-data";
    size_t i = skip_ows(ctype, len, 0);
    if (len - i < sizeof(mt) - 1 || !eq_lower(ctype + i, sizeof(mt) - 1, mt))
        return -1;
    i += sizeof(mt) - 1;
    const char *found = NULL;
    size_t found_len = 0;
    param_t pm;
    int rc;
    while ((rc = next_param(ctype, len, &i, &pm)) == 1) {
        if (!eq_lower(pm.name, pm.name_len, "boundary"))
            continue;
        if (found != NULL || pm.escaped)
            return -1;
        found = pm.val;
        found_len = pm.val_len;
    }
    if (rc < 0 || found == NULL || found_len == 0 || found_len > OD_MP_BOUNDARY_MAX ||
        found[found_len - 1] == ' ')
        return -1;
    for (size_t k = 0; k < found_len; k++)
        if (!is_bchar(found[k]))
            return -1;
    *b = found;
    *blen = found_len;
    return 0;
}

/* ---- the body ---- */

typedef struct mp {
    const char *s;
    size_t len;
    char needle[3 + OD_MP_BOUNDARY_MAX]; /* "\n--" boundary: every delimiter but a first one at offset 0 */
    size_t nlen;
    const char *err;
} mp_t;

/* The delimiter kinds, after "--" boundary. */
enum { NOT_DELIM, DELIM, CLOSE };

/* What follows "--" boundary at s[i]: `--` closes; spaces or tabs and a line
 * end make a delimiter line (*next after it); anything else is data. */
static int delimiter_tail(const mp_t *m, size_t i, size_t *next)
{
    const char *s = m->s;
    size_t len = m->len;
    if (i + 1 < len && s[i] == '-' && s[i + 1] == '-')
        return CLOSE;
    i = skip_ows(s, len, i);
    if (i < len && s[i] == '\n') {
        *next = i + 1;
        return DELIM;
    }
    if (i + 1 < len && s[i] == '\r' && s[i + 1] == '\n') {
        *next = i + 2;
        return DELIM;
    }
    return NOT_DELIM;
}

/* The first delimiter whose "\n" is at or after `from`: its kind, *at the
 * position of that "\n", *next after its line; NOT_DELIM if none. */
static int find_delimiter(const mp_t *m, size_t from, size_t *at, size_t *next)
{
    while (from < m->len) {
        const char *p = memmem(m->s + from, m->len - from, m->needle, m->nlen);
        if (p == NULL)
            break;
        size_t pos = (size_t)(p - m->s);
        int kind = delimiter_tail(m, pos + m->nlen, next);
        if (kind != NOT_DELIM) {
            *at = pos;
            return kind;
        }
        from = pos + 1; /* "--boundary" followed by other text: data */
    }
    return NOT_DELIM;
}

static int fail(mp_t *m, const char *msg)
{
    m->err = msg;
    return -1;
}

typedef struct headers {
    const char *cd, *ct; /* values, trimmed; NULL if absent */
    size_t cd_len, ct_len;
} headers_t;

/*
 * Reads the header block from *pos up to and including the empty line that
 * ends it; *pos is then the start of the data.
 */
static int read_headers(mp_t *m, size_t *pos, headers_t *h)
{
    const char *s = m->s;
    size_t i = *pos;
    memset(h, 0, sizeof(*h));
    for (;;) {
        const char *nl = i < m->len ? memchr(s + i, '\n', m->len - i) : NULL;
        if (nl == NULL)
            return fail(m, "part headers not terminated by an empty line");
        size_t end = (size_t)(nl - s), next = end + 1;
        if (end > i && s[end - 1] == '\r')
            end--;
        if (end == i) {
            *pos = next;
            return 0;
        }
        /* the next delimiter where an empty line should have been */
        if (end - i >= m->nlen - 1 && memcmp(s + i, m->needle + 1, m->nlen - 1) == 0)
            return fail(m, "part headers not terminated by an empty line");
        size_t colon = token_end(s, end, i);
        if (colon == i || colon == end || s[colon] != ':')
            return fail(m, "malformed part header");
        size_t vs = skip_ows(s, end, colon + 1), ve = end;
        while (ve > vs && is_ows(s[ve - 1]))
            ve--;
        for (size_t k = vs; k < ve; k++)
            if ((unsigned char)s[k] < 0x20 && s[k] != '\t')
                return fail(m, "malformed part header");
        const char **slot = NULL;
        size_t *slot_len = NULL;
        if (eq_lower(s + i, colon - i, "content-disposition")) {
            slot = &h->cd;
            slot_len = &h->cd_len;
        } else if (eq_lower(s + i, colon - i, "content-type")) {
            slot = &h->ct;
            slot_len = &h->ct_len;
        }
        if (slot != NULL) {
            if (*slot != NULL)
                return fail(m, "a part header is given twice");
            *slot = s + vs;
            *slot_len = ve - vs;
        }
        i = next;
    }
}

/* Appends a quoted value to `b`, reading `\"` as `"` and `\\` as `\`. */
static void unescape(od_buf_t *b, const param_t *pm)
{
    size_t run = 0;
    for (size_t k = 0; k < pm->val_len; k++) {
        if (pm->val[k] == '\\' && k + 1 < pm->val_len && (pm->val[k + 1] == '"' || pm->val[k + 1] == '\\')) {
            od_buf_append(b, pm->val + run, k - run);
            run = ++k; /* keep the escaped character, skip it as an escape */
        }
    }
    od_buf_append(b, pm->val + run, pm->val_len - run);
}

/*
 * The name and filename of a Content-Disposition value. With `scratch`,
 * escaped values are unescaped into it (the part's pointers are set after
 * both, as appending may move it); without, they are only checked.
 */
static int disposition(mp_t *m, const headers_t *h, od_mp_part_t *part, od_buf_t *scratch)
{
    if (h->cd == NULL)
        return fail(m, "part without Content-Disposition");
    const char *s = h->cd;
    size_t n = h->cd_len, i = token_end(s, n, 0);
    if (!eq_lower(s, i, "form-data"))
        return fail(m, "Content-Disposition is not form-data");
    param_t pm, name = {0}, filename = {0};
    bool have_name = false, have_filename = false;
    int rc;
    while ((rc = next_param(s, n, &i, &pm)) == 1) {
        bool is_name = eq_lower(pm.name, pm.name_len, "name");
        if (!is_name && !eq_lower(pm.name, pm.name_len, "filename"))
            continue;
        if (is_name ? have_name : have_filename)
            return fail(m, "malformed Content-Disposition");
        *(is_name ? &name : &filename) = pm;
        *(is_name ? &have_name : &have_filename) = true;
    }
    if (rc < 0)
        return fail(m, "malformed Content-Disposition");
    if (!have_name)
        return fail(m, "Content-Disposition without a name");
    if (scratch == NULL)
        return 0;

    od_buf_reset(scratch);
    size_t name_off = 0, filename_off = 0;
    if (name.escaped)
        unescape(scratch, &name);
    size_t name_len = name.escaped ? scratch->len : name.val_len;
    if (have_filename && filename.escaped) {
        filename_off = scratch->len;
        unescape(scratch, &filename);
    }
    part->name = name.escaped ? scratch->base + name_off : name.val;
    part->name_len = name_len;
    if (have_filename) {
        part->filename = filename.escaped ? scratch->base + filename_off : filename.val;
        part->filename_len = filename.escaped ? scratch->len - filename_off : filename.val_len;
    }
    return 0;
}

/*
 * One walk over the body: with fn NULL only checks it, else gives each part
 * to fn. The check pass goes first, so the giving pass cannot fail.
 */
static int walk(mp_t *m, int (*fn)(void *arg, const od_mp_part_t *p), void *arg, od_buf_t *scratch)
{
    size_t at, pos, blen = m->nlen - 3;
    int kind = NOT_DELIM;
    /* The first delimiter may open the body, without a line end before it. */
    if (m->len >= 2 + blen && memcmp(m->s, m->needle + 1, 2 + blen) == 0)
        kind = delimiter_tail(m, 2 + blen, &pos);
    if (kind == NOT_DELIM)
        kind = find_delimiter(m, 0, &at, &pos);
    if (kind == NOT_DELIM)
        return fail(m, "no opening boundary");

    while (kind == DELIM) {
        headers_t h;
        od_mp_part_t part = {0};
        if (read_headers(m, &pos, &h) != 0 || disposition(m, &h, &part, fn ? scratch : NULL) != 0)
            return -1;
        size_t data = pos;
        if ((kind = find_delimiter(m, data, &at, &pos)) == NOT_DELIM)
            return fail(m, "no closing boundary");
        if (fn == NULL)
            continue;
        /* the line end before "--" boundary is the delimiter's */
        size_t end = at > data && m->s[at - 1] == '\r' ? at - 1 : at;
        part.ctype = h.ct;
        part.ctype_len = h.ct_len;
        part.data = m->s + data;
        part.len = end - data;
        int rc = fn(arg, &part);
        if (rc != 0)
            return rc;
    }
    return 0;
}

int od_mp_parse(const char *body, size_t len, const char *boundary, size_t blen,
                int (*fn)(void *arg, const od_mp_part_t *p), void *arg, const char **err)
{
    assert(body != NULL || len == 0);
    assert(boundary != NULL || blen == 0);
    assert(fn != NULL);
    mp_t m = {.s = body, .len = len, .nlen = 3 + blen};
    int rc;
    if (blen == 0) {
        rc = fail(&m, "empty boundary");
    } else if (blen > OD_MP_BOUNDARY_MAX) {
        rc = fail(&m, "boundary longer than 70 characters");
    } else {
        memcpy(m.needle, "\n--", 3);
        memcpy(m.needle + 3, boundary, blen);
        rc = walk(&m, NULL, NULL, NULL);
        if (rc == 0) {
            od_buf_t scratch = OD_BUF_INIT;
            rc = walk(&m, fn, arg, &scratch);
            od_buf_free(&scratch);
        }
    }
    if (err != NULL)
        *err = m.err; /* NULL unless malformed, also when fn returned -1 */
    return rc;
}
