/* Unit tests for od/multipart.h: boundaries from Content-Type values, then
 * bodies as browsers, curl and sloppier clients send them, and the
 * malformed ones. */
#include "od/multipart.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "od/buf.h"
#include "od_test.h"

#define S(lit) lit, sizeof(lit) - 1

/* ---- boundary ---- */

/* The boundary as a string, or "-1". */
static const char *boundary(const char *ct)
{
    static char res[128];
    const char *b = NULL;
    size_t blen = 0;
    if (od_mp_boundary(ct, strlen(ct), &b, &blen) != 0)
        return "-1";
    snprintf(res, sizeof(res), "%.*s", (int)blen, b);
    return res;
}

static void test_boundary(void)
{
    CHECK_STR(boundary("multipart/form-data; boundary=XyZ"), "XyZ");
    CHECK_STR(boundary("multipart/form-data;boundary=XyZ"), "XyZ");
    CHECK_STR(boundary("Multipart/Form-Data; BOUNDARY=\"a b\""), "a b");
    CHECK_STR(boundary("  multipart/form-data ; boundary=x ; "), "x");
    CHECK_STR(boundary("multipart/form-data; charset=utf-8; boundary=----WebKitFormBoundary7MA4YWxkTrZu0gW"),
              "----WebKitFormBoundary7MA4YWxkTrZu0gW");
    CHECK_STR(boundary("multipart/form-data; boundary=\"'()+_,-./:=?\""), "'()+_,-./:=?");
    /* a `;` or "boundary=" inside another quoted parameter is not a parameter */
    CHECK_STR(boundary("multipart/form-data; x=\"a;boundary=evil\"; boundary=good"), "good");
    CHECK_STR(boundary("multipart/form-data; x=\"a\\\"; boundary=evil\"; boundary=good"), "good");
    char ct[200];
    snprintf(ct, sizeof(ct), "multipart/form-data; boundary=%070d", 7);
    CHECK(strlen(boundary(ct)) == 70);
    snprintf(ct, sizeof(ct), "multipart/form-data; boundary=%071d", 7);
    CHECK_STR(boundary(ct), "-1");

    CHECK_STR(boundary(""), "-1");
    CHECK_STR(boundary("text/csv"), "-1");
    CHECK_STR(boundary("multipart/mixed; boundary=x"), "-1");
    CHECK_STR(boundary("multipart/form-dataX; boundary=x"), "-1");
    CHECK_STR(boundary("multipart/form-data"), "-1");
    CHECK_STR(boundary("multipart/form-data; charset=utf-8"), "-1");
    CHECK_STR(boundary("multipart/form-data; boundary="), "-1");
    CHECK_STR(boundary("multipart/form-data; boundary=\"\""), "-1");
    CHECK_STR(boundary("multipart/form-data; boundary=\"x"), "-1");
    CHECK_STR(boundary("multipart/form-data; boundary=a; boundary=b"), "-1");
    CHECK_STR(boundary("multipart/form-data; boundary=\"a\\\"b\""), "-1"); /* no boundary needs a backslash */
    CHECK_STR(boundary("multipart/form-data; boundary=\"a \""), "-1");     /* ends with a space */
    CHECK_STR(boundary("multipart/form-data; boundary=\"a\x01\""), "-1");
    CHECK_STR(boundary("multipart/form-data; boundary=a@b"), "-1");
    CHECK_STR(boundary("multipart/form-data; boundary=x y"), "-1");
    CHECK_STR(boundary("multipart/form-data; boundary=\"a!b\""), "-1"); /* not an RFC 2046 bchar */
    CHECK_STR(boundary("multipart/form-data; boundary =x"), "-1");
}

/* ---- bodies ---- */

/* Every part as "name|filename|ctype|data;" ("-" for an absent value). */
typedef struct collect {
    od_buf_t out;
    int calls;
    int stop_at; /* return 7 on this call, -1 never */
} collect_t;

static void put_opt(od_buf_t *b, const char *p, size_t len)
{
    if (p == NULL)
        od_buf_puts(b, "-");
    else
        od_buf_append(b, p, len);
}

