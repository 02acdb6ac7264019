/*
 * od_batch_file_read: a CSV contact list into the rows of a batch, and
 * od_batch_file_check: its file-level checks alone (docs/batches.md).
 */
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "batch_file.h"
#include "od/core.h"
#include "od/utf8.h"
#include "od_test.h"

static json_t *rows_of(const char *csv, od_batch_file_t *f)
{
    CHECK(od_batch_file_read(csv, strlen(csv), 1000, NULL, f) == 0);
    json_error_t e;
    json_t *rows = json_loadb(f->rows.base, f->rows.len, 0, &e);
    CHECK(rows != NULL && json_is_array(rows));
    return rows;
}

static const char *cell(json_t *rows, size_t i, size_t k)
{
    return json_string_value(json_array_get(json_array_get(rows, i), k));
}

static void test_rows(void)
{
    od_batch_file_t f;
    const char *csv = "\xEF\xBB\xBFName, PHONE ,city\r\n"
                      "Ana,+34612345670,\"Madrid, centro\"\r\n"
                      "\r\n"
                      ",,\n"
                      "Bob,+34 612-34-56-71,\"say \"\"hi\"\"\nthere\"\n"
                      "Dup,+34612345670,x\n"
                      "Bad,12345,y\n"
                      "Extra,+34612345672,z,w\n"
                      "Short,+34612345673\n"
                      "=cmd,+34612345674,@x";
    json_t *rows = rows_of(csv, &f);
    CHECK(f.total == 7 && f.accepted == 4 && f.rejected == 3);
    CHECK(strcmp(f.columns.base, "[\"Name\",\"PHONE\",\"city\"]") == 0);
    CHECK(strcmp(f.header_line.base, "Name,PHONE,city") == 0);
    CHECK(json_array_size(rows) == 7);
    /* row 1: accepted, metadata of the other columns, the line CSV-encoded */
    CHECK(json_integer_value(json_array_get(json_array_get(rows, 0), 0)) == 1);
    CHECK(cell(rows, 0, 1) != NULL && strlen(cell(rows, 0, 1)) == 36);
    CHECK_STR(cell(rows, 0, 2), "+34612345670");
    CHECK(json_is_null(json_array_get(json_array_get(rows, 0), 3)));
    json_t *meta = json_array_get(json_array_get(rows, 0), 4);
    CHECK_STR(json_string_value(json_object_get(meta, "Name")), "Ana");
    CHECK_STR(json_string_value(json_object_get(meta, "city")), "Madrid, centro");
    CHECK(json_object_get(meta, "PHONE") == NULL);
    CHECK_STR(cell(rows, 0, 5), "Ana,+34612345670,\"Madrid, centro\"");
    /* blank and all-empty lines are skipped; separators in the phone are dropped */
    CHECK_STR(cell(rows, 1, 2), "+34612345671");
    meta = json_array_get(json_array_get(rows, 1), 4);
    CHECK_STR(json_string_value(json_object_get(meta, "city")), "say \"hi\"\nthere");
    CHECK_STR(cell(rows, 1, 5), "Bob,+34 612-34-56-71,\"say \"\"hi\"\"\nthere\"");
    /* call ids follow the rows */
    CHECK(strcmp(cell(rows, 0, 1), cell(rows, 1, 1)) < 0);
    CHECK(strcmp(cell(rows, 1, 1), cell(rows, 5, 1)) < 0 && strcmp(cell(rows, 5, 1), cell(rows, 6, 1)) < 0);
    /* rejections, one by one */
    CHECK_STR(cell(rows, 2, 3), "duplicate_phone");
    CHECK(json_is_null(json_array_get(json_array_get(rows, 2), 1)));
    CHECK_STR(cell(rows, 3, 3), "invalid_phone");
    CHECK_STR(cell(rows, 4, 3), "too_many_fields");
    CHECK_STR(cell(rows, 4, 5), "Extra,+34612345672,z");
    /* fewer fields: the missing cells are empty */
    CHECK(json_is_null(json_array_get(json_array_get(rows, 5), 3)));
    meta = json_array_get(json_array_get(rows, 5), 4);
    CHECK_STR(json_string_value(json_object_get(meta, "city")), "");
    CHECK_STR(cell(rows, 5, 5), "Short,+34612345673,");
    /* formulas are neutralised in the stored line, not in the metadata */
    CHECK_STR(cell(rows, 6, 5), "'=cmd,+34612345674,'@x");
    meta = json_array_get(json_array_get(rows, 6), 4);
    CHECK_STR(json_string_value(json_object_get(meta, "Name")), "=cmd");
    json_decref(rows);
    od_batch_file_free(&f);
}

