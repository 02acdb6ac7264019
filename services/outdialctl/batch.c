/*
 * outdialctl batch upload / watch: CSV batches over the public API
 * (docs/batches.md), with libcurl. OUTDIAL_URL (default
 * http://127.0.0.1:8080) and OUTDIAL_API_KEY. Progress goes to stderr (a
 * redrawn line on a terminal), the batch object (JSON) to stdout.
 */
#include <curl/curl.h>
#include <errno.h>
#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "ctl.h"
#include "od/buf.h"
#include "od/core.h"

#define BAR_WIDTH 20
#define REDRAW_MS 100               /* at most ~10 redraws a second */
#define MAX_ANSWER (16u << 20)      /* a batch object is small; refuse a runaway answer */
#define WATCH_LOG_MS 10000          /* without a terminal: a progress line at most every 10 s */
#define WATCH_MAX_BACKOFF_MS 30000
#define UPLOAD_POLL_MS 500          /* upload: how often to ask whether the batch is validated */
#define CLEAR_EOL "\033[K"

/* ------------------------------------------------ one request, one answer */

typedef struct {
    const char *url;
    const char *api_key;
    const char *idempotency_key;     /* NULL: no header */
    curl_mime *mime;                 /* POST multipart/form-data; NULL: GET */
    curl_xferinfo_callback progress; /* NULL: no progress callback */
    void *progress_data;
    long timeout_s; /* the whole request; 0: only a stall limit (uploads of any size) */
} http_req_t;

typedef struct {
    long status;        /* HTTP status; 0 when no answer came (see error) */
    long retry_after_s; /* Retry-After in seconds, -1 when absent */
    od_buf_t body;
    char error[CURL_ERROR_SIZE];
} http_res_t;

static size_t on_answer(char *p, size_t size, size_t n, void *ud)
{
    od_buf_t *b = ud;
    size_t len = size * n;
    if (b->len + len > MAX_ANSWER)
        return 0; /* CURLE_WRITE_ERROR */
    od_buf_append(b, p, len);
    return len;
}

static struct curl_slist *header_add(struct curl_slist *list, const char *name, const char *value)
{
    od_buf_t line = OD_BUF_INIT;
    od_buf_printf(&line, "%s: %s", name, value);
    struct curl_slist *l = curl_slist_append(list, line.base);
    od_buf_free(&line);
    if (l == NULL) {
        fputs("outdialctl: out of memory\n", stderr);
        abort();
    }
    return l;
}

/* Sends one request on `curl` (reset first; its open connections are kept
 * for the next one). Returns 0 when an HTTP answer came (rs->status, rs->body),
 * -1 on a network error (rs->error). */
