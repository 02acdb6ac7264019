/*
 * Configuration helpers shared by the producer and the consumer, the routing
 * of librdkafka's own log lines into od_log, and a log rate limiter.
 */
#include <stdio.h>
#include <string.h>

#include "kafka_int.h"
#include "od/core.h"
#include "od/log.h"

int od__kconf_set(rd_kafka_conf_t *conf, const char *name, const char *value, char *errstr, size_t errlen)
{
    char why[256];
    if (rd_kafka_conf_set(conf, name, value, why, sizeof(why)) != RD_KAFKA_CONF_OK) {
        snprintf(errstr, errlen, "%s=%s: %s", name, value, why);
        return -1;
    }
    return 0;
}

int od__kconf_set_list(rd_kafka_conf_t *conf, const char *const *kv, char *errstr, size_t errlen)
{
    for (size_t i = 0; kv != NULL && kv[i] != NULL; i += 2) {
        if (kv[i + 1] == NULL) {
            snprintf(errstr, errlen, "%s: property without a value", kv[i]);
            return -1;
        }
        if (od__kconf_set(conf, kv[i], kv[i + 1], errstr, errlen) != 0)
            return -1;
    }
    return 0;
}

static void on_log(const rd_kafka_t *rk, int level, const char *fac, const char *buf)
{
    /* syslog levels: 0..3 emerg..err, 4 warning, 5 notice, 6 info, 7 debug */
    od_log_level_t l = level <= 3 ? OD_LOG_ERROR : level == 4 ? OD_LOG_WARN : level <= 6 ? OD_LOG_INFO : OD_LOG_DEBUG;
    if (od_log_enabled(l))
        od_log(l, NULL, "librdkafka %s %s: %s", rd_kafka_name(rk), fac, buf);
}

int od__kconf_log(rd_kafka_conf_t *conf, char *errstr, size_t errlen)
{
    rd_kafka_conf_set_log_cb(conf, on_log);
    return od__kconf_set(conf, "log.queue", "true", errstr, errlen);
}

void od__klabel(char *dst, size_t dstlen, const char *key, const char *s)
{
    size_t o = 0;
    int n = snprintf(dst, dstlen, "%s=\"", key);
    if (n < 0 || (size_t)n >= dstlen) {
        dst[0] = '\0';
        return;
    }
    o = (size_t)n;
    for (; *s != '\0' && o + 3 < dstlen; s++) {
        if (*s == '\\' || *s == '"') {
            dst[o++] = '\\';
            dst[o++] = *s;
        } else if (*s == '\n') {
            dst[o++] = '\\';
            dst[o++] = 'n';
        } else {
            dst[o++] = *s;
        }
    }
    dst[o++] = '"';
    dst[o] = '\0';
}

int od__kratelimit_allow(od__kratelimit_t *rl, int *suppressed_out)
{
    int64_t now = od_mono_ms();
    *suppressed_out = 0;
    if (rl->window_start_ms == 0 || now - rl->window_start_ms >= OD__KRL_WINDOW_MS) {
        *suppressed_out = rl->suppressed;
        rl->window_start_ms = now;
        rl->used = 0;
        rl->suppressed = 0;
    }
    if (rl->used < OD__KRL_BURST) {
        rl->used++;
        return 1;
    }
    rl->suppressed++;
    return 0;
}

const char *od__kratelimit_note(int suppressed, char *buf, size_t len)
{
    if (suppressed <= 0)
        return "";
    snprintf(buf, len, " (%d similar lines suppressed)", suppressed);
    return buf;
}