static void expect_error(const char *csv, size_t len, size_t max_rows, const char *code)
{
    od_batch_file_t f;
    CHECK(od_batch_file_read(csv, len, max_rows, NULL, &f) == -1);
    CHECK(f.status == 422);
    CHECK_STR(f.code, code);
    CHECK(f.detail[0] != '\0');
    /* the upload's check answers the same problem, with the same detail */
    od_batch_file_t c;
    CHECK(od_batch_file_check(csv, len, max_rows, &c) == -1);
    CHECK(c.status == 422);
    CHECK_STR(c.code, code);
    CHECK_STR(c.detail, f.detail);
}

/* The check reads the structure only: rows a full read refuses one by one are counted, not judged. */
static void test_check(void)
{
    const char *csv = "\xEF\xBB\xBFName, PHONE ,city\r\n"
                      "Ana,+34612345670,\"Madrid, centro\"\r\n"
                      "\r\n"
                      "Bob,not a phone,x,too,many\n"
                      "Eve,+34612345670,dup\n";
    od_batch_file_t c, f;
    CHECK(od_batch_file_check(csv, strlen(csv), 3, &c) == 0);
    CHECK(c.total == 3 && c.accepted == 0 && c.rejected == 0 && c.rows.len == 0);
    CHECK(c.columns.base != NULL && strcmp(c.columns.base, "[\"Name\",\"PHONE\",\"city\"]") == 0);
    CHECK(c.header_line.base != NULL && strcmp(c.header_line.base, "Name,PHONE,city") == 0);
    CHECK(od_batch_file_read(csv, strlen(csv), 3, NULL, &f) == 0);
    CHECK(f.total == c.total && f.accepted == 1 && f.rejected == 2);
    CHECK(f.columns.len == c.columns.len && memcmp(f.columns.base, c.columns.base, c.columns.len) == 0);
    od_batch_file_free(&c);
    od_batch_file_free(&f);
    /* one row over the limit is a file-level problem for both */
    CHECK(od_batch_file_check(csv, strlen(csv), 2, &c) == -1);
    CHECK_STR(c.code, "csv_too_many_rows");
}

/* as fuzz_batch_settings found in window.c: "%.80s" of a header name cut a UTF-8 sequence, and the problem's
 * JSON was not UTF-8 (fuzz_batch_file checks it; corpus/batch_file/duplicate_column_cut_utf8) */
static void test_duplicate_column_cut_utf8(void)
{
    od_buf_t csv = OD_BUF_INIT;
    od_buf_puts(&csv, "phone,");
    for (int i = 0; i < 2; i++) {
        od_buf_puts(&csv, "x");
        for (int k = 0; k < 50; k++)
            od_buf_puts(&csv, "\xc3\xa9");
        od_buf_puts(&csv, i ? "\n" : ",");
    }
    od_buf_puts(&csv, "+34612345670,a,b\n");
    od_batch_file_t f;
    CHECK(od_batch_file_check(csv.base, csv.len, 10, &f) == -1);
    CHECK_STR(f.code, "csv_duplicate_column");
    CHECK(od_utf8_check(f.detail, strlen(f.detail)) == 0);
    CHECK(strstr(f.detail, "\"x\xc3\xa9") != NULL);
    od_buf_free(&csv);
}

