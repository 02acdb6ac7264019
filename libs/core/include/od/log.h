/*
 * JSON-lines logging to stderr: one object per line,
 *   {"ts":"2026-11-23T19:52:10.123Z","level":"info","svc":"dialer","msg":"...","call_id":"..."}
 * The message is formatted printf-style and escaped for JSON.
 */
#ifndef OD_LOG_H
#define OD_LOG_H

#include <stdarg.h>

typedef enum {
    OD_LOG_DEBUG = 0,
    OD_LOG_INFO = 1,
    OD_LOG_WARN = 2,
    OD_LOG_ERROR = 3,
} od_log_level_t;

/** Sets the service name written in every line and the minimum level
 *  ("debug", "info", "warn", "error"; unknown names mean "info"). */
void od_log_init(const char *service, const char *level);
/** Writes one log line. `call_id` may be NULL. */
void od_log(od_log_level_t level, const char *call_id, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/**
 * Writes one log line with more members: `fields` is the text of a JSON
 * object whose members follow "msg" (e.g. {"alert":"internal_error",...}),
 * so that log routers can match on them. NULL or "{}" adds none.
 */
void od_log_fields(od_log_level_t level, const char *call_id, const char *fields, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/** 1 if lines of `level` are written. */
int od_log_enabled(od_log_level_t level);

#define od_debug(...) (od_log_enabled(OD_LOG_DEBUG) ? od_log(OD_LOG_DEBUG, NULL, __VA_ARGS__) : (void)0)
#define od_info(...) od_log(OD_LOG_INFO, NULL, __VA_ARGS__)
#define od_warn(...) od_log(OD_LOG_WARN, NULL, __VA_ARGS__)
#define od_error(...) od_log(OD_LOG_ERROR, NULL, __VA_ARGS__)

#endif
