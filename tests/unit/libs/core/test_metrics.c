/* The Prometheus text exposition of od_metrics_render: families, escaping, special values, histograms. */
#include <math.h>
#include <string.h>

#include "od/buf.h"
#include "od/metrics.h"
#include "od_test.h"

int main(void)
{
    od_metric_t *a = od_counter("t_requests_total", "code=\"a\"", "requests, by code");
    od_metric_t *g = od_gauge("t_level", NULL, "a \\ backslash and a\nline feed");
    od_metric_t *b = od_counter("t_requests_total", "code=\"b\"", "requests, by code");
    static const double bounds[] = {0.1, 1};
    od_metric_t *h = od_histogram("t_wait_seconds", "pool=\"p\"", "waits", bounds, 2);
    od_metric_add(a, 2);
    od_metric_add(b, 1);
    od_metric_set(g, NAN);
    od_metric_observe(h, 0.05);
    od_metric_observe(h, 0.5);
    od_metric_observe(h, 7);

    od_buf_t out = OD_BUF_INIT;
    od_metrics_render(&out);
    /* one HELP and TYPE per family, its series together although registered apart */
    CHECK_STR(out.base, "# HELP t_requests_total requests, by code\n"
                        "# TYPE t_requests_total counter\n"
                        "t_requests_total{code=\"a\"} 2\n"
                        "t_requests_total{code=\"b\"} 1\n"
                        "# HELP t_level a \\\\ backslash and a\\nline feed\n"
                        "# TYPE t_level gauge\n"
                        "t_level NaN\n"
                        "# HELP t_wait_seconds waits\n"
                        "# TYPE t_wait_seconds histogram\n"
                        "t_wait_seconds_bucket{pool=\"p\",le=\"0.1\"} 1\n"
                        "t_wait_seconds_bucket{pool=\"p\",le=\"1\"} 2\n"
                        "t_wait_seconds_bucket{pool=\"p\",le=\"+Inf\"} 3\n"
                        "t_wait_seconds_sum{pool=\"p\"} 7.5499999999999998\n"
                        "t_wait_seconds_count{pool=\"p\"} 3\n");
    od_buf_free(&out);

    od_metric_set(g, -INFINITY);
    od_metric_remove(a);
    od_metrics_render(&out);
    CHECK(strstr(out.base, "t_level -Inf\n") != NULL);
    CHECK(strstr(out.base, "code=\"a\"") == NULL);
    CHECK(strstr(out.base, "t_requests_total{code=\"b\"} 1\n") != NULL);
    od_buf_free(&out);
    return od_test_result("core_metrics");
}