static int http_do(CURL *curl, const http_req_t *rq, http_res_t *rs)
{
    od_buf_reset(&rs->body);
    rs->status = 0;
    rs->retry_after_s = -1;
    rs->error[0] = '\0';

    od_buf_t auth = OD_BUF_INIT;
    od_buf_printf(&auth, "Bearer %s", rq->api_key);
    struct curl_slist *hdrs = header_add(NULL, "Authorization", auth.base);
    od_buf_free(&auth);
    if (rq->idempotency_key != NULL)
        hdrs = header_add(hdrs, "Idempotency-Key", rq->idempotency_key);
    hdrs = header_add(hdrs, "Accept", "application/json, application/problem+json");

    curl_easy_reset(curl);
    curl_easy_setopt(curl, CURLOPT_URL, rq->url);
    curl_easy_setopt(curl, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(curl, CURLOPT_HTTPHEADER, hdrs);
    curl_easy_setopt(curl, CURLOPT_USERAGENT, "outdialctl");
    curl_easy_setopt(curl, CURLOPT_ERRORBUFFER, rs->error);
    curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, on_answer);
    curl_easy_setopt(curl, CURLOPT_WRITEDATA, &rs->body);
    curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(curl, CURLOPT_TCP_KEEPALIVE, 1L);
    curl_easy_setopt(curl, CURLOPT_CONNECTTIMEOUT, 10L);
    if (rq->timeout_s > 0) {
        curl_easy_setopt(curl, CURLOPT_TIMEOUT, rq->timeout_s);
    } else {
        /* the server validates the whole file before it answers: allow a long quiet spell */
        curl_easy_setopt(curl, CURLOPT_LOW_SPEED_LIMIT, 1L);
        curl_easy_setopt(curl, CURLOPT_LOW_SPEED_TIME, 300L);
    }
    if (rq->mime != NULL)
        curl_easy_setopt(curl, CURLOPT_MIMEPOST, rq->mime);
    if (rq->progress != NULL) {
        curl_easy_setopt(curl, CURLOPT_XFERINFOFUNCTION, rq->progress);
        curl_easy_setopt(curl, CURLOPT_XFERINFODATA, rq->progress_data);
        curl_easy_setopt(curl, CURLOPT_NOPROGRESS, 0L);
    }

    CURLcode c = curl_easy_perform(curl);
    curl_easy_setopt(curl, CURLOPT_HTTPHEADER, NULL);
    curl_slist_free_all(hdrs);
    if (c != CURLE_OK) {
        if (rs->error[0] == '\0')
            snprintf(rs->error, sizeof(rs->error), "%s", curl_easy_strerror(c));
        return -1;
    }
    curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &rs->status);
    struct curl_header *h;
    if (curl_easy_header(curl, "Retry-After", 0, CURLH_HEADER, -1, &h) == CURLHE_OK) {
        char *end;
        long v = strtol(h->value, &end, 10);
        if (end != h->value && *end == '\0' && v >= 0)
            rs->retry_after_s = v;
    }
    return 0;
}

/* "422 unknown_scenario: the project has no scenario ..." from a problem+json
 * answer, else the status and the start of the raw body. */
static void describe_answer(const http_res_t *rs, od_buf_t *out)
{
    json_t *j = rs->body.len ? json_loadb(rs->body.base, rs->body.len, 0, NULL) : NULL;
    const char *code = json_string_value(json_object_get(j, "code"));
    const char *detail = json_string_value(json_object_get(j, "detail"));
    if (code != NULL) {
        od_buf_printf(out, "%ld %s: %s", rs->status, code, detail ? detail : "(no detail)");
        /* field errors that say more than the detail */
        size_t i;
        json_t *e;
        json_array_foreach(json_object_get(j, "errors"), i, e)
        {
            const char *field = json_string_value(json_object_get(e, "field"));
            const char *msg = json_string_value(json_object_get(e, "message"));
            if (msg != NULL && (detail == NULL || strcmp(msg, detail) != 0))
                od_buf_printf(out, "; %s%s%s", field ? field : "", field ? ": " : "", msg);
        }
    } else if (rs->body.len == 0) {
        od_buf_printf(out, "%ld: empty answer", rs->status);
    } else {
        od_buf_printf(out, "%ld: ", rs->status);
        size_t n = OD_MIN(rs->body.len, (size_t)500);
        for (size_t i = 0; i < n; i++) {
            unsigned char c = (unsigned char)rs->body.base[i];
            od_buf_append(out, c < 0x20 || c == 0x7f ? " " : (const char *)&rs->body.base[i], 1);
        }
        while (out->len > 0 && out->base[out->len - 1] == ' ')
            out->base[--out->len] = '\0';
        if (n < rs->body.len)
            od_buf_puts(out, "...");
    }
    json_decref(j);
}

static void print_problem(const http_res_t *rs)
{
    od_buf_t d = OD_BUF_INIT;
    describe_answer(rs, &d);
    fprintf(stderr, "outdialctl: %s\n", d.base);
    od_buf_free(&d);
}

/* The batch object on stdout, newline-terminated; 0, or 1 if stdout failed. */
static int print_body(const http_res_t *rs)
{
    if (rs->body.len > 0)
        fwrite(rs->body.base, 1, rs->body.len, stdout);
    if (rs->body.len == 0 || rs->body.base[rs->body.len - 1] != '\n')
        fputc('\n', stdout);
    if (fflush(stdout) != 0 || ferror(stdout)) {
        fprintf(stderr, "outdialctl: writing to stdout: %s\n", strerror(errno));
        return 1;
    }
    return 0;
}