static int on_part(void *arg, const od_mp_part_t *p)
{
    collect_t *c = arg;
    CHECK(p->name != NULL && p->data != NULL);
    od_buf_append(&c->out, p->name, p->name_len);
    od_buf_puts(&c->out, "|");
    put_opt(&c->out, p->filename, p->filename_len);
    od_buf_puts(&c->out, "|");
    put_opt(&c->out, p->ctype, p->ctype_len);
    od_buf_puts(&c->out, "|");
    od_buf_append(&c->out, p->data, p->len);
    od_buf_puts(&c->out, ";");
    return c->calls++ == c->stop_at ? 7 : 0;
}

static char result[8192];
static size_t result_len;

/* Parses with boundary `b`; returns the parts as above, or "ERR: <message>"
 * (nothing having been given to the callback), or "STOP <rc>: <parts>". */
static const char *parse_b(const char *body, size_t len, const char *b, int stop_at)
{
    collect_t c = {.out = OD_BUF_INIT, .stop_at = stop_at};
    const char *err = "unset";
    int rc = od_mp_parse(body, len, b, strlen(b), on_part, &c, &err);
    if (rc == -1) {
        CHECK(c.calls == 0 && err != NULL);
        snprintf(result, sizeof(result), "ERR: %s", err ? err : "(null)");
    } else if (rc != 0) {
        CHECK(err == NULL);
        snprintf(result, sizeof(result), "STOP %d: %s", rc, c.out.base ? c.out.base : "");
    } else {
        CHECK(err == NULL);
        result_len = c.out.len;
        if (c.out.len < sizeof(result)) {
            memcpy(result, c.out.base ? c.out.base : "", c.out.len);
            result[c.out.len] = '\0';
        } else {
            snprintf(result, sizeof(result), "(too long)");
        }
    }
    od_buf_free(&c.out);
    return result;
}

static const char *parse(const char *body, size_t len)
{
    return parse_b(body, len, "XyZ", -1);
}

static void test_basic(void)
{
    /* what curl -F sends */
    CHECK_STR(parse(S("--XyZ\r\n"
                      "Content-Disposition: form-data; name=\"scenario\"\r\n"
                      "\r\n"
                      "appointment_reminder\r\n"
                      "--XyZ\r\n"
                      "Content-Disposition: form-data; name=\"file\"; filename=\"contacts.csv\"\r\n"
                      "Content-Type: text/csv\r\n"
                      "\r\n"
                      "phone,name\r\n+34123456780,Ana\r\n"
                      "\r\n"
                      "--XyZ--\r\n")),
              "scenario|-|-|appointment_reminder;"
              "file|contacts.csv|text/csv|phone,name\r\n+34123456780,Ana\r\n;");
    /* header names and the disposition type in any case, unquoted values,
     * spaces, other headers and parameters, filename* ignored */
    CHECK_STR(parse(S("--XyZ\r\n"
                      "content-disposition:FORM-DATA;NAME=pacing_per_min ;  x=1;filename*=UTF-8''a.csv\r\n"
                      "X-Other: whatever\r\n"
                      "CONTENT-TYPE:  text/plain; charset=utf-8  \r\n"
                      "\r\n"
                      "10\r\n"
                      "--XyZ--")),
              "pacing_per_min|-|text/plain; charset=utf-8|10;");
    /* an empty part, an empty name, an empty filename */
    CHECK_STR(parse(S("--XyZ\r\nContent-Disposition: form-data; name=\"\"; filename=\"\"\r\n\r\n\r\n--XyZ--")),
              "||-|;");
    /* no part at all */
    CHECK_STR(parse(S("--XyZ--\r\n")), "");
    /* transport padding after the boundary */
    CHECK_STR(parse(S("--XyZ \t\r\nContent-Disposition: form-data; name=a\r\n\r\n1\r\n--XyZ  \r\n"
                      "Content-Disposition: form-data; name=b\r\n\r\n2\r\n--XyZ--")),
              "a|-|-|1;b|-|-|2;");
}

static void test_quoted_boundary(void)
{
    const char *ct = "multipart/form-data; boundary=\"a b:c\"";
    const char *b;
    size_t blen;
    CHECK(od_mp_boundary(ct, strlen(ct), &b, &blen) == 0 && blen == 5);
    static const char body[] = "--a b:c\r\nContent-Disposition: form-data; name=f\r\n\r\nv\r\n--a b:c--\r\n";
    collect_t c = {.out = OD_BUF_INIT, .stop_at = -1};
    CHECK(od_mp_parse(body, sizeof(body) - 1, b, blen, on_part, &c, NULL) == 0);
    CHECK_STR(c.out.base, "f|-|-|v;");
    od_buf_free(&c.out);
}