/* found by fuzz_batch_file (UBSan: NULL + 0): rows whose cells are all empty left no text to point into */
static void test_rows_all_cells_empty(void)
{
    od_batch_file_t f;
    const char *csv = "phone\n\"\"\n";
    CHECK(od_batch_file_read(csv, strlen(csv), 10, NULL, &f) == 0);
    CHECK(f.total == 1 && f.rejected == 1);
    CHECK(f.rows.base != NULL && strcmp(f.rows.base, "[[1,null,null,\"invalid_phone\",null,\"\"]]") == 0);
    od_batch_file_free(&f);
}

static void test_file_errors(void)
{
    expect_error("", 0, 10, "csv_empty");
    expect_error("\xEF\xBB\xBF", 3, 10, "csv_empty");
    expect_error("\r\n\n,,\n", 6, 10, "csv_empty");
    expect_error("phone,name\n", 11, 10, "csv_no_rows");
    expect_error("tel,name\n+34612345670,a\n", 24, 10, "csv_no_phone_column");
    expect_error("phone,Name, name \n+34612345670,a,b\n", 35, 10, "csv_duplicate_column");
    expect_error("phone, ,x\n+34612345670,a,b\n", 27, 10, "csv_empty_column_name");
    expect_error("phone\n\"+34612345670\n", 20, 10, "csv_unbalanced_quote");
    expect_error("phone\n\"+34612345670\"x\n", 22, 10, "csv_unbalanced_quote");
    expect_error("phone,n\n+34612345670,\xff\n", 23, 10, "csv_not_utf8");
    expect_error("phone\n+34612345670\n+34612345671\n+34612345672\n", 45, 2, "csv_too_many_rows");
    char wide[1024] = "phone";
    for (int i = 0; i < 100; i++)
        strcat(wide, ",c");
    strcat(wide, "\n+34612345670\n");
    expect_error(wide, strlen(wide), 10, "csv_too_many_columns");
}

static void test_metadata_limit(void)
{
    size_t big = 17000;
    char *csv = malloc(big + 64);
    strcpy(csv, "phone,note\n+34612345670,");
    size_t n = strlen(csv);
    memset(csv + n, 'x', big);
    strcpy(csv + n + big, "\n+34612345671,ok\n");
    od_batch_file_t f;
    json_t *rows = rows_of(csv, &f);
    CHECK_STR(cell(rows, 0, 3), "metadata_too_large");
    CHECK(json_is_null(json_array_get(json_array_get(rows, 1), 3)));
    CHECK(f.accepted == 1 && f.rejected == 1);
    json_decref(rows);
    od_batch_file_free(&f);
    free(csv);
}

static void test_prefix(void)
{
    od_batch_file_t f;
    const char *csv = "phone\n+34612345670\n";
    CHECK(od_batch_file_read(csv, strlen(csv), 10, "{\"rows\":", &f) == 0);
    CHECK(strncmp(f.rows.base, "{\"rows\":[[1,\"", 12) == 0);
    CHECK(f.rows.base[f.rows.len - 1] == ']');
    od_batch_file_free(&f);
}

static void test_phone_cell(void)
{
    char out[17];
    CHECK(od_batch_phone(" +34 (612) 34.56-70 ", 20, out) == 0);
    CHECK_STR(out, "+34612345670");
    CHECK(od_batch_phone("34612345670", 11, out) == -1);
    CHECK(od_batch_phone("+34 6123 4567 0x", 16, out) == -1);
    CHECK(od_batch_phone("", 0, out) == -1);
}

int main(void)
{
    test_rows();
    test_file_errors();
    test_duplicate_column_cut_utf8();
    test_rows_all_cells_empty();
    test_check();
    test_metadata_limit();
    test_phone_cell();
    test_prefix();
    return od_test_result("batch_file");
}
