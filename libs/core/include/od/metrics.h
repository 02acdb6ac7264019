/*
 * Process-wide Prometheus metrics (text exposition format 0.0.4). Metrics are
 * registered once (at start-up or on first use) and updated through the
 * returned pointer; the loop thread is the only writer.
 */
#ifndef OD_METRICS_H
#define OD_METRICS_H

#include "od/buf.h"

typedef struct od_metric od_metric_t;

/** Returns the counter `name{labels}` (labels like `code="202"`, or NULL), creating it. */
od_metric_t *od_counter(const char *name, const char *labels, const char *help);
/** Returns the gauge `name{labels}`, creating it. */
od_metric_t *od_gauge(const char *name, const char *labels, const char *help);
/**
 * Returns the histogram `name{labels}` with the given upper bounds (seconds,
 * ascending, `nb` of them; +Inf is added), creating it.
 */
od_metric_t *od_histogram(const char *name, const char *labels, const char *help, const double *bounds, int nb);
/**
 * Removes a series (one whose labels name something gone, e.g. a caller ID
 * without calls any more) and frees it: `m` is invalid after this, and a
 * later od_gauge() of the same name and labels makes a new one.
 */
void od_metric_remove(od_metric_t *m);
/** Adds to a counter or gauge. */
void od_metric_add(od_metric_t *m, double v);
/** Sets a gauge. */
void od_metric_set(od_metric_t *m, double v);
/** Records one observation in a histogram. */
void od_metric_observe(od_metric_t *m, double v);
/** Reads a counter or gauge (tests and readiness logic). */
double od_metric_value(const od_metric_t *m);
/** Appends every metric in text format. */
void od_metrics_render(od_buf_t *out);

/** Default latency buckets in seconds (1 ms .. 10 s). */
extern const double od_latency_buckets[];
extern const int od_latency_nbuckets;

#endif