static void test_lf_only(void)
{
    CHECK_STR(parse(S("--XyZ\n"
                      "Content-Disposition: form-data; name=\"scenario\"\n"
                      "\n"
                      "s1\n"
                      "--XyZ\n"
                      "Content-Disposition: form-data; name=\"file\"; filename=\"c.csv\"\n"
                      "\n"
                      "phone\n+1\n\n"
                      "--XyZ--\n")),
              "scenario|-|-|s1;file|c.csv|-|phone\n+1\n;");
    /* mixed: LF headers, CRLF delimiter, empty data */
    CHECK_STR(parse(S("--XyZ\nContent-Disposition: form-data; name=a\r\n\n\r\n--XyZ--")), "a|-|-|;");
    CHECK_STR(parse(S("--XyZ\nContent-Disposition: form-data; name=a\n\n\n--XyZ--")), "a|-|-|;");
}

static void test_binary_data(void)
{
    /* CRLFs, NULs, lone CRs and things that look like delimiters but are not */
    static const char body[] = "--XyZ\r\n"
                               "Content-Disposition: form-data; name=\"file\"; filename=\"b.bin\"\r\n"
                               "Content-Type: application/octet-stream\r\n"
                               "\r\n"
                               "a\r\nb\0c\rd\n"
                               "--XyZ is not at a line start\r\n"
                               "\r\n--XyZabc\r\n"  /* boundary then more text */
                               "\r\n--XyZ-x\r\n"   /* one dash only */
                               "\n--XyZ_\n"
                               "\r\n--XY\r\n"      /* case matters */
                               "\r\n--XyZ x\r\n"   /* padding then text */
                               "--\r\n-\r\n--X\r"  /* partial matches */
                               "\r\n"
                               "\r\n--XyZ--\r\n";
    static const char data[] = "a\r\nb\0c\rd\n"
                               "--XyZ is not at a line start\r\n"
                               "\r\n--XyZabc\r\n"
                               "\r\n--XyZ-x\r\n"
                               "\n--XyZ_\n"
                               "\r\n--XY\r\n"
                               "\r\n--XyZ x\r\n"
                               "--\r\n-\r\n--X\r"
                               "\r\n";
    parse(S(body));
    static const char want_head[] = "file|b.bin|application/octet-stream|";
    CHECK(result_len == sizeof(want_head) - 1 + sizeof(data) - 1 + 1);
    CHECK(memcmp(result, want_head, sizeof(want_head) - 1) == 0);
    CHECK(memcmp(result + sizeof(want_head) - 1, data, sizeof(data) - 1) == 0);

    /* data that ends with a CR keeps it in a CRLF body */
    CHECK_STR(parse(S("--XyZ\r\nContent-Disposition: form-data; name=a\r\n\r\nx\r\r\n--XyZ--")), "a|-|-|x\r;");
    /* the delimiter's line end is the first line end before it, not all of them */
    CHECK_STR(parse(S("--XyZ\r\nContent-Disposition: form-data; name=a\r\n\r\n\r\n\r\n\r\n--XyZ--")),
              "a|-|-|\r\n\r\n;");
}

typedef struct one_part {
    const char *name, *data;
    size_t name_len, len;
    int calls;
} one_part_t;

static int on_one_part(void *arg, const od_mp_part_t *p)
{
    one_part_t *o = arg;
    o->name = p->name;
    o->name_len = p->name_len;
    o->data = p->data;
    o->len = p->len;
    o->calls++;
    return 0;
}

/* An 8 MB file part with a false delimiter every 64 bytes: the data points
 * into the body and is exactly what was sent. */
static void test_big_part(void)
{
    size_t n = 8u << 20;
    od_buf_t b = OD_BUF_INIT;
    od_buf_puts(&b, "--XyZ\r\nContent-Disposition: form-data; name=\"file\"; filename=\"big.csv\"\r\n\r\n");
    size_t start = b.len;
    od_buf_reserve(&b, n + 64);
    for (size_t i = 0; i < n; i += 64)
        od_buf_append(&b, "\r\n--XyZz 45678901234567890123456789012345678901234567890123456789", 64);
    size_t end = b.len;
    od_buf_puts(&b, "\r\n--XyZ--\r\n");
    one_part_t o = {0};
    CHECK(od_mp_parse(b.base, b.len, "XyZ", 3, on_one_part, &o, NULL) == 0);
    CHECK(o.calls == 1 && o.name_len == 4 && memcmp(o.name, "file", 4) == 0);
    CHECK(o.data == b.base + start && o.len == end - start);
    od_buf_free(&b);
}

