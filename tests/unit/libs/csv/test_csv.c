/* Unit tests for od/csv.h: the reader rule by rule (docs/batches.md "The
 * file"), its error codes and lines, the results.csv cell writer, and a
 * seeded random round trip writer → reader. */
#include "od/csv.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "od_test.h"

/* S() keeps the length of a literal, so embedded NULs are part of the input. */
#define S(lit) lit, sizeof(lit) - 1

/* ---- reader ---- */

/* Every record as "line{[field][field]}" in one string; checks recno. */
typedef struct collect {
    od_buf_t out;
    size_t records;
    size_t stop_at; /* return 1 on this recno; SIZE_MAX never */
} collect_t;

static int on_record(void *arg, size_t recno, size_t line, const od_csv_field_t *f, size_t n)
{
    collect_t *c = arg;
    CHECK(recno == c->records);
    CHECK(n >= 1);
    c->records++;
    od_buf_printf(&c->out, "%zu{", line);
    for (size_t i = 0; i < n; i++) {
        CHECK(f[i].p != NULL);
        od_buf_append(&c->out, "[", 1);
        od_buf_append(&c->out, f[i].p, f[i].len);
        od_buf_append(&c->out, "]", 1);
    }
    od_buf_append(&c->out, "}", 1);
    return recno == c->stop_at;
}

static od_csv_error_t last_err;

/* Parses and returns the records as above, or "E<code>@<line>" on an error
 * (after the records delivered before it). Returns a static buffer. */
static const char *parse3(const char *in, size_t len, size_t max_fields, size_t stop_at)
{
    static char res[4096];
    collect_t c = {.out = OD_BUF_INIT, .stop_at = stop_at};
    od_csv_err_t e = od_csv_parse(in, len, max_fields, on_record, &c, &last_err);
    CHECK(e == last_err.code);
    if (e != OD_CSV_OK)
        od_buf_printf(&c.out, "E%d@%zu", (int)e, last_err.line);
    else
        CHECK(last_err.line == 0);
    snprintf(res, sizeof(res), "%s", c.out.base ? c.out.base : "");
    od_buf_free(&c.out);
    return res;
}

static const char *parse(const char *in, size_t len)
{
    return parse3(in, len, 100, SIZE_MAX);
}

static void test_basics(void)
{
    CHECK_STR(parse(S("")), "");
    CHECK_STR(parse(S("a,b,c\n1,2,3\n")), "1{[a][b][c]}2{[1][2][3]}");
    CHECK_STR(parse(S("a,b,c\n1,2,3")), "1{[a][b][c]}2{[1][2][3]}"); /* no final line end */
    CHECK_STR(parse(S("a,b\r\n1,2\r\n")), "1{[a][b]}2{[1][2]}");
    CHECK_STR(parse(S("a\r\nb\nc\r\nd")), "1{[a]}2{[b]}3{[c]}4{[d]}"); /* mixed */
    CHECK_STR(parse(S("a\rb\r\nc\r")), "1{[a]}2{[b]}3{[c]}");         /* lone CR ends a record */
    CHECK_STR(parse(S("a\r\rb")), "1{[a]}3{[b]}");                   /* CR CR: a blank line between */
    CHECK_STR(parse(S("a,\n")), "1{[a][]}");
    CHECK_STR(parse(S("a,")), "1{[a][]}");
    CHECK_STR(parse(S(",a")), "1{[][a]}");
    CHECK_STR(parse(S("x\n,\"\"")), "1{[x]}2{[][]}");
    CHECK_STR(parse(S(" a , b ")), "1{[ a ][ b ]}"); /* spaces are kept */
    CHECK_STR(parse(S("\xc3\xa9,\xe2\x82\xac,\xf0\x9f\x98\x80")), "1{[\xc3\xa9][\xe2\x82\xac][\xf0\x9f\x98\x80]}");
}

