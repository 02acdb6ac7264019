#include "od/csv.h"

#include <assert.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "od/core.h"
#include "od/utf8.h"

#define ONES UINT64_C(0x0101010101010101)
#define HIGHS UINT64_C(0x8080808080808080)

/* The physical line holding byte `pos`: 1 + the line ends (LF, CRLF, lone CR)
 * before it. Only computed on an error, so a plain loop. */
static size_t line_of(const char *s, size_t len, size_t pos)
{
    size_t line = 1;
    for (size_t i = 0; i < pos; i++)
        if (s[i] == '\n' || (s[i] == '\r' && (i + 1 == len || s[i + 1] != '\n')))
            line++;
    return line;
}

/* ---- reader ---- */

typedef struct parser {
    const char *s;
    size_t len;
    size_t pos;  /* next byte to read */
    size_t line; /* physical line of s[pos] */
    size_t max_fields;
    od_csv_field_t *fields; /* the current record; p == NULL: unescaped into scratch, resolved at its end */
    size_t nfields, fields_cap;
    char *scratch; /* the current record's fields with `""`, one after the other */
    size_t scratch_len, scratch_cap;
    size_t err_line;
} parser_t;

static void scratch_append(parser_t *ps, const char *p, size_t n)
{
    if (ps->scratch_len + n > ps->scratch_cap) {
        size_t cap = ps->scratch_cap ? ps->scratch_cap : 256;
        while (cap < ps->scratch_len + n)
            cap *= 2;
        ps->scratch = od_realloc(ps->scratch, cap);
        ps->scratch_cap = cap;
    }
    memcpy(ps->scratch + ps->scratch_len, p, n);
    ps->scratch_len += n;
}

static void push_field(parser_t *ps, const char *p, size_t len)
{
    assert(ps->nfields < ps->max_fields);
    if (ps->nfields == ps->fields_cap) {
        size_t cap = ps->fields_cap ? ps->fields_cap * 2 : 16;
        if (cap > ps->max_fields)
            cap = ps->max_fields;
        ps->fields = od_realloc(ps->fields, cap * sizeof(*ps->fields));
        ps->fields_cap = cap;
    }
    ps->fields[ps->nfields++] = (od_csv_field_t){p, len};
}

/* At a CR or LF: steps over the line end, CRLF being one. */
static void skip_eol(parser_t *ps)
{
    if (ps->s[ps->pos] == '\r' && ps->pos + 1 < ps->len && ps->s[ps->pos + 1] == '\n')
        ps->pos++;
    ps->pos++;
    ps->line++;
}

/* An unquoted field from pos up to the next `,`, CR, LF or the end. */
static size_t unquoted_end(const parser_t *ps)
{
    const char *s = ps->s;
    size_t i = ps->pos, len = ps->len;
    /* 8 bytes at a time while none of them is special: x ^ (c * ONES) has a
     * zero byte where x has a c (the same zero-byte test as above). */
    while (i + 8 <= len) {
        uint64_t w;
        memcpy(&w, s + i, 8);
        uint64_t a = w ^ (ONES * ','), b = w ^ (ONES * '\r'), c = w ^ (ONES * '\n');
        if ((((a - ONES) & ~a) | ((b - ONES) & ~b) | ((c - ONES) & ~c)) & HIGHS)
            break;
        i += 8;
    }
    while (i < len && s[i] != ',' && s[i] != '\r' && s[i] != '\n')
        i++;
    return i;
}

/*
 * A quoted field, pos at its opening quote. Leaves pos after the closing
 * quote, which must be followed by `,`, CR, LF or the end. Without `""` the
 * field points into the input; with, it is unescaped into scratch and
 * pushed with p == NULL.
 */
static od_csv_err_t quoted_field(parser_t *ps, const char **p, size_t *flen)
{
    const char *s = ps->s;
    size_t len = ps->len, open_line = ps->line;
    size_t start = ps->pos + 1, run = start, i = start;
    size_t scratch_start = ps->scratch_len;
    bool unescaped = false;
    for (;;) {
        while (i < len && s[i] != '"') {
            if (s[i] == '\n' || (s[i] == '\r' && (i + 1 == len || s[i + 1] != '\n')))
                ps->line++;
            i++;
        }
        if (i == len) {
            ps->err_line = open_line;
            return OD_CSV_EQUOTE;
        }
        if (i + 1 < len && s[i + 1] == '"') { /* "" : keep one */
            scratch_append(ps, s + run, i + 1 - run);
            unescaped = true;
            i += 2;
            run = i;
            continue;
        }
        break;
    }
    if (unescaped) {
        scratch_append(ps, s + run, i - run);
        *p = NULL;
        *flen = ps->scratch_len - scratch_start;
    } else {
        *p = s + start;
        *flen = i - start;
    }
    ps->pos = i + 1;
    if (ps->pos < len && s[ps->pos] != ',' && s[ps->pos] != '\r' && s[ps->pos] != '\n') {
        ps->err_line = ps->line;
        return OD_CSV_EQUOTE;
    }
    return OD_CSV_OK;
}

/* Points the record's unescaped fields into scratch, now that it no longer moves. */
static void resolve_scratch(parser_t *ps)
{
    size_t off = 0;
    for (size_t k = 0; k < ps->nfields; k++) {
        if (ps->fields[k].p == NULL) {
            ps->fields[k].p = ps->scratch + off;
            off += ps->fields[k].len;
        }
    }
    assert(off == ps->scratch_len);
}

