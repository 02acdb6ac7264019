/*
 * libFuzzer target for a batch's CSV file (services/ingress/batch_file.c):
 * od_batch_file_check, as the upload answers, and od_batch_file_read, as the
 * validation reads every row (at most 1,000 rows).
 * Properties checked beyond "no crash, no sanitizer report, no NULL from
 * jansson passed on" (json_strict.c):
 *  - check and read agree: the same answer, the same problem code, the
 *    same number of data rows;
 *  - a problem is a 413 or 422 with a code and a detail that is valid UTF-8
 *    (it goes into the problem's JSON);
 *  - read: the rows are a JSON array of `total` rows, accepted + rejected =
 *    total, each accepted row with a call id and an E.164 phone; the
 *    columns are a JSON array.
 */
#include <jansson.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "batch_file.h"
#include "od/utf8.h"

#define CHECK(c) ((c) ? (void)0 : abort())
#define MAX_ROWS 1000

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *csv = (const char *)data;
    od_batch_file_t c, f;
    int rc = od_batch_file_check(csv, size, MAX_ROWS, &c);
    int rr = od_batch_file_read(csv, size, MAX_ROWS, NULL, &f);
    CHECK(rc == rr);
    if (rc != 0) {
        CHECK(c.status == 413 || c.status == 422);
        CHECK(c.code != NULL && f.code != NULL && strcmp(c.code, f.code) == 0);
        CHECK(c.detail[0] != '\0' && od_utf8_check(c.detail, strlen(c.detail)) == 0);
        CHECK(od_utf8_check(f.detail, strlen(f.detail)) == 0);
        return 0;
    }
    CHECK(c.total == f.total && f.accepted + f.rejected == f.total);
    json_error_t jerr;
    json_t *rows = json_loadb(f.rows.base, f.rows.len, 0, &jerr);
    CHECK(json_is_array(rows) && json_array_size(rows) == f.total);
    size_t i, accepted = 0;
    json_t *row;
    json_array_foreach(rows, i, row)
    {
        CHECK(json_is_array(row));
        if (json_is_string(json_array_get(row, 1))) {
            const char *phone = json_string_value(json_array_get(row, 2));
            CHECK(phone != NULL && phone[0] == '+');
            accepted++;
        }
    }
    CHECK(accepted == f.accepted);
    json_decref(rows);
    json_t *cols = json_loadb(f.columns.base, f.columns.len, 0, &jerr);
    CHECK(json_is_array(cols) && json_array_size(cols) > 0);
    json_decref(cols);
    od_batch_file_free(&c);
    od_batch_file_free(&f);
    return 0;
}