static void test_quotes(void)
{
    CHECK_STR(parse(S("\"a,b\",c")), "1{[a,b][c]}");
    CHECK_STR(parse(S("\"a\"\"b\",\"\"\"\"")), "1{[a\"b][\"]}");
    CHECK_STR(parse(S("\"\"\"x\"\"\"")), "1{[\"x\"]}");
    CHECK_STR(parse(S("\"\"")), "1{[]}"); /* a quoted empty field is not blank */
    CHECK_STR(parse(S("\"\",\"\"\n")), "1{[][]}");
    CHECK_STR(parse(S("\"x\ny\",z\nnext")), "1{[x\ny][z]}3{[next]}");
    CHECK_STR(parse(S("\"x\r\ny\"\r\nnext")), "1{[x\r\ny]}3{[next]}"); /* CRLF kept inside */
    CHECK_STR(parse(S("\"x\ry\"\nnext")), "1{[x\ry]}3{[next]}");       /* lone CR counts as a line */
    CHECK_STR(parse(S("\"a\",\"b\"\r\n\"c\"")), "1{[a][b]}2{[c]}");
    CHECK_STR(parse(S("\"a\"\r")), "1{[a]}");
    /* bare quotes inside unquoted fields are characters */
    CHECK_STR(parse(S("a\"b,c\"")), "1{[a\"b][c\"]}");
    CHECK_STR(parse(S(" \"a\"")), "1{[ \"a\"]}");
    CHECK_STR(parse(S("5\" disk,x")), "1{[5\" disk][x]}");
}

static void test_bom_and_blank(void)
{
    CHECK_STR(parse(S("\xef\xbb\xbfphone\n1")), "1{[phone]}2{[1]}");
    CHECK_STR(parse(S("\xef\xbb\xbf")), "");
    CHECK_STR(parse(S("\xef\xbb\xbf\r\n\r\n")), "");
    CHECK_STR(parse(S("\xef\xbb\xbf\"q\"")), "1{[q]}");
    /* only one BOM, only at the start */
    CHECK_STR(parse(S("\xef\xbb\xbf\xef\xbb\xbfx")), "1{[\xef\xbb\xbfx]}");
    CHECK_STR(parse(S("a\n\xef\xbb\xbf" "b")), "1{[a]}2{[\xef\xbb\xbf" "b]}");

    CHECK_STR(parse(S("\n\na\n\n,,,\r\nb\n\n")), "3{[a]}6{[b]}");
    CHECK_STR(parse(S(",,,")), "");
    CHECK_STR(parse(S(",")), "");
    CHECK_STR(parse(S("\r\n\n\r")), "");
    CHECK_STR(parse(S(" ,,")), "1{[ ][][]}"); /* a space is not empty */
    CHECK_STR(parse(S(",\"\",")), "1{[][][]}");

    /* recno skips blank records */
    collect_t c = {.out = OD_BUF_INIT, .stop_at = SIZE_MAX};
    CHECK(od_csv_parse(S("h\n\n,,\nr1\n\nr2"), 10, on_record, &c, NULL) == OD_CSV_OK);
    CHECK(c.records == 3);
    CHECK_STR(c.out.base, "1{[h]}4{[r1]}6{[r2]}");
    od_buf_free(&c.out);
}

#define EQ "E1@" /* OD_CSV_EQUOTE */
#define EU "E2@" /* OD_CSV_EUTF8 */
#define EC "E3@" /* OD_CSV_ECOLUMNS */
#define EA "E4@" /* OD_CSV_EABORT */

static void test_unbalanced(void)
{
    /* never closes: the line where the quote opened */
    CHECK_STR(parse(S("\"abc")), EQ "1");
    CHECK_STR(parse(S("\"")), EQ "1");
    CHECK_STR(parse(S("h\nr\n\"x\ny\nz")), "1{[h]}2{[r]}" EQ "3");
    CHECK_STR(parse(S("a,\"b\"\"")), EQ "1"); /* "" is an escaped quote, still open */
    CHECK_STR(parse(S("h\r\n\"a\r\n\r\n")), "1{[h]}" EQ "2");
    /* a character after the closing quote: the line where it is */
    CHECK_STR(parse(S("h\n\"x\"y")), "1{[h]}" EQ "2");
    CHECK_STR(parse(S("\"a\nb\"c")), EQ "2");
    CHECK_STR(parse(S("\"a\" ,b")), EQ "1");
    CHECK_STR(parse(S("\"a\"\"\"b\"")), EQ "1");
    CHECK(last_err.code == OD_CSV_EQUOTE);
    CHECK_STR(od_csv_code(OD_CSV_EQUOTE), "csv_unbalanced_quote");
}

