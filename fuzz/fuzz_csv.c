/*
 * libFuzzer target for od_csv_parse and od_csv_put (libs/csv).
 * Properties checked beyond "no crash, no sanitizer report":
 *  - records come with recno 0, 1, 2..., non-decreasing lines, 1 to 100
 *    fields, no field NULL; an error has its stable code and a line within
 *    the input's lines; OD_CSV_EUTF8 exactly when an independent, slow
 *    code-point decoder rejects the input, and then no record was given;
 *  - round trip: every record read (also before an error) written back with
 *    od_csv_put, `,` and CRLF, after a BOM, reads back to the same cells, a
 *    neutralised cell with its `'` in front; records whose cells are all
 *    empty vanish as blank lines, as documented.
 */
#include "od/csv.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define MAX_FIELDS 100

/* Valid UTF-8 without NUL, by decoding each code point: the reference for
 * the table-driven validator in csv.c. */
static int utf8_ok(const uint8_t *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        uint32_t c = s[i], cp, min;
        size_t k;
        if (c < 0x80) {
            if (c == 0)
                return 0;
            i++;
            continue;
        } else if ((c & 0xE0) == 0xC0) {
            k = 1, cp = c & 0x1F, min = 0x80;
        } else if ((c & 0xF0) == 0xE0) {
            k = 2, cp = c & 0x0F, min = 0x800;
        } else if ((c & 0xF8) == 0xF0) {
            k = 3, cp = c & 0x07, min = 0x10000;
        } else {
            return 0;
        }
        if (i + k >= n)
            return 0;
        for (size_t j = 1; j <= k; j++) {
            if ((s[i + j] & 0xC0) != 0x80)
                return 0;
            cp = cp << 6 | (s[i + j] & 0x3F);
        }
        if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
            return 0;
        i += k + 1;
    }
    return 1;
}

typedef struct state {
    size_t records, last_line;
    od_buf_t out;    /* the records written back */
    od_buf_t expect; /* per expected record: n, then per cell its length and bytes (size_t, raw) */
    size_t pos;      /* read position in expect on the second pass */
} state_t;

static void put_size(od_buf_t *b, size_t v)
{
    od_buf_append(b, &v, sizeof(v));
}

static size_t get_size(state_t *st)
{
    size_t v;
    if (st->pos + sizeof(v) > st->expect.len)
        abort();
    memcpy(&v, st->expect.base + st->pos, sizeof(v));
    st->pos += sizeof(v);
    return v;
}

static void check_record(state_t *st, size_t recno, size_t line, const od_csv_field_t *f, size_t n)
{
    if (recno != st->records || line < 1 || line < st->last_line || n < 1 || n > MAX_FIELDS)
        abort();
    for (size_t i = 0; i < n; i++)
        if (f[i].p == NULL)
            abort();
    st->records++;
    st->last_line = line;
}

static int on_first(void *arg, size_t recno, size_t line, const od_csv_field_t *f, size_t n)
{
    state_t *st = arg;
    check_record(st, recno, line, f, n);
    int all_empty = 1;
    for (size_t i = 0; i < n; i++) {
        if (i)
            od_buf_append(&st->out, ",", 1);
        od_csv_put(&st->out, f[i].p, f[i].len);
        all_empty &= f[i].len == 0;
    }
    od_buf_append(&st->out, "\r\n", 2);
    if (all_empty)
        return 0;
    put_size(&st->expect, n);
    for (size_t i = 0; i < n; i++) {
        int q = od_csv_neutralised(f[i].p, f[i].len);
        put_size(&st->expect, f[i].len + (size_t)q);
        if (q)
            od_buf_append(&st->expect, "'", 1);
        od_buf_append(&st->expect, f[i].p, f[i].len);
    }
    return 0;
}

static int on_second(void *arg, size_t recno, size_t line, const od_csv_field_t *f, size_t n)
{
    state_t *st = arg;
    check_record(st, recno, line, f, n);
    if (get_size(st) != n)
        abort();
    for (size_t i = 0; i < n; i++) {
        size_t len = get_size(st);
        if (len != f[i].len || st->pos + len > st->expect.len || memcmp(st->expect.base + st->pos, f[i].p, len) != 0)
            abort();
        st->pos += len;
    }
    return 0;
}

static size_t count_lines(const uint8_t *s, size_t n)
{
    size_t lines = 1;
    for (size_t i = 0; i < n; i++)
        if (s[i] == '\n' || (s[i] == '\r' && (i + 1 == n || s[i + 1] != '\n')))
            lines++;
    return lines;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    state_t st = {.out = OD_BUF_INIT, .expect = OD_BUF_INIT};
    od_buf_append(&st.out, "\xEF\xBB\xBF", 3); /* a first cell may start with U+FEFF */
    od_csv_error_t err;
    od_csv_err_t rc = od_csv_parse((const char *)data, size, MAX_FIELDS, on_first, &st, &err);
    if (rc != err.code || rc == OD_CSV_EABORT)
        abort();
    if (rc == OD_CSV_OK) {
        if (err.line != 0 || od_csv_code(rc) != NULL)
            abort();
    } else if (err.line < 1 || err.line > count_lines(data, size) || od_csv_code(rc) == NULL) {
        abort();
    }
    if ((rc == OD_CSV_EUTF8) != !utf8_ok(data, size) || (rc == OD_CSV_EUTF8 && st.records != 0))
        abort();

    size_t first = st.records;
    st.records = st.last_line = 0;
    rc = od_csv_parse(st.out.base, st.out.len, MAX_FIELDS, on_second, &st, &err);
    if (rc != OD_CSV_OK || st.pos != st.expect.len || st.records > first)
        abort();
    od_buf_free(&st.out);
    od_buf_free(&st.expect);
    return 0;
}