/* ------------------------------------------------------------ shared bits */

typedef struct {
    char *base_url; /* OUTDIAL_URL without trailing slashes (heap) */
    const char *api_key;
} api_env_t;

static int has_ctl_chars(const char *s, int space_too)
{
    for (const unsigned char *p = (const unsigned char *)s; *p != '\0'; p++)
        if (*p < 0x20 || *p == 0x7f || (space_too && *p == ' '))
            return 1;
    return 0;
}

static int api_env(api_env_t *e)
{
    const char *url = getenv("OUTDIAL_URL");
    if (url == NULL || *url == '\0')
        url = "http://127.0.0.1:8080";
    e->api_key = getenv("OUTDIAL_API_KEY");
    if (e->api_key == NULL || *e->api_key == '\0') {
        fputs("outdialctl: OUTDIAL_API_KEY is not set (an API key of the project, e.g. from "
              "`outdialctl key create PROJECT --scopes outbound:trigger,sessions:read`)\n",
              stderr);
        return -1;
    }
    if (has_ctl_chars(e->api_key, 1)) {
        fputs("outdialctl: OUTDIAL_API_KEY contains spaces or control characters\n", stderr);
        return -1;
    }
    if (has_ctl_chars(url, 1)) {
        fputs("outdialctl: OUTDIAL_URL contains spaces or control characters\n", stderr);
        return -1;
    }
    size_t n = strlen(url);
    while (n > 0 && url[n - 1] == '/')
        n--;
    e->base_url = od_strndup(url, n);
    return 0;
}

static void bar(char out[BAR_WIDTH + 1], long long done, long long total)
{
    long long fill = total > 0 ? done * BAR_WIDTH / total : 0;
    fill = fill < 0 ? 0 : fill > BAR_WIDTH ? BAR_WIDTH : fill;
    for (int i = 0; i < BAR_WIDTH; i++)
        out[i] = i < fill ? '#' : '-';
    out[BAR_WIDTH] = '\0';
}

static int percent(long long done, long long total)
{
    if (total <= 0)
        return 0;
    long long p = done * 100 / total;
    return p < 0 ? 0 : p > 100 ? 100 : (int)p;
}

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

/* ----------------------------------------------------------------- upload */

typedef struct {
    const char *name; /* the file's basename */
    int tty;          /* stderr is a terminal: redraw; else only the final line */
    int drawn;        /* a line without its newline is on the terminal */
    int64_t last_ms;
    curl_off_t now, total;
} upload_bar_t;

static void upload_draw(upload_bar_t *b, int final)
{
    char sizes[64], bars[BAR_WIDTH + 1];
    long long now = (long long)b->now, total = (long long)(b->total > 0 ? b->total : b->now);
    if (total >= 1000000)
        snprintf(sizes, sizeof(sizes), "%.1f/%.1f MB", now / 1e6, total / 1e6);
    else if (total >= 1000)
        snprintf(sizes, sizeof(sizes), "%.1f/%.1f kB", now / 1e3, total / 1e3);
    else
        snprintf(sizes, sizeof(sizes), "%lld/%lld B", now, total);
    bar(bars, now, total);
    fprintf(stderr, "%suploading %s [%s] %3d%%  %s%s%s", b->tty ? "\r" : "", b->name, bars,
            total > 0 ? percent(now, total) : (final ? 100 : 0), sizes, b->tty ? CLEAR_EOL : "", final ? "\n" : "");
    fflush(stderr);
    b->drawn = !final;
}

static int on_upload_progress(void *ud, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal, curl_off_t ulnow)
{
    (void)dltotal, (void)dlnow;
    upload_bar_t *b = ud;
    b->now = ulnow;
    if (ultotal > 0)
        b->total = ultotal;
    if (b->tty) {
        int64_t t = od_mono_ms();
        if (t - b->last_ms >= REDRAW_MS) {
            b->last_ms = t;
            upload_draw(b, 0);
        }
    }
    return 0;
}