static void test_utf8(void)
{
    /* boundaries that are valid */
    CHECK_STR(parse(S("\x7f\xc2\x80\xdf\xbf")), "1{[\x7f\xc2\x80\xdf\xbf]}");
    CHECK_STR(parse(S("\xe0\xa0\x80\xed\x9f\xbf\xee\x80\x80\xef\xbf\xbf")),
              "1{[\xe0\xa0\x80\xed\x9f\xbf\xee\x80\x80\xef\xbf\xbf]}");
    CHECK_STR(parse(S("\xf0\x90\x80\x80\xf4\x8f\xbf\xbf")), "1{[\xf0\x90\x80\x80\xf4\x8f\xbf\xbf]}");

    static const struct {
        const char *s;
        size_t len;
    } bad[] = {
        {S("\x80")},                 /* lone continuation */
        {S("\xbf")},
        {S("\xc0\x80")},             /* overlong NUL */
        {S("\xc1\xbf")},             /* overlong 2-byte */
        {S("\xe0\x80\x80")},         /* overlong 3-byte */
        {S("\xe0\x9f\xbf")},
        {S("\xf0\x80\x80\x80")},     /* overlong 4-byte */
        {S("\xf0\x8f\xbf\xbf")},
        {S("\xed\xa0\x80")},         /* U+D800 */
        {S("\xed\xbf\xbf")},         /* U+DFFF */
        {S("\xf4\x90\x80\x80")},     /* U+110000 */
        {S("\xf5\x80\x80\x80")},     /* F5..FF never appear */
        {S("\xff")},
        {S("\xfe")},
        {S("\xc3")},                 /* truncated at the end */
        {S("\xe2\x82")},
        {S("\xf0\x9f\x98")},
        {S("\xc3,")},                /* truncated before ASCII */
        {S("\xe2\x82,x")},
        {S("\xf0\x9f\x98\n")},
        {S("\xe2\xc3\xa9")},         /* a lead byte where a continuation should be */
        {S("\x00")},                 /* NUL */
        {S("a\x00")},
        {S("\"\x00\"")},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        const char *r = parse(bad[i].s, bad[i].len);
        if (strcmp(r, EU "1") != 0)
            fprintf(stderr, "bad utf-8 case %zu gave %s\n", i, r);
        CHECK_STR(r, EU "1");
    }
    /* the line of the first bad byte; fn never called, even for records before it */
    CHECK_STR(parse(S("a\nb\n\xc0\x80")), EU "3");
    CHECK_STR(parse(S("a\r\nb\rc\r\nd,\xed\xa0\x80")), EU "4");
    CHECK_STR(parse(S("\"a\nb\xff\"")), EU "2");
    CHECK_STR(parse(S("a\n\x00\nb")), EU "2");
    /* past the 8-byte fast path, and right at its edges */
    for (size_t at = 0; at < 40; at++) {
        char buf[64];
        memset(buf, 'x', sizeof(buf));
        buf[5] = '\n';
        buf[at] = (char)0xe9; /* Latin-1 é: a lead byte then ASCII */
        CHECK_STR(parse(buf, sizeof(buf)), at > 5 ? EU "2" : EU "1");
        buf[at] = 0;
        CHECK_STR(parse(buf, sizeof(buf)), at > 5 ? EU "2" : EU "1");
    }
    CHECK_STR(od_csv_code(OD_CSV_EUTF8), "csv_not_utf8");
}

