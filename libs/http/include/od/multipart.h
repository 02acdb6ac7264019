/*
 * multipart/form-data request bodies (RFC 7578 on RFC 2046 §5.1), as
 * `POST /v1/batches` receives them (docs/batches.md): the boundary from the
 * Content-Type, then the parts of a body that is already fully in memory.
 * Pure: no h2o, no I/O; the parts point into the body.
 * Fuzz target: fuzz/fuzz_multipart.c.
 */
#ifndef OD_MULTIPART_H
#define OD_MULTIPART_H

#include <stddef.h>

/** RFC 2046: a boundary is 1 to 70 characters. */
#define OD_MP_BOUNDARY_MAX 70

/** One part of a form. Nothing is NUL-terminated. */
typedef struct od_mp_part {
    const char *name; /**< Content-Disposition `name=`, unescaped (may be empty, never NULL) */
    size_t name_len;
    const char *filename; /**< Content-Disposition `filename=`, unescaped; NULL if absent */
    size_t filename_len;
    const char *ctype; /**< the part's Content-Type value, trimmed, parameters included; NULL if absent */
    size_t ctype_len;
    const char *data; /**< the part's body, pointing into the input (never NULL) */
    size_t len;
} od_mp_part_t;

/**
 * Finds the boundary in a Content-Type value (`len` bytes at `ctype`, not
 * necessarily NUL-terminated): the media type must be `multipart/form-data`
 * (any case, optional spaces around), followed by parameters
 * `; name=value` (RFC 9110 §5.6.6: value a token or a quoted-string) of
 * which exactly one is `boundary` (any case), e.g.
 * `multipart/form-data; charset=utf-8; boundary="a b"`.
 *
 * The boundary must be 1 to 70 of RFC 2046's characters (letters, digits,
 * space and `'()+_,-./:=?`) and not end with a space; quoted, its quotes
 * are removed (a backslash in it is refused: no boundary needs one).
 *
 * Returns 0 with `*b` pointing into `ctype` and `*blen` its length, or -1
 * (another media type, no or two boundary parameters, a malformed
 * parameter, a bad boundary) leaving them alone.
 */
int od_mp_boundary(const char *ctype, size_t len, const char **b, size_t *blen);

/**
 * Parses the `len` bytes at `body` as a multipart/form-data body with the
 * given boundary (1 to OD_MP_BOUNDARY_MAX bytes, as od_mp_boundary gives it):
 *
 *     preamble  "--" boundary  [spaces/tabs] CRLF
 *     headers   CRLF           (each `Name: value`)
 *     data      CRLF "--" boundary [spaces/tabs] CRLF
 *     headers   CRLF
 *     data      CRLF "--" boundary "--"  epilogue
 *
 * - Every CRLF may also be a lone LF (some clients send those). The line end
 *   before a delimiter belongs to the delimiter, so the data of a part in an
 *   LF-only body that really ends with a CR loses that CR.
 * - The preamble (before the first delimiter) and the epilogue (after the
 *   closing one) are ignored. The body may start with the delimiter itself.
 * - `--` + boundary followed by anything but spaces/tabs and a line end (or
 *   by `--`) is not a delimiter, and is part of the data.
 * - Each part needs `Content-Disposition: form-data; name=...` (header names
 *   in any case, values a token or a quoted-string); `filename=` is
 *   optional; other parameters, `filename*` (RFC 5987) included, are
 *   ignored. In a quoted name or filename `\"` is read as `"` and `\\` as
 *   `\`; any other backslash is kept (Windows paths). `Content-Type` is
 *   optional; other headers are ignored; a header given twice is an error.
 * - A body with the closing delimiter right after the opening one has no
 *   part: 0, and `fn` is never called.
 *
 * The whole body is checked before `fn` is first called, so on -1 `fn` has
 * not been called. Then `fn` is called for each part in order, with a part
 * valid during the call only (`name` and `filename` may point into a
 * scratch buffer); if it returns non-zero, the parse stops and returns that
 * value (so make it positive: -1 means a malformed body). Returns 0 when every part was given to `fn`, or -1 with `*err` (if
 * `err` is not NULL) set to a static English message on a malformed body:
 * no opening boundary, no closing `--boundary--`, part headers not ended by
 * an empty line, a malformed header, a part without Content-Disposition
 * form-data and a name, a boundary longer than 70 bytes or empty.
 *
 * Cost: O(len) — two memmem() passes for the delimiter over the data, which
 * is never scanned byte by byte; the header blocks are read line by line.
 */
int od_mp_parse(const char *body, size_t len, const char *boundary, size_t blen,
                int (*fn)(void *arg, const od_mp_part_t *p), void *arg, const char **err);

#endif