static size_t file_read(char *buf, size_t size, size_t n, void *arg)
{
    FILE *f = arg;
    size_t got = fread(buf, 1, size * n, f);
    return got == 0 && ferror(f) ? CURL_READFUNC_ABORT : got;
}

static int file_seek(void *arg, curl_off_t offset, int origin)
{
    return fseeko(arg, (off_t)offset, origin) == 0 ? CURL_SEEKFUNC_OK : CURL_SEEKFUNC_FAIL;
}

static int mime_field(curl_mime *mime, const char *name, const char *value)
{
    if (value == NULL)
        return 0;
    curl_mimepart *p = curl_mime_addpart(mime);
    return p != NULL && curl_mime_name(p, name) == CURLE_OK && curl_mime_data(p, value, CURL_ZERO_TERMINATED) == CURLE_OK
               ? 0
               : -1;
}

static int follow_batch(CURL *curl, const api_env_t *env, const char *id, long interval_ms, int until_validated);

int ctl_batch_upload(const char *path, const ctl_batch_upload_opts_t *o)
{
    api_env_t env;
    if (api_env(&env) != 0)
        return 1;
    if (o->idempotency_key != NULL && (*o->idempotency_key == '\0' || has_ctl_chars(o->idempotency_key, 0))) {
        fputs("outdialctl: --idempotency-key must be non-empty, without control characters\n", stderr);
        free(env.base_url);
        return 2;
    }
    /* the file is opened (and checked) here, before any request, and sent from this handle */
    FILE *f = fopen(path, "rb");
    struct stat st;
    if (f == NULL || fstat(fileno(f), &st) != 0) {
        fprintf(stderr, "outdialctl: cannot read %s: %s\n", path, strerror(errno));
        if (f != NULL)
            fclose(f);
        free(env.base_url);
        return 1;
    }
    if (!S_ISREG(st.st_mode)) {
        fprintf(stderr, "outdialctl: cannot read %s: not a regular file\n", path);
        fclose(f);
        free(env.base_url);
        return 1;
    }
    const char *slash = strrchr(path, '/');
    const char *name = slash ? slash + 1 : path;

    int rc = 1;
    curl_global_init(CURL_GLOBAL_DEFAULT);
    CURL *curl = curl_easy_init();
    curl_mime *mime = curl ? curl_mime_init(curl) : NULL;
    curl_mimepart *part = NULL;
    /* the settings first, then the file: a streaming reader knows them before the rows */
    if (mime == NULL || mime_field(mime, "scenario", o->scenario) != 0 ||
        mime_field(mime, "pacing_per_min", o->pacing) != 0 || mime_field(mime, "start_at", o->start_at) != 0 ||
        mime_field(mime, "caller_id", o->caller_id) != 0 || mime_field(mime, "retry_on", o->retry_on) != 0 ||
        mime_field(mime, "retry_max_attempts", o->retry_max_attempts) != 0 ||
        mime_field(mime, "retry_delay_s", o->retry_delay_s) != 0 || (part = curl_mime_addpart(mime)) == NULL ||
        curl_mime_name(part, "file") != CURLE_OK ||
        curl_mime_data_cb(part, (curl_off_t)st.st_size, file_read, file_seek, NULL, f) != CURLE_OK ||
        curl_mime_filename(part, name) != CURLE_OK || curl_mime_type(part, "text/csv") != CURLE_OK) {
        fputs("outdialctl: cannot set up the request (libcurl)\n", stderr);
    } else {
        od_buf_t url = OD_BUF_INIT;
        od_buf_printf(&url, "%s/v1/batches", env.base_url);
        upload_bar_t b = {.name = name, .tty = isatty(STDERR_FILENO), .total = (curl_off_t)st.st_size};
        http_req_t rq = {.url = url.base,
                         .api_key = env.api_key,
                         .idempotency_key = o->idempotency_key,
                         .mime = mime,
                         .progress = on_upload_progress,
                         .progress_data = &b};
        http_res_t rs = {.body = OD_BUF_INIT};
        if (http_do(curl, &rq, &rs) != 0) {
            if (b.drawn)
                fputc('\n', stderr);
            fprintf(stderr, "outdialctl: POST %s: %s\n", url.base, rs.error);
        } else {
            upload_draw(&b, 1); /* the final line, on a terminal or not */
            json_t *batch = rs.status == 201 ? json_loadb(rs.body.base ? rs.body.base : "", rs.body.len, 0, NULL)
                                             : NULL;
            const char *id = json_string_value(json_object_get(batch, "id"));
            const char *status = json_string_value(json_object_get(batch, "status"));
            if (rs.status == 201 && !o->no_wait && id != NULL && status != NULL && strcmp(status, "validating") == 0)
                rc = follow_batch(curl, &env, id, UPLOAD_POLL_MS, 1); /* prints the validated batch */
            else if (rs.status == 201 || rs.status == 200)
                rc = print_body(&rs);
            else
                print_problem(&rs);
            json_decref(batch);
        }
        od_buf_free(&rs.body);
        od_buf_free(&url);
    }
    curl_mime_free(mime);
    curl_easy_cleanup(curl);
    curl_global_cleanup();
    fclose(f);
    free(env.base_url);
    return rc;
}