static void test_malformed(void)
{
    CHECK_STR(parse(S("")), "ERR: no opening boundary");
    CHECK_STR(parse(S("hello")), "ERR: no opening boundary");
    CHECK_STR(parse(S("--XyZabc\r\n")), "ERR: no opening boundary");
    CHECK_STR(parse(S("--xyz\r\n")), "ERR: no opening boundary");
    CHECK_STR(parse(S("--XyZ")), "ERR: no opening boundary");
    /* no closing delimiter */
    CHECK_STR(parse(S("--XyZ\r\nContent-Disposition: form-data; name=a\r\n\r\n1")), "ERR: no closing boundary");
    CHECK_STR(parse(S("--XyZ\r\nContent-Disposition: form-data; name=a\r\n\r\n1\r\n--XyZ")),
              "ERR: no closing boundary");
    CHECK_STR(parse(S("--XyZ\r\nContent-Disposition: form-data; name=a\r\n\r\n1\r\n--XyZ-")),
              "ERR: no closing boundary");
    CHECK_STR(parse(S("--XyZ\r\nContent-Disposition: form-data; name=a\r\n\r\n1\r\n--XyZ\r\n")),
              "ERR: part headers not terminated by an empty line");
    /* the first part is well-formed, the second is not: nothing is given */
    CHECK_STR(parse(S("--XyZ\r\nContent-Disposition: form-data; name=a\r\n\r\n1\r\n--XyZ\r\n"
                      "Content-Disposition: form-data\r\n\r\n2\r\n--XyZ--")),
              "ERR: Content-Disposition without a name");
    /* headers */
    CHECK_STR(parse(S("--XyZ\r\nContent-Disposition: form-data; name=a\r\n")),
              "ERR: part headers not terminated by an empty line");
    CHECK_STR(parse(S("--XyZ\r\nContent-Disposition: form-data; name=a")),
              "ERR: part headers not terminated by an empty line");
    CHECK_STR(parse(S("--XyZ\r\nContent-Disposition: form-data; name=a\r\n--XyZ--\r\n")),
              "ERR: part headers not terminated by an empty line");
    CHECK_STR(parse(S("--XyZ\r\nContent-Disposition form-data; name=a\r\n\r\n\r\n--XyZ--")),
              "ERR: malformed part header");
    CHECK_STR(parse(S("--XyZ\r\nContent-Disposition : form-data; name=a\r\n\r\n\r\n--XyZ--")),
              "ERR: malformed part header");
    CHECK_STR(parse(S("--XyZ\r\nContent-Disposition: form-data;\r\n name=a\r\n\r\n\r\n--XyZ--")),
              "ERR: malformed part header"); /* no folding */
    CHECK_STR(parse(S("--XyZ\r\nContent-Disposition: form-data; name=\"a\rb\"\r\n\r\n\r\n--XyZ--")),
              "ERR: malformed part header");
    CHECK_STR(parse(S("--XyZ\r\nContent-Type: text/csv\r\n\r\nx\r\n--XyZ--")),
              "ERR: part without Content-Disposition");
    CHECK_STR(parse(S("--XyZ\r\n\r\nx\r\n--XyZ--")), "ERR: part without Content-Disposition");
    CHECK_STR(parse(S("--XyZ\r\nContent-Disposition: attachment; name=a\r\n\r\nx\r\n--XyZ--")),
              "ERR: Content-Disposition is not form-data");
    CHECK_STR(parse(S("--XyZ\r\nContent-Disposition: form-data; filename=\"a.csv\"\r\n\r\nx\r\n--XyZ--")),
              "ERR: Content-Disposition without a name");
    CHECK_STR(parse(S("--XyZ\r\nContent-Disposition: form-data; name=\"a\r\n\r\nx\r\n--XyZ--")),
              "ERR: malformed Content-Disposition");
    CHECK_STR(parse(S("--XyZ\r\nContent-Disposition: form-data; name=a b\r\n\r\nx\r\n--XyZ--")),
              "ERR: malformed Content-Disposition");
    CHECK_STR(parse(S("--XyZ\r\nContent-Disposition: form-data; name=a; name=b\r\n\r\nx\r\n--XyZ--")),
              "ERR: malformed Content-Disposition");
    CHECK_STR(parse(S("--XyZ\r\nContent-Disposition: form-data; name=\r\n\r\nx\r\n--XyZ--")),
              "ERR: malformed Content-Disposition");
    CHECK_STR(parse(S("--XyZ\r\nContent-Disposition: form-data; name=a\r\n"
                      "content-disposition: form-data; name=b\r\n\r\nx\r\n--XyZ--")),
              "ERR: a part header is given twice");
    /* boundaries the parser refuses */
    char b71[72];
    memset(b71, 'b', 71);
    b71[71] = '\0';
    CHECK_STR(parse_b(S("--XyZ--"), b71, -1), "ERR: boundary longer than 70 characters");
    CHECK_STR(parse_b(S("--XyZ--"), "", -1), "ERR: empty boundary");
}

