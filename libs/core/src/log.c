#include "od/log.h"

#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "od/buf.h"
#include "od/core.h"
#include "od/rfc3339.h"

static const char *log_service = "outdial";
static od_log_level_t log_min = OD_LOG_INFO;
static const char *const level_names[] = {"debug", "info", "warn", "error"};

void od_log_init(const char *service, const char *level)
{
    log_service = service;
    log_min = OD_LOG_INFO;
    for (int i = 0; level != NULL && i < 4; i++)
        if (strcmp(level, level_names[i]) == 0)
            log_min = (od_log_level_t)i;
}

int od_log_enabled(od_log_level_t level)
{
    return level >= log_min;
}

static void vlog(od_log_level_t level, const char *call_id, const char *fields, const char *fmt, va_list ap)
{
    char msg[2048], ts[32];
    int n = vsnprintf(msg, sizeof(msg), fmt, ap);
    if (n < 0)
        n = 0;
    if ((size_t)n >= sizeof(msg))
        n = sizeof(msg) - 1;
    od_rfc3339_format(od_now_us(), ts);
    od_buf_t b = OD_BUF_INIT;
    od_buf_printf(&b, "{\"ts\":\"%s\",\"level\":\"%s\",\"svc\":\"%s\",\"pid\":%d,\"msg\":", ts, level_names[level],
                  log_service, (int)getpid());
    od_buf_json_str(&b, msg, (size_t)n);
    if (call_id != NULL) {
        od_buf_puts(&b, ",\"call_id\":");
        od_buf_json_str(&b, call_id, strlen(call_id));
    }
    /* the members of {"k":v,...}: its text without the braces */
    size_t fl = fields != NULL ? strlen(fields) : 0;
    if (fl > 2 && fields[0] == '{' && fields[fl - 1] == '}') {
        od_buf_puts(&b, ",");
        od_buf_append(&b, fields + 1, fl - 2);
    }
    od_buf_puts(&b, "}\n");
    /* one write per line, so lines of concurrent processes never interleave */
    ssize_t off = 0;
    while ((size_t)off < b.len) {
        ssize_t w = write(STDERR_FILENO, b.base + off, b.len - (size_t)off);
        if (w <= 0)
            break;
        off += w;
    }
    od_buf_free(&b);
}

void od_log(od_log_level_t level, const char *call_id, const char *fmt, ...)
{
    if (level < log_min)
        return;
    va_list ap;
    va_start(ap, fmt);
    vlog(level, call_id, NULL, fmt, ap);
    va_end(ap);
}

void od_log_fields(od_log_level_t level, const char *call_id, const char *fields, const char *fmt, ...)
{
    if (level < log_min)
        return;
    va_list ap;
    va_start(ap, fmt);
    vlog(level, call_id, fields, fmt, ap);
    va_end(ap);
}