static void test_columns(void)
{
    CHECK_STR(parse3(S("a,b,c\n1,2,3"), 3, SIZE_MAX), "1{[a][b][c]}2{[1][2][3]}");
    CHECK_STR(parse3(S("a,b,c\n1,2,3,4\n"), 3, SIZE_MAX), "1{[a][b][c]}" EC "2");
    CHECK_STR(parse3(S("a,b,c,"), 3, SIZE_MAX), EC "1");
    CHECK_STR(parse3(S("a"), 1, SIZE_MAX), "1{[a]}");
    CHECK_STR(parse3(S("a,b"), 1, SIZE_MAX), EC "1");
    /* blank records are skipped whatever their width */
    CHECK_STR(parse3(S("a\n,,,,,,,,\nb"), 3, SIZE_MAX), "1{[a]}3{[b]}");
    /* ... until a non-blank field past the max */
    CHECK_STR(parse3(S("a\n,,,,x"), 3, SIZE_MAX), "1{[a]}" EC "2");
    CHECK_STR(parse3(S(",,,\"\""), 3, SIZE_MAX), EC "1");
    CHECK_STR(parse3(S("x,,,"), 3, SIZE_MAX), EC "1");
    /* the line where the extra field starts */
    CHECK_STR(parse3(S("a,\"b\nc\",d,\"e\nf\""), 3, SIZE_MAX), EC "2");
    /* exactly 100 and 101 */
    char buf[512];
    size_t n = 0;
    for (int i = 0; i < 100; i++)
        n += (size_t)snprintf(buf + n, sizeof(buf) - n, i ? ",%d" : "%d", i % 10);
    collect_t c = {.out = OD_BUF_INIT, .stop_at = SIZE_MAX};
    CHECK(od_csv_parse(buf, n, 100, on_record, &c, NULL) == OD_CSV_OK && c.records == 1);
    od_buf_free(&c.out);
    buf[n++] = ',';
    CHECK(od_csv_parse(buf, n, 100, on_record, &c, &last_err) == OD_CSV_ECOLUMNS && last_err.line == 1);
    od_buf_free(&c.out);
    CHECK_STR(od_csv_code(OD_CSV_ECOLUMNS), "csv_too_many_columns");
}

static void test_abort(void)
{
    CHECK_STR(parse3(S("h\n\nr1\n\"x\ny\"\nr3\n"), 10, 0), "1{[h]}" EA "1");
    CHECK_STR(parse3(S("h\n\nr1\n\"x\ny\"\nr3\n"), 10, 2), "1{[h]}3{[r1]}4{[x\ny]}" EA "4");
    /* an error after the abort point is never seen */
    CHECK_STR(parse3(S("h\nr1\n\"open"), 10, 1), "1{[h]}2{[r1]}" EA "2");
    CHECK_STR(od_csv_code(OD_CSV_EABORT), "csv_aborted");
    CHECK(od_csv_code(OD_CSV_OK) == NULL);
}

/* Many fields with `""` in one record: the scratch buffer grows while the
 * record is read, and every field must still point at its own bytes. */
static void test_scratch_growth(void)
{
    od_buf_t in = OD_BUF_INIT, want = OD_BUF_INIT;
    od_buf_puts(&want, "1{");
    for (int i = 0; i < 90; i++) {
        char cell[300];
        int len = 1 + (i * 37) % 250;
        for (int k = 0; k < len; k++)
            cell[k] = (char)('a' + (i + k) % 26);
        cell[len / 2] = '"';
        if (i)
            od_buf_puts(&in, ",");
        if (i % 3 == 0 && len > 1) { /* every third with no quote at all: points into the input */
            cell[len / 2] = 'q';
            od_buf_append(&in, cell, (size_t)len);
        } else {
            od_buf_puts(&in, "\"");
            for (int k = 0; k < len; k++)
                od_buf_append(&in, cell[k] == '"' ? "\"\"" : &cell[k], cell[k] == '"' ? 2 : 1);
            od_buf_puts(&in, "\"");
        }
        od_buf_puts(&want, "[");
        od_buf_append(&want, cell, (size_t)len);
        od_buf_puts(&want, "]");
    }
    od_buf_puts(&want, "}");
    collect_t c = {.out = OD_BUF_INIT, .stop_at = SIZE_MAX};
    CHECK(od_csv_parse(in.base, in.len, 100, on_record, &c, NULL) == OD_CSV_OK);
    CHECK(c.out.len == want.len && memcmp(c.out.base, want.base, want.len) == 0);
    od_buf_free(&c.out);
    od_buf_free(&in);
    od_buf_free(&want);
}

/* ---- writer ---- */

static const char *put(const char *cell, size_t len)
{
    static char res[256];
    od_buf_t b = OD_BUF_INIT;
    od_buf_puts(&b, "<");
    od_csv_put(&b, cell, len);
    od_buf_puts(&b, ">");
    snprintf(res, sizeof(res), "%s", b.base);
    od_buf_free(&b);
    return res;
}