static void test_preamble_epilogue(void)
{
    CHECK_STR(parse(S("This is a preamble.\r\n--XyZ is not it\r\n"
                      "--XyZ\r\nContent-Disposition: form-data; name=a\r\n\r\n1\r\n--XyZ--\r\n"
                      "epilogue\r\n--XyZ\r\nContent-Disposition: form-data; name=b\r\n\r\n2\r\n--XyZ--\r\n")),
              "a|-|-|1;");
    CHECK_STR(parse(S("\r\n--XyZ\r\nContent-Disposition: form-data; name=a\r\n\r\n1\r\n--XyZ--garbage")), "a|-|-|1;");
    CHECK_STR(parse(S("preamble--XyZ\n--XyZ\nContent-Disposition: form-data; name=a\n\n1\n--XyZ--")), "a|-|-|1;");
}

static void test_escapes(void)
{
    CHECK_STR(parse(S("--XyZ\r\nContent-Disposition: form-data; name=\"a\\\"b\"; filename=\"say \\\"hi\\\".csv\"\r\n"
                      "\r\nx\r\n--XyZ--")),
              "a\"b|say \"hi\".csv|-|x;");
    CHECK_STR(parse(S("--XyZ\r\nContent-Disposition: form-data; name=file; filename=\"C:\\\\dir\\\\x.csv\"\r\n"
                      "\r\nx\r\n--XyZ--")),
              "file|C:\\dir\\x.csv|-|x;");
    /* other backslashes are kept */
    CHECK_STR(parse(S("--XyZ\r\nContent-Disposition: form-data; name=file; filename=\"C:\\dir\\x.csv\"\r\n"
                      "\r\nx\r\n--XyZ--")),
              "file|C:\\dir\\x.csv|-|x;");
    /* UTF-8 file names as browsers send them */
    CHECK_STR(parse(S("--XyZ\r\nContent-Disposition: form-data; name=file; filename=\"contactos-espa\xc3\xb1" "a.csv\"\r\n"
                      "\r\nx\r\n--XyZ--")),
              "file|contactos-espa\xc3\xb1" "a.csv|-|x;");
    /* a name with an escape next to a filename without, and the reverse */
    CHECK_STR(parse(S("--XyZ\r\nContent-Disposition: form-data; filename=\"f\\\\\"; name=\"n\"\r\n\r\nx\r\n"
                      "--XyZ\r\nContent-Disposition: form-data; filename=\"f\"; name=\"\\\\n\"\r\n\r\ny\r\n--XyZ--")),
              "n|f\\|-|x;\\n|f|-|y;");
}

static void test_stop(void)
{
    static const char body[] = "--XyZ\r\nContent-Disposition: form-data; name=a\r\n\r\n1\r\n"
                               "--XyZ\r\nContent-Disposition: form-data; name=b\r\n\r\n2\r\n"
                               "--XyZ\r\nContent-Disposition: form-data; name=c\r\n\r\n3\r\n--XyZ--";
    CHECK_STR(parse_b(S(body), "XyZ", 1), "STOP 7: a|-|-|1;b|-|-|2;");
    CHECK_STR(parse_b(S(body), "XyZ", 0), "STOP 7: a|-|-|1;");
    CHECK_STR(parse_b(S(body), "XyZ", -1), "a|-|-|1;b|-|-|2;c|-|-|3;");
}

int main(void)
{
    test_boundary();
    test_basic();
    test_quoted_boundary();
    test_lf_only();
    test_binary_data();
    test_big_part();
    test_malformed();
    test_preamble_epilogue();
    test_escapes();
    test_stop();
    return od_test_result("test_multipart");
}
