/*
 * The web console (services/ingress/console/, docs in README "The console"):
 * static files read once at start and served from memory — `/` is
 * index.html, `/console/<name>` the others. The console uses the public API
 * only, with the API key the user signs in with (kept in the browser's
 * sessionStorage, never in a URL). Strict headers: a Content-Security-Policy
 * that allows only this origin's scripts, styles and API, no framing, no
 * sniffing, no referrer.
 *
 * Each file is gzipped once at start (sent to clients that accept gzip) and
 * has an ETag (a hash of its content): browsers revalidate on every load
 * (`no-cache`) and get a 304 without a body while the file is unchanged.
 */
#define _GNU_SOURCE /* memmem */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <zlib.h>

#include "ingress_int.h"
#include "od/core.h"
#include "od/log.h"

#define CONSOLE_MAX_FILES 64
#define CONSOLE_MAX_FILE (4u << 20)

typedef struct console_file {
    char name[64];
    const char *ctype;
    char *body;
    size_t len;
    char *gz; /* body gzipped, when that is smaller; else NULL */
    size_t gz_len;
    char etag[20]; /* "<16 hex digits>", quotes included */
} console_file_t;

static console_file_t files[CONSOLE_MAX_FILES];
static size_t nfiles;

static const char *ctype_of(const char *name)
{
    const char *dot = strrchr(name, '.');
    static const struct {
        const char *ext, *ctype;
    } types[] = {
        {".html", "text/html; charset=utf-8"}, {".js", "text/javascript; charset=utf-8"},
        {".css", "text/css; charset=utf-8"},   {".svg", "image/svg+xml"},
        {".json", "application/json"},         {".png", "image/png"},
        {".ico", "image/x-icon"},
    };
    for (size_t i = 0; dot != NULL && i < OD_ARRAY_SIZE(types); i++)
        if (strcmp(dot, types[i].ext) == 0)
            return types[i].ctype;
    return NULL;
}

static int name_ok(const char *n)
{
    if (n[0] == '.' || strlen(n) >= sizeof(files[0].name))
        return 0;
    for (const char *p = n; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '.' || *p == '-' || *p == '_'))
            return 0;
    return 1;
}

static void prepare(console_file_t *f)
{
    uint64_t h = 0xcbf29ce484222325ull; /* FNV-1a */
    for (size_t i = 0; i < f->len; i++)
        h = (h ^ (unsigned char)f->body[i]) * 0x100000001b3ull;
    snprintf(f->etag, sizeof(f->etag), "\"%016llx\"", (unsigned long long)h);

    z_stream z;
    memset(&z, 0, sizeof(z));
    if (deflateInit2(&z, Z_BEST_COMPRESSION, Z_DEFLATED, 15 + 16 /* gzip */, 8, Z_DEFAULT_STRATEGY) != Z_OK)
        return;
    uLong cap = deflateBound(&z, (uLong)f->len);
    char *out = od_malloc(cap);
    z.next_in = (Bytef *)f->body;
    z.avail_in = (uInt)f->len;
    z.next_out = (Bytef *)out;
    z.avail_out = (uInt)cap;
    if (deflate(&z, Z_FINISH) == Z_STREAM_END && z.total_out < f->len) {
        f->gz = out;
        f->gz_len = z.total_out;
    } else {
        free(out);
    }
    deflateEnd(&z);
}

/* Whether an Accept-Encoding value accepts gzip: a "gzip" (or "*") element
 * whose q is not 0. */