static void test_writer(void)
{
    CHECK_STR(put(S("")), "<>");
    CHECK_STR(put(S("abc")), "<abc>");
    CHECK_STR(put(S("a b")), "<a b>");
    CHECK_STR(put(S("\xc3\xa9t\xc3\xa9")), "<\xc3\xa9t\xc3\xa9>");
    CHECK_STR(put(S("a,b")), "<\"a,b\">");
    CHECK_STR(put(S("a\"b")), "<\"a\"\"b\">");
    CHECK_STR(put(S("\"")), "<\"\"\"\">");
    CHECK_STR(put(S("\"\"x\"")), "<\"\"\"\"\"x\"\"\">");
    CHECK_STR(put(S("a\nb")), "<\"a\nb\">");
    CHECK_STR(put(S("a\r\nb")), "<\"a\r\nb\">");
    CHECK_STR(put(S(" a")), "<\" a\">");
    CHECK_STR(put(S("a ")), "<\"a \">");
    CHECK_STR(put(S(" ")), "<\" \">");
    CHECK_STR(put(S("a\tb")), "<a\tb>");

    /* formula neutralisation */
    CHECK_STR(put(S("=1+1")), "<'=1+1>");
    CHECK_STR(put(S("+cmd")), "<'+cmd>");
    CHECK_STR(put(S("-2+3")), "<'-2+3>");
    CHECK_STR(put(S("@SUM(A1)")), "<'@SUM(A1)>");
    CHECK_STR(put(S("\tx")), "<'\tx>");
    CHECK_STR(put(S("\rx")), "<\"'\rx\">"); /* prefixed, then quoted for the CR */
    CHECK_STR(put(S("=HYPERLINK(\"http://x\",\"y\")")), "<\"'=HYPERLINK(\"\"http://x\"\",\"\"y\"\")\">");
    CHECK_STR(put(S("= ")), "<\"'= \">");
    CHECK_STR(put(S("+")), "<'+>");
    CHECK_STR(put(S("-")), "<'->");
    CHECK_STR(put(S("+ 1")), "<'+ 1>");
    CHECK_STR(put(S("-.5")), "<'-.5>");
    CHECK_STR(put(S("+1e5")), "<'+1e5>");
    CHECK_STR(put(S("+1,2")), "<\"'+1,2\">");
    /* numbers and phone numbers stay */
    CHECK_STR(put(S("+34123456789")), "<+34123456789>");
    CHECK_STR(put(S("-5")), "<-5>");
    CHECK_STR(put(S("+1 (415) 555-0100")), "<+1 (415) 555-0100>");
    CHECK_STR(put(S("-1.50")), "<-1.50>");
    CHECK_STR(put(S("+44 20 7946 0958")), "<+44 20 7946 0958>");
    CHECK_STR(put(S("-5 ")), "<\"-5 \">"); /* not neutralised, quoted for the space */
    /* other first characters are never neutralised */
    CHECK_STR(put(S(" =1")), "<\" =1\">");
    CHECK_STR(put(S("'=1")), "<'=1>");
    CHECK_STR(put(S("a=1")), "<a=1>");

    CHECK(od_csv_neutralised(S("=1+1")) == 1);
    CHECK(od_csv_neutralised(S("+cmd")) == 1);
    CHECK(od_csv_neutralised(S("-2+3")) == 1);
    CHECK(od_csv_neutralised(S("@SUM(A1)")) == 1);
    CHECK(od_csv_neutralised(S("\tx")) == 1);
    CHECK(od_csv_neutralised(S("\r")) == 1);
    CHECK(od_csv_neutralised(S("+34123456789")) == 0);
    CHECK(od_csv_neutralised(S("-5")) == 0);
    CHECK(od_csv_neutralised(S("+1 (415) 555-0100")) == 0);
    CHECK(od_csv_neutralised(S("")) == 0);
    CHECK(od_csv_neutralised(S("abc")) == 0);
    CHECK(od_csv_neutralised(S("5+5")) == 0);
}

/* ---- round trip ---- */

static uint64_t rng = 0x9e3779b97f4a7c15u;

static uint32_t rnd(uint32_t n)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (uint32_t)(rng % n);
}

