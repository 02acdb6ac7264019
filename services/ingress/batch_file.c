#define _GNU_SOURCE /* qsort_r */
#include "batch_file.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "od/core.h"
#include "od/utf8.h"
#include "od/csv.h"
#include "od/phone.h"

/* One data row while the file is read; the JSON rows are written at the end, once duplicates are known. */
typedef struct row {
    char phone[OD_PHONE_E164_SIZE]; /* "" when rejected before the phone check */
    const char *error;              /* NULL: accepted so far */
    size_t line_off, line_len;      /* in reader.lines */
    size_t meta_off, meta_len;      /* in reader.metas */
} row_t;

typedef struct reader {
    od_batch_file_t *out;
    size_t max_rows;
    int check_only;                 /* od_batch_file_check: count the rows, nothing else */
    size_t ncols, phone_col;
    char **names;                   /* trimmed header names */
    row_t *rows;
    size_t nrows, caprows;
    od_buf_t lines, metas;
} reader_t;

static void fail(od_batch_file_t *out, int status, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void fail(od_batch_file_t *out, int status, const char *code, const char *fmt, ...)
{
    va_list ap;
    out->status = status;
    out->code = code;
    va_start(ap, fmt);
    vsnprintf(out->detail, sizeof(out->detail), fmt, ap);
    va_end(ap);
}

static void trim(const char **p, size_t *len)
{
    while (*len > 0 && (**p == ' ' || **p == '\t')) {
        (*p)++;
        (*len)--;
    }
    while (*len > 0 && ((*p)[*len - 1] == ' ' || (*p)[*len - 1] == '\t'))
        (*len)--;
}

int od_batch_phone(const char *cell, size_t len, char out[17])
{
    char digits[40];
    size_t n = 0;
    for (size_t i = 0; i < len; i++) {
        char c = cell[i];
        if (c == ' ' || c == '\t' || c == '-' || c == '.' || c == '(' || c == ')')
            continue;
        if (n == sizeof(digits)) {
            out[0] = '\0';
            return -1;
        }
        digits[n++] = c;
    }
    return od_phone_parse_e164(digits, n, out, NULL);
}

static int on_header(reader_t *r, const od_csv_field_t *f, size_t n, size_t line)
{
    od_batch_file_t *out = r->out;
    r->ncols = n;
    r->names = od_calloc(n, sizeof(char *));
    r->phone_col = SIZE_MAX;
    od_buf_puts(&out->columns, "[");
    for (size_t i = 0; i < n; i++) {
        const char *p = f[i].p;
        size_t len = f[i].len;
        trim(&p, &len);
        if (len == 0) {
            fail(out, 422, "csv_empty_column_name", "column %zu of the header (line %zu) has no name", i + 1, line);
            return -1;
        }
        r->names[i] = od_malloc(len + 1);
        memcpy(r->names[i], p, len);
        r->names[i][len] = '\0';
        for (size_t k = 0; k < i; k++) {
            if (strcasecmp(r->names[k], r->names[i]) == 0) {
                fail(out, 422, "csv_duplicate_column", "the header names column \"%.*s\" twice (line %zu)",
                     (int)od_utf8_cut(r->names[i], len, 80), r->names[i], line);
                return -1;
            }
        }
        if (strcasecmp(r->names[i], "phone") == 0)
            r->phone_col = i;
        od_buf_puts(&out->columns, i ? "," : "");
        od_buf_json_str(&out->columns, p, len);
        if (i)
            od_buf_puts(&out->header_line, ",");
        od_csv_put(&out->header_line, p, len);
    }
    od_buf_puts(&out->columns, "]");
    if (r->phone_col == SIZE_MAX) {
        fail(out, 422, "csv_no_phone_column", "the header (line %zu) has no column named \"phone\"", line);
        return -1;
    }
    return 0;
}

static int on_row(reader_t *r, const od_csv_field_t *f, size_t n)
{
    if (r->nrows == r->max_rows) {
        fail(r->out, 422, "csv_too_many_rows", "a batch holds at most %zu rows", r->max_rows);
        return -1;
    }
    if (r->check_only) {
        r->nrows++;
        return 0;
    }
    if (r->nrows == r->caprows) {
        r->caprows = r->caprows ? r->caprows * 2 : 1024;
        r->rows = od_realloc(r->rows, r->caprows * sizeof(row_t));
    }
    row_t *row = &r->rows[r->nrows++];
    memset(row, 0, sizeof(*row));
    /* the cells for results.csv: the header's columns, a missing cell empty */
    row->line_off = r->lines.len;
    for (size_t i = 0; i < r->ncols; i++) {
        if (i)
            od_buf_puts(&r->lines, ",");
        if (i < n)
            od_csv_put(&r->lines, f[i].p, f[i].len);
    }
    row->line_len = r->lines.len - row->line_off;
    if (n > r->ncols) {
        row->error = "too_many_fields";
        return 0;
    }
    if (r->phone_col >= n || od_batch_phone(f[r->phone_col].p, f[r->phone_col].len, row->phone) != 0) {
        row->phone[0] = '\0';
        row->error = "invalid_phone";
        return 0;
    }
    row->meta_off = r->metas.len;
    od_buf_puts(&r->metas, "{");
    int first = 1;
    for (size_t i = 0; i < r->ncols; i++) {
        if (i == r->phone_col)
            continue;
        od_buf_puts(&r->metas, first ? "" : ",");
        first = 0;
        od_buf_json_str(&r->metas, r->names[i], strlen(r->names[i]));
        od_buf_puts(&r->metas, ":");
        od_buf_json_str(&r->metas, i < n ? f[i].p : "", i < n ? f[i].len : 0);
    }
    od_buf_puts(&r->metas, "}");
    row->meta_len = r->metas.len - row->meta_off;
    if (row->meta_len > OD_BATCH_METADATA_MAX)
        row->error = "metadata_too_large";
    return 0;
}

static int on_record(void *arg, size_t recno, size_t line, const od_csv_field_t *f, size_t n)
{
    reader_t *r = arg;
    return recno == 0 ? on_header(r, f, n, line) : on_row(r, f, n);
}

/* by phone, then row order: the first of equal phones keeps its call */
static int cmp_phone(const void *a, const void *b, void *arg)
{
    const row_t *rows = arg;
    size_t i = *(const size_t *)a, j = *(const size_t *)b;
    int c = strcmp(rows[i].phone, rows[j].phone);
    return c ? c : (i < j ? -1 : i > j);
}

static void mark_duplicates(reader_t *r)
{
    size_t *idx = od_malloc((r->nrows ? r->nrows : 1) * sizeof(size_t));
    size_t n = 0;
    for (size_t i = 0; i < r->nrows; i++)
        if (r->rows[i].error == NULL)
            idx[n++] = i;
    qsort_r(idx, n, sizeof(size_t), cmp_phone, r->rows);
    for (size_t k = 1; k < n; k++)
        if (strcmp(r->rows[idx[k]].phone, r->rows[idx[k - 1]].phone) == 0)
            r->rows[idx[k]].error = "duplicate_phone";
    free(idx);
}

/*
 * The call ids of one batch: one UUIDv7, then its last 48 bits counted up
 * (RFC 9562's monotonic random): ids in row order, so the scheduler, which
 * takes a batch's calls by (due time, id), dials the rows in file order.
 * The top bit of the counter starts clear: 2^47 rows before it could wrap.
 */
static void next_call_id(char base[37], uint64_t *counter, char out[37])
{
    if (*counter == UINT64_MAX) {
        od_uuid7(base);
        *counter = strtoull(base + 24, NULL, 16) & 0x7fffffffffffULL;
    }
    memcpy(out, base, 24);
    snprintf(out + 24, 13, "%012llx", (unsigned long long)((*counter)++ & 0xffffffffffffULL));
}

static void write_rows(reader_t *r, const char *prefix)
{
    od_batch_file_t *out = r->out;
    char base[37];
    uint64_t counter = UINT64_MAX;
    od_buf_reserve(&out->rows, (prefix ? strlen(prefix) : 0) + r->lines.len + r->metas.len + r->nrows * 96 + 2);
    if (prefix != NULL)
        od_buf_puts(&out->rows, prefix);
    od_buf_puts(&out->rows, "[");
    const char *lines = r->lines.base ? r->lines.base : ""; /* NULL when every row's cells were empty */
    for (size_t i = 0; i < r->nrows; i++) {
        const row_t *row = &r->rows[i];
        od_buf_printf(&out->rows, "%s[%zu,", i ? "," : "", i + 1);
        if (row->error == NULL) {
            char id[37];
            next_call_id(base, &counter, id);
            od_buf_printf(&out->rows, "\"%s\",\"%s\",null,", id, row->phone);
            od_buf_append(&out->rows, r->metas.base + row->meta_off, row->meta_len);
            out->accepted++;
        } else {
            od_buf_printf(&out->rows, "null,null,\"%s\",null", row->error);
            out->rejected++;
        }
        od_buf_puts(&out->rows, ",");
        od_buf_json_str(&out->rows, lines + row->line_off, row->line_len);
        od_buf_puts(&out->rows, "]");
    }
    od_buf_puts(&out->rows, "]");
    out->total = r->nrows;
}

static int read_file(const char *csv, size_t len, size_t max_rows, const char *prefix, int check_only,
                     od_batch_file_t *out)
{
    memset(out, 0, sizeof(*out));
    reader_t r = {
        .out = out, .max_rows = max_rows, .check_only = check_only, .lines = OD_BUF_INIT, .metas = OD_BUF_INIT};
    od_csv_error_t err;
    od_csv_err_t rc = od_csv_parse(csv, len, OD_BATCH_MAX_COLUMNS, on_record, &r, &err);
    if (rc == OD_CSV_OK && r.names == NULL)
        fail(out, 422, "csv_empty", "the file has no header and no rows");
    else if (rc == OD_CSV_OK && r.nrows == 0)
        fail(out, 422, "csv_no_rows", "the file has a header but no data row");
    else if (rc == OD_CSV_EQUOTE)
        fail(out, 422, od_csv_code(rc), "a quoted field is not closed, or text follows its closing quote (line %zu)",
             err.line);
    else if (rc == OD_CSV_EUTF8)
        fail(out, 422, od_csv_code(rc), "the file is not valid UTF-8 (line %zu)", err.line);
    else if (rc == OD_CSV_ECOLUMNS)
        fail(out, 422, od_csv_code(rc), "a record has more than %d columns (line %zu)", OD_BATCH_MAX_COLUMNS,
             err.line);
    if (out->status == 0 && check_only) {
        out->total = r.nrows;
    } else if (out->status == 0) {
        mark_duplicates(&r);
        write_rows(&r, prefix);
    }
    for (size_t i = 0; i < r.ncols && r.names; i++)
        free(r.names[i]);
    free(r.names);
    free(r.rows);
    od_buf_free(&r.lines);
    od_buf_free(&r.metas);
    if (out->status != 0) {
        od_batch_file_free(out);
        return -1;
    }
    return 0;
}

int od_batch_file_check(const char *csv, size_t len, size_t max_rows, od_batch_file_t *out)
{
    return read_file(csv, len, max_rows, NULL, 1, out);
}

int od_batch_file_read(const char *csv, size_t len, size_t max_rows, const char *prefix, od_batch_file_t *out)
{
    return read_file(csv, len, max_rows, prefix, 0, out);
}

void od_batch_file_free(od_batch_file_t *f)
{
    od_buf_free(&f->columns);
    od_buf_free(&f->header_line);
    od_buf_free(&f->rows);
}