static int accepts_gzip(h2o_iovec_t v)
{
    const char *p = v.base, *end = v.base + v.len;
    while (p != NULL && p < end) {
        const char *comma = memchr(p, ',', (size_t)(end - p));
        const char *stop = comma != NULL ? comma : end;
        while (p < stop && (*p == ' ' || *p == '\t'))
            p++;
        size_t n = 0;
        while (p + n < stop && p[n] != ';' && p[n] != ' ' && p[n] != '\t')
            n++;
        if ((n == 4 && strncasecmp(p, "gzip", 4) == 0) || (n == 1 && *p == '*')) {
            const char *q = p + n;
            while (q < stop && (*q == ';' || *q == ' ' || *q == '\t'))
                q++;
            /* q=0, q=0., q=0.0, ... (the value is not NUL-terminated: every read stays before `stop`) */
            int zero = stop - q >= 3 && strncasecmp(q, "q=0", 3) == 0;
            for (const char *z = q + 3; zero && z < stop && *z != ' ' && *z != '\t'; z++)
                zero = *z == '.' || *z == '0';
            if (!zero)
                return 1;
        }
        p = comma != NULL ? comma + 1 : NULL;
    }
    return 0;
}

static void load(const char *dir)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    if (d == NULL) {
        od_warn("console: %s not found; / answers 404", dir);
        return;
    }
    while ((e = readdir(d)) != NULL && nfiles < CONSOLE_MAX_FILES) {
        const char *ctype = ctype_of(e->d_name);
        if (!name_ok(e->d_name) || ctype == NULL)
            continue;
        char path[4096];
        struct stat st;
        snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
        FILE *fp = fopen(path, "rb");
        if (fp == NULL || fstat(fileno(fp), &st) != 0 || !S_ISREG(st.st_mode) || st.st_size > CONSOLE_MAX_FILE) {
            if (fp != NULL)
                fclose(fp);
            continue;
        }
        console_file_t *f = &files[nfiles];
        f->body = od_malloc((size_t)st.st_size + 1);
        f->len = fread(f->body, 1, (size_t)st.st_size, fp);
        fclose(fp);
        memcpy(f->name, e->d_name, strlen(e->d_name) + 1); /* name_ok: shorter than f->name */
        f->ctype = ctype;
        prepare(f);
        nfiles++;
    }
    closedir(d);
    od_info("console: %zu files from %s", nfiles, dir);
}

static void send_file(h2o_req_t *req, const char *name)
{
    for (size_t i = 0; i < nfiles; i++) {
        if (strcmp(files[i].name, name) != 0)
            continue;
        od_http_add_header(req, "content-security-policy",
                           "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
                           "connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'");
        od_http_add_header(req, "x-content-type-options", "nosniff");
        od_http_add_header(req, "referrer-policy", "no-referrer");
        od_http_add_header(req, "x-frame-options", "DENY");
        od_http_add_header(req, "cache-control", "no-cache");
        od_http_add_header(req, "etag", files[i].etag);
        od_http_add_header(req, "vary", "accept-encoding");
        h2o_iovec_t inm = od_http_header(req, "if-none-match");
        if (inm.len > 0 && memmem(inm.base, inm.len, files[i].etag, strlen(files[i].etag)) != NULL) {
            od_http_send(req, 304, files[i].ctype, "", 0);
            return;
        }
        if (files[i].gz != NULL && accepts_gzip(od_http_header(req, "accept-encoding"))) {
            od_http_add_header(req, "content-encoding", "gzip");
            od_http_send(req, 200, files[i].ctype, files[i].gz, files[i].gz_len);
            return;
        }
        od_http_send(req, 200, files[i].ctype, files[i].body, files[i].len);
        return;
    }
    od_http_problem(req, 404, "not_found", "no such file in the console", NULL);
}

static void on_index(void *arg, h2o_req_t *req, const od_http_params_t *params)
{
    (void)arg, (void)params;
    send_file(req, "index.html");
}

static void on_asset(void *arg, h2o_req_t *req, const od_http_params_t *params)
{
    char name[64];
    (void)arg;
    h2o_iovec_t v = params->v[0];
    if (v.len >= sizeof(name)) {
        od_http_problem(req, 404, "not_found", "no such file in the console", NULL);
        return;
    }
    memcpy(name, v.base, v.len);
    name[v.len] = '\0';
    send_file(req, name_ok(name) ? name : "");
}

void ingress__console_init(ingress_t *in)
{
    load(in->conf->console_dir);
    od_http_route(in->svc->http, "GET", "/", on_index, in);
    od_http_route(in->svc->http, "GET", "/console/{}", on_asset, in);
}
