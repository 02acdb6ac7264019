/*
 * A CSV contact list turned into the rows of a batch (docs/batches.md):
 * pure (no I/O, no loop), so the ingress runs it on a worker thread and the
 * unit tests and the fuzz target drive it directly.
 */
#ifndef OD_INGRESS_BATCH_FILE_H
#define OD_INGRESS_BATCH_FILE_H

#include <stddef.h>
#include <stdint.h>

#include "od/buf.h"

#define OD_BATCH_MAX_COLUMNS 100
#define OD_BATCH_METADATA_MAX 16384 /* bytes of a row's metadata JSON, as for POST /v1/calls */

typedef struct od_batch_file {
    /* on success */
    od_buf_t columns;     /**< JSON array of the header names (trimmed) */
    od_buf_t header_line; /**< the header CSV-encoded, no line end */
    od_buf_t rows;        /**< `prefix`, then a JSON array: [row_no, call_id|null, phone|null, error|null, metadata|null, line] */
    size_t total, accepted, rejected; /**< data rows (all, with a call, refused) */
    /* on failure: the problem */
    int status;           /**< 0 on success, else 413 / 422 */
    const char *code;     /**< stable problem code */
    char detail[160];
} od_batch_file_t;

/**
 * Reads `len` bytes of CSV. `prefix` (may be NULL) starts out->rows, so a
 * caller embedding the rows (tens of MB) in a larger text writes around
 * them instead of copying them. On success returns 0 with `out` filled (free with
 * od_batch_file_free); on a file-level problem returns -1 with out->status,
 * out->code and out->detail set and nothing else to free. Rows are checked
 * one by one (phone, duplicates, field count, metadata size); each accepted
 * row gets a new call id (UUIDv7).
 */
int od_batch_file_read(const char *csv, size_t len, size_t max_rows, const char *prefix, od_batch_file_t *out);

/**
 * The file-level checks of od_batch_file_read alone, as the upload answers
 * them: the same problems, or 0 with out->columns, out->header_line and
 * out->total (data rows) filled; out->rows stays empty and no row is looked
 * at. Reads a 100,000-row file in ~20 ms, against ~1 s for od_batch_file_read.
 */
int od_batch_file_check(const char *csv, size_t len, size_t max_rows, od_batch_file_t *out);
void od_batch_file_free(od_batch_file_t *f);

/**
 * Normalises a phone cell of a contact list: surrounding spaces and the
 * visual separators people type (spaces, '-', '.', '(', ')') are dropped,
 * then the strict E.164 rule of od_phone_parse_e164 applies. 0 or -1.
 */
int od_batch_phone(const char *cell, size_t len, char out[17]);

#endif