#define MAX_CELLS 8
#define MAX_CELL 24

typedef struct trip {
    char cells[64][MAX_CELLS][MAX_CELL + 1]; /* the expected cells, `'` included */
    size_t lens[64][MAX_CELLS], widths[64];
    size_t nrec, got;
    int bad;
} trip_t;

static int on_trip(void *arg, size_t recno, size_t line, const od_csv_field_t *f, size_t n)
{
    (void)line;
    trip_t *t = arg;
    if (recno != t->got || recno >= t->nrec || n != t->widths[recno]) {
        t->bad = 1;
        return 1;
    }
    for (size_t i = 0; i < n; i++)
        if (f[i].len != t->lens[recno][i] || memcmp(f[i].p, t->cells[recno][i], f[i].len) != 0)
            t->bad = 1;
    t->got++;
    return 0;
}

/* Random records of cells drawn from the characters that matter → od_csv_put,
 * cells joined by `,`, records by CRLF or LF → od_csv_parse gives back every
 * cell, with `'` in front of the neutralised ones; records of only empty
 * cells vanish as blank. */
static void test_round_trip(void)
{
    static const char *const atoms[] = {"a", "Z", "0", "7", " ", ",", "\"", "\r", "\n", "\r\n", "=", "+", "-", "@",
                                        "\t", ".", "(", ")", "'", "\xc3\xa9", "\xef\xbb\xbf", "\xf0\x9f\x93\x9e"};
    static trip_t t;
    for (int iter = 0; iter < 3000; iter++) {
        od_buf_t out = OD_BUF_INIT;
        od_buf_append(&out, "\xef\xbb\xbf", 3); /* so a first cell may start with U+FEFF */
        memset(&t, 0, sizeof(t));
        size_t nrec = 1 + rnd(10);
        for (size_t r = 0; r < nrec; r++) {
            size_t width = 1 + rnd(MAX_CELLS);
            char cells[MAX_CELLS][MAX_CELL];
            size_t lens[MAX_CELLS];
            int all_empty = 1;
            for (size_t i = 0; i < width; i++) {
                size_t len = 0, natoms = rnd(4) == 0 ? 0 : 1 + rnd(6);
                for (size_t k = 0; k < natoms; k++) {
                    const char *a = atoms[rnd(sizeof(atoms) / sizeof(atoms[0]))];
                    size_t al = strlen(a);
                    if (len + al > MAX_CELL - 1)
                        break;
                    memcpy(cells[i] + len, a, al);
                    len += al;
                }
                lens[i] = len;
                if (len)
                    all_empty = 0;
                if (i)
                    od_buf_append(&out, ",", 1);
                od_csv_put(&out, cells[i], len);
            }
            od_buf_puts(&out, rnd(2) ? "\r\n" : "\n");
            if (all_empty)
                continue;
            size_t e = t.nrec++;
            t.widths[e] = width;
            for (size_t i = 0; i < width; i++) {
                size_t q = (size_t)od_csv_neutralised(cells[i], lens[i]);
                t.cells[e][i][0] = '\'';
                memcpy(t.cells[e][i] + q, cells[i], lens[i]);
                t.lens[e][i] = lens[i] + q;
            }
        }
        if (rnd(2)) /* the last line end is optional */
            out.len -= out.base[out.len - 2] == '\r' ? 2 : 1;
        od_csv_error_t err;
        od_csv_err_t rc = od_csv_parse(out.base, out.len, MAX_CELLS, on_trip, &t, &err);
        CHECK(rc == OD_CSV_OK && !t.bad && t.got == t.nrec);
        if (rc != OD_CSV_OK || t.bad || t.got != t.nrec) {
            fprintf(stderr, "round trip %d failed (rc %d line %zu): ", iter, (int)rc, err.line);
            fwrite(out.base, 1, out.len, stderr);
            fputc('\n', stderr);
            od_buf_free(&out);
            break;
        }
        od_buf_free(&out);
    }
}

int main(void)
{
    test_basics();
    test_quotes();
    test_bom_and_blank();
    test_unbalanced();
    test_utf8();
    test_columns();
    test_abort();
    test_scratch_growth();
    test_writer();
    test_round_trip();
    return od_test_result("test_csv");
}