/* ------------------------------------------------------------------ watch */

/* The progress line of a batch object; returns its status ("?" if absent). */
static const char *watch_line(json_t *batch, od_buf_t *out)
{
    static const char *const names[] = {"queued", "dialing", "connected", "completed", "failed", "canceled"};
    json_int_t n[OD_ARRAY_SIZE(names)];
    json_t *counts = json_object_get(batch, "counts");
    for (size_t i = 0; i < OD_ARRAY_SIZE(names); i++)
        n[i] = json_integer_value(json_object_get(counts, names[i]));
    const char *status = json_string_value(json_object_get(batch, "status"));
    if (status == NULL)
        status = "?";
    long long finished = (long long)(n[3] + n[4] + n[5]);
    long long accepted = (long long)json_integer_value(json_object_get(batch, "accepted_rows"));
    int done = strcmp(status, "completed") == 0 || strcmp(status, "canceled") == 0;
    char bars[BAR_WIDTH + 1];
    bar(bars, accepted > 0 ? finished : done, accepted > 0 ? accepted : 1);
    od_buf_reset(out);
    od_buf_printf(out, "%s [%s] %3d%%  %lld/%lld ", status, bars,
                  accepted > 0 ? percent(finished, accepted) : (done ? 100 : 0), finished, accepted);
    for (size_t i = 0; i < OD_ARRAY_SIZE(names); i++)
        od_buf_printf(out, " %s %lld", names[i], (long long)n[i]);
    const char *start_at = json_string_value(json_object_get(batch, "start_at"));
    if (strcmp(status, "validating") == 0) {
        od_buf_reset(out);
        od_buf_printf(out, "validating %lld rows", (long long)json_integer_value(json_object_get(batch, "total_rows")));
    } else if (strcmp(status, "scheduled") == 0 && start_at != NULL)
        od_buf_printf(out, "  starts %s", start_at);
    return status;
}

/*
 * Polls the batch every interval_ms, drawing its progress line on stderr,
 * until it is completed or canceled (until_validated: until it is no longer
 * validating); then prints it on stdout. Transient failures (network, 5xx,
 * 408, 429) are retried with backoff; another answer ends with its problem.
 * Returns the exit code.
 */
