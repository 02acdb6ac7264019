#include "od/metrics.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "od/core.h"

typedef enum { M_COUNTER, M_GAUGE, M_HISTOGRAM } metric_kind_t;

struct od_metric {
    metric_kind_t kind;
    char *name;
    char *labels; /* "" when none */
    const char *help;
    double value;
    /* histogram */
    int nb;
    double *bounds;
    uint64_t *counts; /* nb + 1 (the last is +Inf) */
    double sum;
    uint64_t count;
};

static od_metric_t **metrics;
static size_t nmetrics;

static od_metric_t *lookup(metric_kind_t kind, const char *name, const char *labels, const char *help)
{
    if (labels == NULL)
        labels = "";
    for (size_t i = 0; i < nmetrics; i++)
        if (strcmp(metrics[i]->name, name) == 0 && strcmp(metrics[i]->labels, labels) == 0)
            return metrics[i];
    od_metric_t *m = od_calloc(1, sizeof(*m));
    m->kind = kind;
    m->name = od_strdup(name);
    m->labels = od_strdup(labels);
    m->help = help;
    metrics = od_realloc(metrics, sizeof(*metrics) * (nmetrics + 1));
    /* keep the metrics of one name together, as the text format asks */
    size_t at = nmetrics;
    for (size_t i = nmetrics; i > 0; i--)
        if (strcmp(metrics[i - 1]->name, name) == 0) {
            at = i;
            break;
        }
    memmove(metrics + at + 1, metrics + at, sizeof(*metrics) * (nmetrics - at));
    metrics[at] = m;
    nmetrics++;
    return m;
}

od_metric_t *od_counter(const char *name, const char *labels, const char *help)
{
    return lookup(M_COUNTER, name, labels, help);
}

od_metric_t *od_gauge(const char *name, const char *labels, const char *help)
{
    return lookup(M_GAUGE, name, labels, help);
}

od_metric_t *od_histogram(const char *name, const char *labels, const char *help, const double *bounds, int nb)
{
    od_metric_t *m = lookup(M_HISTOGRAM, name, labels, help);
    if (m->bounds == NULL) {
        m->nb = nb;
        m->bounds = od_malloc(sizeof(double) * (size_t)nb);
        memcpy(m->bounds, bounds, sizeof(double) * (size_t)nb);
        m->counts = od_calloc((size_t)nb + 1, sizeof(uint64_t));
    }
    return m;
}

void od_metric_remove(od_metric_t *m)
{
    for (size_t i = 0; i < nmetrics; i++) {
        if (metrics[i] != m)
            continue;
        memmove(metrics + i, metrics + i + 1, sizeof(*metrics) * (nmetrics - i - 1));
        nmetrics--;
        free(m->name);
        free(m->labels);
        free(m->bounds);
        free(m->counts);
        free(m);
        return;
    }
}

void od_metric_add(od_metric_t *m, double v)
{
    m->value += v;
}

void od_metric_set(od_metric_t *m, double v)
{
    m->value = v;
}

double od_metric_value(const od_metric_t *m)
{
    return m->value;
}

void od_metric_observe(od_metric_t *m, double v)
{
    int i = 0;
    while (i < m->nb && v > m->bounds[i])
        i++;
    m->counts[i]++;
    m->sum += v;
    m->count++;
}

static void render_labels(od_buf_t *out, const char *labels, const char *extra)
{
    if (*labels == '\0' && extra == NULL)
        return;
    od_buf_puts(out, "{");
    od_buf_puts(out, labels);
    if (extra != NULL) {
        if (*labels != '\0')
            od_buf_puts(out, ",");
        od_buf_puts(out, extra);
    }
    od_buf_puts(out, "}");
}

/* A HELP text with backslash and line feed escaped, as the text format asks. */
static void render_help(od_buf_t *out, const char *help)
{
    for (const char *p = help; *p != '\0'; p++) {
        if (*p == '\\')
            od_buf_puts(out, "\\\\");
        else if (*p == '\n')
            od_buf_puts(out, "\\n");
        else
            od_buf_append(out, p, 1);
    }
}

/* A sample value: the text format spells the special ones NaN, +Inf and -Inf. */
static void render_value(od_buf_t *out, double v)
{
    if (isnan(v))
        od_buf_puts(out, " NaN\n");
    else if (isinf(v))
        od_buf_puts(out, v > 0 ? " +Inf\n" : " -Inf\n");
    else
        od_buf_printf(out, " %.17g\n", v);
}

void od_metrics_render(od_buf_t *out)
{
    static const char *const types[] = {"counter", "gauge", "histogram"};
    for (size_t i = 0; i < nmetrics; i++) {
        od_metric_t *m = metrics[i];
        if (i == 0 || strcmp(metrics[i - 1]->name, m->name) != 0) {
            od_buf_printf(out, "# HELP %s ", m->name);
            render_help(out, m->help ? m->help : "");
            od_buf_printf(out, "\n# TYPE %s %s\n", m->name, types[m->kind]);
        }
        if (m->kind != M_HISTOGRAM) {
            od_buf_puts(out, m->name);
            render_labels(out, m->labels, NULL);
            render_value(out, m->value);
            continue;
        }
        uint64_t cum = 0;
        for (int b = 0; b <= m->nb; b++) {
            char le[48];
            cum += m->counts[b];
            if (b < m->nb)
                snprintf(le, sizeof(le), "le=\"%g\"", m->bounds[b]);
            else
                snprintf(le, sizeof(le), "le=\"+Inf\"");
            od_buf_printf(out, "%s_bucket", m->name);
            render_labels(out, m->labels, le);
            od_buf_printf(out, " %llu\n", (unsigned long long)cum);
        }
        od_buf_printf(out, "%s_sum", m->name);
        render_labels(out, m->labels, NULL);
        render_value(out, m->sum);
        od_buf_printf(out, "%s_count", m->name);
        render_labels(out, m->labels, NULL);
        od_buf_printf(out, " %llu\n", (unsigned long long)m->count);
    }
}

const double od_latency_buckets[] = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10};
const int od_latency_nbuckets = (int)OD_ARRAY_SIZE(od_latency_buckets);
