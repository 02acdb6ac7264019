/*
 * CSV as batches use it (docs/batches.md, "The file" and "results.csv"):
 * a one-pass RFC 4180 reader for uploaded contact lists and the cell writer
 * of results.csv. Pure: no I/O, no locale.
 * Fuzz target: fuzz/fuzz_csv.c.
 */
#ifndef OD_CSV_H
#define OD_CSV_H

#include <stddef.h>

#include "od/buf.h"

/** One field of a record: `len` bytes at `p`, not NUL-terminated. */
typedef struct od_csv_field {
    const char *p; /**< never NULL, also when len is 0 */
    size_t len;    /**< bytes, quotes removed and `""` turned into `"` */
} od_csv_field_t;

typedef enum od_csv_err {
    OD_CSV_OK = 0,   /**< the whole input was read */
    OD_CSV_EQUOTE,   /**< a quoted field never closes, or a character other than `,`, CR or LF follows a closing quote */
    OD_CSV_EUTF8,    /**< the input is not valid UTF-8 (NUL bytes included) */
    OD_CSV_ECOLUMNS, /**< a record has more than max_fields fields */
    OD_CSV_EABORT,   /**< the record callback returned non-zero */
} od_csv_err_t;

typedef struct od_csv_error {
    od_csv_err_t code; /**< what went wrong, OD_CSV_OK if nothing */
    size_t line;       /**< 1-based physical line where it was detected (see below); 0 with OD_CSV_OK */
} od_csv_error_t;

/**
 * Called once per non-blank record, header first. `recno` is 0 for the first
 * non-blank record (the header), then 1, 2, ... (blank records are not
 * counted), so it is the "row" of docs/batches.md. `line` is the physical line
 * where the record starts. `fields` (`n` ≥ 1 of them) and the bytes they
 * point to are valid only during the call. Return 0 to go on, non-zero to
 * stop the parse with OD_CSV_EABORT.
 */
typedef int (*od_csv_record_fn)(void *arg, size_t recno, size_t line, const od_csv_field_t *fields, size_t n);

/**
 * Parses the `len` bytes at `buf` as one CSV file:
 *
 * - The input must be valid UTF-8 as a whole (no overlong forms, no
 *   surrogates U+D800–U+DFFF, nothing above U+10FFFF, no truncated sequence,
 *   no NUL byte). This is checked first, over the whole input: on
 *   OD_CSV_EUTF8 `fn` has not been called, and the line is the one holding the
 *   first byte of the first bad sequence.
 * - A UTF-8 byte order mark (EF BB BF) at offset 0 is skipped; anywhere else
 *   U+FEFF is an ordinary character.
 * - Fields are separated by `,`. Records end at LF, at CRLF, or at a CR not
 *   followed by LF (old Mac line ends, as spreadsheets still read them). The
 *   last record may end at the end of input without a line end; an input
 *   that ends with a line end has no empty record after it.
 * - Physical lines, for `line`, end the same way (LF, CRLF, lone CR), also
 *   inside quoted fields; the first line is 1.
 * - A field that starts with `"` is quoted: it runs to the next `"` not
 *   doubled, may contain `,`, CR, LF and `""` (read as one `"`), and CR and LF
 *   are kept as they are. After the closing quote only `,`, CR, LF or the end
 *   of input may follow, else OD_CSV_EQUOTE on the line of that character; a
 *   quote that never closes is OD_CSV_EQUOTE on the line where it opened.
 * - A `"` elsewhere in a field is an ordinary character (`a"b` is `a"b`);
 *   spaces are kept (` "a"` is unquoted and keeps its quotes).
 * - Blank records are skipped, not counted and not given to `fn`: an empty
 *   line, or a record whose fields are all empty and unquoted (`,,,`). A
 *   record with a quoted empty field (`""`) is not blank.
 * - A non-blank record with more than `max_fields` (≥ 1) fields stops the
 *   parse with OD_CSV_ECOLUMNS on the line where the first field past
 *   max_fields starts (or, if the record was blank up to there, where its
 *   first non-blank field past max_fields starts). A blank record is skipped
 *   whatever its width.
 *
 * Errors end the parse at once; records before the one in error have been
 * given to `fn`. Returns the code and, if `err` is not NULL, stores it with
 * its line in `*err`.
 *
 * Cost: O(len). Unquoted fields and quoted fields without `""` point into
 * `buf`; a field with `""` is unescaped into a scratch buffer. The scratch
 * buffer and the field array are allocated once per call and grown
 * geometrically (the field array up to max_fields entries), never per record.
 */
od_csv_err_t od_csv_parse(const char *buf, size_t len, size_t max_fields, od_csv_record_fn fn, void *arg,
                          od_csv_error_t *err);

/**
 * The stable problem code of an error, as docs/batches.md names it:
 * OD_CSV_EQUOTE "csv_unbalanced_quote", OD_CSV_EUTF8 "csv_not_utf8",
 * OD_CSV_ECOLUMNS "csv_too_many_columns", OD_CSV_EABORT "csv_aborted".
 * NULL for OD_CSV_OK.
 */
const char *od_csv_code(od_csv_err_t e);

/**
 * 1 if od_csv_put would write the cell with a `'` in front (formula
 * neutralisation), else 0: the cell starts with `=`, `+`, `-`, `@`, TAB or CR
 * and is not a signed number or phone number, that is `+` or `-`, then a
 * digit, then only digits, spaces and `.()-` (`+34123456789`, `-5`,
 * `+1 (415) 555-0100` are kept; `=1+1`, `+cmd`, `-2+3`, `@SUM(A1)` are not).
 */
int od_csv_neutralised(const char *p, size_t len);

/**
 * Appends the `len` bytes at `p` to `b` as one results.csv cell: first a `'`
 * if od_csv_neutralised(); then the whole (prefixed) cell is put in quotes,
 * with every `"` doubled, if it contains `,`, `"`, CR or LF or starts or ends
 * with a space; else it is written as it is. An empty cell writes nothing.
 * The caller writes the `,` between cells and the CRLF after a record.
 *
 * Reading the output back with od_csv_parse gives the cell (or `'` + cell)
 * again, except that a record whose cells are all empty reads as blank, and
 * that a first cell of a file starting with U+FEFF needs a BOM written before
 * it (the reader skips one BOM at offset 0).
 */
void od_csv_put(od_buf_t *b, const char *p, size_t len);

#endif