static int follow_batch(CURL *curl, const api_env_t *env, const char *id, long interval_ms, int until_validated)
{
    char *esc = curl_easy_escape(curl, id, 0);
    if (esc == NULL) {
        fputs("outdialctl: cannot set up the request (libcurl)\n", stderr);
        return 1;
    }
    od_buf_t url = OD_BUF_INIT, line = OD_BUF_INIT, shown = OD_BUF_INIT, msg = OD_BUF_INIT;
    od_buf_printf(&url, "%s/v1/batches/%s", env->base_url, esc);
    curl_free(esc);
    http_req_t rq = {.url = url.base, .api_key = env->api_key, .timeout_s = 30};
    http_res_t rs = {.body = OD_BUF_INIT};
    int tty = isatty(STDERR_FILENO), drawn = 0, rc = 1;
    char shown_status[32] = "";
    int64_t shown_ms = 0;
    long backoff_ms = 0; /* > 0 while answers fail */

    for (;;) {
        long wait_ms = interval_ms;
        od_buf_reset(&msg);
        json_t *batch = NULL;
        if (http_do(curl, &rq, &rs) != 0) {
            od_buf_puts(&msg, rs.error);
        } else if (rs.status == 200) {
            batch = json_loadb(rs.body.base ? rs.body.base : "", rs.body.len, 0, NULL);
            if (!json_is_object(batch))
                od_buf_puts(&msg, "200: the answer is not a JSON object");
        } else if (rs.status >= 500 || rs.status == 429 || rs.status == 408) {
            describe_answer(&rs, &msg);
        } else {
            if (drawn)
                fputc('\n', stderr);
            print_problem(&rs);
            break;
        }

        if (msg.len > 0) { /* transient: report, wait, try again */
            if (rs.status == 429 && rs.retry_after_s > 0) {
                /* over the key's request budget: from now on poll no faster than it refills */
                interval_ms = OD_MAX(interval_ms, rs.retry_after_s * 1000);
                wait_ms = interval_ms;
            } else {
                backoff_ms = backoff_ms > 0 ? OD_MIN(backoff_ms * 2, WATCH_MAX_BACKOFF_MS) : OD_MAX(interval_ms, 1000);
                wait_ms = OD_MAX(backoff_ms, rs.retry_after_s * 1000);
            }
            fprintf(stderr, "%soutdialctl: GET %s: %s; retrying in %.1f s\n", drawn ? "\r" CLEAR_EOL : "", url.base,
                    msg.base, wait_ms / 1000.0);
            drawn = 0;
            json_decref(batch);
            sleep_ms(wait_ms);
            continue;
        }
        backoff_ms = 0;

        const char *status = watch_line(batch, &line);
        int final = until_validated ? strcmp(status, "validating") != 0
                                    : strcmp(status, "completed") == 0 || strcmp(status, "canceled") == 0;
        if (until_validated && final) {
            od_buf_reset(&line);
            od_buf_printf(&line, "validated: %lld of %lld rows accepted, %s",
                          (long long)json_integer_value(json_object_get(batch, "accepted_rows")),
                          (long long)json_integer_value(json_object_get(batch, "total_rows")), status);
        }
        int64_t now = od_mono_ms();
        if (tty) {
            fprintf(stderr, "\r%s" CLEAR_EOL "%s", line.base, final ? "\n" : "");
            drawn = !final;
        } else if (final || strcmp(status, shown_status) != 0 ||
                   (now - shown_ms >= WATCH_LOG_MS && strcmp(line.base, shown.base ? shown.base : "") != 0)) {
            fprintf(stderr, "%s\n", line.base);
            snprintf(shown_status, sizeof(shown_status), "%s", status);
            od_buf_reset(&shown);
            od_buf_append(&shown, line.base, line.len);
            shown_ms = now;
        }
        fflush(stderr);
        json_decref(batch);
        if (final) {
            rc = print_body(&rs);
            break;
        }
        sleep_ms(wait_ms);
    }
    od_buf_free(&rs.body);
    od_buf_free(&url);
    od_buf_free(&line);
    od_buf_free(&shown);
    od_buf_free(&msg);
    return rc;
}

int ctl_batch_watch(const char *id, long interval_ms)
{
    api_env_t env;
    if (api_env(&env) != 0)
        return 1;
    curl_global_init(CURL_GLOBAL_DEFAULT);
    CURL *curl = curl_easy_init();
    int rc = 1;
    if (curl == NULL)
        fputs("outdialctl: cannot set up the request (libcurl)\n", stderr);
    else
        rc = follow_batch(curl, &env, id, interval_ms, 0);
    curl_easy_cleanup(curl);
    curl_global_cleanup();
    free(env.base_url);
    return rc;
}
