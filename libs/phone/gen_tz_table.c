/*
 * gen_tz_table: libphonenumber's prefix -> time zones map as a sorted C
 * table, generated at build time from the copy Debian ships.
 *
 *     gen_tz_table DATA0_PY OUT_C [VERSION]
 *
 * DATA0_PY is `phonenumbers/tzdata/data0.py` of Debian's python3-phonenumbers
 * (the same libphonenumber release as libphonenumber-dev; the C++ library
 * has no time-zone mapper, the Java and Python ones carry this data). It is
 * read as text, one entry per line of its `data = {...}` literal:
 *
 *      '1201':('America/New_York',),
 *      '12082':('America/Boise', 'America/Los_Angeles'),
 *
 * Anything else inside the literal fails the build (exit 1) rather than be
 * guessed at. Nothing of the file is kept in the repository.
 *
 * Output: od_phone__tz_table[] (src/tz_table.h), sorted by prefix (strcmp
 * order), each entry's zones sorted, deduplicated and joined by ",".
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PREFIX_MAX 15
#define ZONES_MAX 1024 /* characters of one entry's joined zones */

typedef struct row {
    char prefix[PREFIX_MAX + 1];
    char zones[ZONES_MAX];
} row_t;

static const char *src_path;
static int line_no;

static void die(const char *why)
{
    fprintf(stderr, "gen_tz_table: %s:%d: %s\n", src_path, line_no, why);
    exit(1);
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static int cmp_row(const void *a, const void *b)
{
    return strcmp(((const row_t *)a)->prefix, ((const row_t *)b)->prefix);
}

static int zone_char(char c)
{
    return isalnum((unsigned char)c) || c == '_' || c == '+' || c == '-' || c == '/';
}

/* One line of the literal into r; the line has no newline. */
static void parse_entry(char *p, row_t *r)
{
    char *zones[64];
    size_t nz = 0, n = 0;
    while (*p == ' ')
        p++;
    if (*p++ != '\'')
        die("an entry must start with a quoted prefix");
    while (isdigit((unsigned char)*p) && n < PREFIX_MAX)
        r->prefix[n++] = *p++;
    r->prefix[n] = '\0';
    if (n == 0 || r->prefix[0] == '0' || *p++ != '\'' || *p++ != ':' || *p++ != '(')
        die("bad prefix: 1 to 15 digits, not starting with 0, then :(");
    for (;;) {
        while (*p == ' ')
            p++;
        if (*p == ')')
            break;
        if (*p++ != '\'')
            die("a zone must be quoted");
        char *z = p;
        while (zone_char(*p))
            p++;
        if (*p != '\'' || p == z || !isalpha((unsigned char)*z))
            die("bad zone name");
        *p++ = '\0';
        if (nz == sizeof(zones) / sizeof(zones[0]))
            die("too many zones in one entry");
        zones[nz++] = z;
        if (*p == ',')
            p++;
        else if (*p != ')')
            die("zones are separated by ','");
    }
    if (nz == 0 || strcmp(p, "),") != 0)
        die("an entry ends with ),");
    qsort(zones, nz, sizeof(zones[0]), cmp_str);
    size_t len = 0;
    r->zones[0] = '\0';
    for (size_t i = 0; i < nz; i++) {
        if (i > 0 && strcmp(zones[i], zones[i - 1]) == 0)
            continue;
        int w = snprintf(r->zones + len, ZONES_MAX - len, "%s%s", len ? "," : "", zones[i]);
        if (w < 0 || (size_t)w >= ZONES_MAX - len)
            die("the zones of one entry are too long");
        len += (size_t)w;
    }
}

int main(int argc, char **argv)
{
    if (argc != 3 && argc != 4) {
        fprintf(stderr, "usage: gen_tz_table DATA0_PY OUT_C [VERSION]\n");
        return 2;
    }
    src_path = argv[1];
    const char *version = argc == 4 ? argv[3] : "unknown";
    FILE *in = fopen(src_path, "r");
    if (in == NULL)
        die("cannot open");
    row_t *rows = NULL;
    size_t nrows = 0, cap = 0, longest = 0;
    char line[8192];
    int inside = 0, closed = 0;
    while (fgets(line, sizeof(line), in) != NULL) {
        line_no++;
        size_t l = strlen(line);
        if (l == 0 || line[l - 1] != '\n')
            die("line too long, or no newline at the end");
        line[--l] = '\0';
        if (!inside) {
            inside = strcmp(line, "data = {") == 0;
            continue;
        }
        if (strcmp(line, "}") == 0) {
            closed = 1;
            break;
        }
        if (nrows == cap) {
            cap = cap ? cap * 2 : 4096;
            rows = realloc(rows, cap * sizeof(*rows));
            if (rows == NULL)
                die("out of memory");
        }
        parse_entry(line, &rows[nrows]);
        if (strlen(rows[nrows].prefix) > longest)
            longest = strlen(rows[nrows].prefix);
        nrows++;
    }
    fclose(in);
    if (!closed || nrows < 100)
        die("no complete 'data = {' ... '}' literal of at least 100 entries");
    qsort(rows, nrows, sizeof(*rows), cmp_row);
    for (size_t i = 1; i < nrows; i++)
        if (strcmp(rows[i].prefix, rows[i - 1].prefix) == 0)
            die("a prefix is listed twice");

    FILE *out = fopen(argv[2], "w");
    if (out == NULL)
        die("cannot write the output");
    fprintf(out,
            "/* Generated at build time by libs/phone/gen_tz_table.c from\n"
            " * %s\n"
            " * (Debian python3-phonenumbers %s; libphonenumber, Apache-2.0). Do not edit. */\n"
            "#include \"tz_table.h\"\n\n"
            "const char od_phone__tz_version[] = \"%s\";\n"
            "const size_t od_phone__tz_longest = %zu;\n"
            "const size_t od_phone__tz_count = %zu;\n"
            "const od_phone__tz_entry_t od_phone__tz_table[] = {\n",
            src_path, version, version, longest, nrows);
    for (size_t i = 0; i < nrows; i++)
        fprintf(out, "    {\"%s\", \"%s\"},\n", rows[i].prefix, rows[i].zones);
    fprintf(out, "};\n");
    free(rows);
    if (fclose(out) != 0)
        die("cannot write the output");
    return 0;
}