/*
 * Reads one record from pos (< len) to after its line end, or to the end.
 * *blank tells whether it was blank (all fields empty and unquoted); only
 * then may it be wider than max_fields, its extra empty fields dropped.
 */
static od_csv_err_t read_record(parser_t *ps, bool *blank)
{
    ps->nfields = 0;
    ps->scratch_len = 0;
    *blank = true;
    for (;;) {
        const char *p;
        size_t flen, field_line = ps->line;
        bool empty;
        if (ps->pos < ps->len && ps->s[ps->pos] == '"') {
            od_csv_err_t e = quoted_field(ps, &p, &flen);
            if (e != OD_CSV_OK)
                return e;
            empty = false;
        } else {
            size_t end = unquoted_end(ps);
            p = ps->s + ps->pos;
            flen = end - ps->pos;
            ps->pos = end;
            empty = flen == 0;
        }
        if (ps->nfields < ps->max_fields) {
            push_field(ps, p, flen);
        } else if (!*blank || !empty) {
            ps->err_line = field_line;
            return OD_CSV_ECOLUMNS;
        }
        if (!empty)
            *blank = false;

        if (ps->pos == ps->len)
            break;
        if (ps->s[ps->pos] == ',') {
            ps->pos++; /* a `,` at the very end still opens an empty field */
            continue;
        }
        skip_eol(ps);
        break;
    }
    if (ps->scratch_len > 0)
        resolve_scratch(ps);
    return OD_CSV_OK;
}

static od_csv_err_t parse(parser_t *ps, od_csv_record_fn fn, void *arg)
{
    size_t bad = od_utf8_invalid_at((const unsigned char *)ps->s, ps->len);
    if (bad != ps->len) {
        ps->err_line = line_of(ps->s, ps->len, bad);
        return OD_CSV_EUTF8;
    }
    if (ps->len >= 3 && memcmp(ps->s, "\xEF\xBB\xBF", 3) == 0)
        ps->pos = 3;
    size_t recno = 0;
    while (ps->pos < ps->len) {
        size_t rec_line = ps->line;
        bool blank;
        od_csv_err_t e = read_record(ps, &blank);
        if (e != OD_CSV_OK)
            return e;
        if (blank)
            continue;
        if (fn(arg, recno++, rec_line, ps->fields, ps->nfields) != 0) {
            ps->err_line = rec_line;
            return OD_CSV_EABORT;
        }
    }
    return OD_CSV_OK;
}

od_csv_err_t od_csv_parse(const char *buf, size_t len, size_t max_fields, od_csv_record_fn fn, void *arg,
                          od_csv_error_t *err)
{
    assert(buf != NULL || len == 0);
    assert(max_fields >= 1 && fn != NULL);
    parser_t ps = {.s = buf, .len = len, .line = 1, .max_fields = max_fields};
    od_csv_err_t e = parse(&ps, fn, arg);
    free(ps.fields);
    free(ps.scratch);
    if (err) {
        err->code = e;
        err->line = e == OD_CSV_OK ? 0 : ps.err_line;
    }
    return e;
}

const char *od_csv_code(od_csv_err_t e)
{
    switch (e) {
    case OD_CSV_EQUOTE:
        return "csv_unbalanced_quote";
    case OD_CSV_EUTF8:
        return "csv_not_utf8";
    case OD_CSV_ECOLUMNS:
        return "csv_too_many_columns";
    case OD_CSV_EABORT:
        return "csv_aborted";
    case OD_CSV_OK:
        break;
    }
    return NULL;
}

/* ---- writer ---- */

int od_csv_neutralised(const char *p, size_t len)
{
    if (len == 0)
        return 0;
    switch (p[0]) {
    case '=':
    case '@':
    case '\t':
    case '\r':
        return 1;
    case '+':
    case '-':
        break;
    default:
        return 0;
    }
    /* A signed number or a phone number cannot be a formula. */
    if (len < 2 || p[1] < '0' || p[1] > '9')
        return 1;
    for (size_t i = 2; i < len; i++) {
        char c = p[i];
        if (!((c >= '0' && c <= '9') || c == ' ' || c == '.' || c == '(' || c == ')' || c == '-'))
            return 1;
    }
    return 0;
}

void od_csv_put(od_buf_t *b, const char *p, size_t len)
{
    assert(p != NULL || len == 0);
    if (len == 0)
        return;
    bool prefix = od_csv_neutralised(p, len);
    /* With the prefix the cell starts with `'`, never with a space. */
    bool quote = (!prefix && p[0] == ' ') || p[len - 1] == ' ';
    for (size_t i = 0; i < len && !quote; i++)
        quote = p[i] == ',' || p[i] == '"' || p[i] == '\r' || p[i] == '\n';

    od_buf_reserve(b, len + 3);
    if (quote)
        od_buf_append(b, "\"", 1);
    if (prefix)
        od_buf_append(b, "'", 1);
    if (!quote) {
        od_buf_append(b, p, len);
        return;
    }
    size_t run = 0;
    for (size_t i = 0; i < len; i++) {
        if (p[i] == '"') {
            od_buf_append(b, p + run, i + 1 - run); /* the quote, then once more below */
            run = i;
        }
    }
    od_buf_append(b, p + run, len - run);
    od_buf_append(b, "\"", 1);
}
