/* outdial-ingress: the public HTTP API (DESIGN §2). */
#include "ingress.h"

#include "od/core.h"

static const char usage[] =
    "usage: outdial-ingress [--help]\n\n"
    "Serves the outdial HTTP API: authenticates API keys, validates and stores calls\n"
    "(idempotency, rate limits, wallet, DNC in one PostgreSQL statement) and publishes\n"
    "them to Kafka (calls.requested). Stateless: run as many copies as you like.";

static const od_conf_item_t conf_table[] = {
    OD_COMMON_CONF(ingress_conf_t, 8080),
    OD_CONF_STR(ingress_conf_t, openapi_path, "OUTDIAL_OPENAPI_PATH", "proto/openapi.yaml",
                "the OpenAPI document served at /v1/openapi.yaml"),
    OD_CONF_STR(ingress_conf_t, console_dir, "OUTDIAL_CONSOLE_DIR", "services/ingress/console",
                "the web console's files, served at / (read once at start)"),
    OD_CONF_INT(ingress_conf_t, auth_cache_ms, "OUTDIAL_AUTH_CACHE_MS", "2000", 0, 5000,
                "how long a key's record is cached (bounds how fast a revocation takes effect)"),
    OD_CONF_INT(ingress_conf_t, publish_wait_ms, "OUTDIAL_PUBLISH_WAIT_MS", "3000", 0, 30000,
                "longest wait for Kafka's delivery report before answering 202 anyway (the call is stored)"),
    OD_CONF_INT(ingress_conf_t, max_body, "OUTDIAL_MAX_BODY", "65536", 1024, 1048576,
                "largest request body in bytes before authentication and on every route but the CSV uploads "
                "(413 beyond)"),
    OD_CONF_INT(ingress_conf_t, accept_batch, "OUTDIAL_ACCEPT_BATCH", "256", 1, 4096,
                "most calls stored in one transaction (requests that arrive together share one)"),
    OD_CONF_INT(ingress_conf_t, batch_max_bytes, "OUTDIAL_BATCH_MAX_BYTES", "67108864", 65536, 1073741824,
                "largest CSV upload (POST /v1/batches, POST /v1/dnc) in bytes, for a connection whose key may "
                "upload (413 beyond; the body is held in memory while it is read)"),
    OD_CONF_INT(ingress_conf_t, batch_max_rows, "OUTDIAL_BATCH_MAX_ROWS", "1000000", 1, 10000000,
                "most data rows in one CSV batch (422 csv_too_many_rows beyond)"),
    OD_CONF_INT(ingress_conf_t, events_max_streams, "OUTDIAL_EVENTS_MAX_STREAMS", "10000", 1, 1000000,
                "most GET /v1/events streams open on this ingress (503 too_many_streams beyond)"),
    OD_CONF_INT(ingress_conf_t, events_max_streams_per_key, "OUTDIAL_EVENTS_MAX_STREAMS_PER_KEY", "10", 1, 1000000,
                "most GET /v1/events streams of one API key open on this ingress (429 too_many_streams beyond)"),
    OD_CONF_INT(ingress_conf_t, events_resume_window_s, "OUTDIAL_EVENTS_RESUME_WINDOW_S", "86400", 60, 2592000,
                "how old a Last-Event-ID GET /v1/events resumes from may be (410 last_event_id_expired beyond)"),
    OD_CONF_INT(ingress_conf_t, imports_per_project, "OUTDIAL_IMPORTS_PER_PROJECT", "2", 1, 64,
                "DNC imports and batch cancels of one project running at once on this ingress (429 "
                "too_many_imports beyond); they run on their own connections, without the statement timeout"),
    OD_CONF_INT(ingress_conf_t, statement_timeout_ms, "OUTDIAL_STATEMENT_TIMEOUT_MS", "20000", 0, 3600000,
                "PostgreSQL statement_timeout of the API's statements (one tenant's heavy request cannot hold a "
                "connection longer; 503 beyond); 0: none. Batch imports run on their own connection, without it"),
    OD_CONF_INT(ingress_conf_t, max_connections, "OUTDIAL_HTTP_MAX_CONNECTIONS", "4096", 1, 1000000,
                "most TCP connections open on this ingress; beyond, a new one is answered 503 "
                "too_many_connections and closed"),
    OD_CONF_INT(ingress_conf_t, max_header_bytes, "OUTDIAL_HTTP_MAX_HEADER_BYTES", "16384", 1024, 262144,
                "largest request head (request line and headers) of a connection's first request (431 beyond)"),
    OD_CONF_INT(ingress_conf_t, max_headers, "OUTDIAL_HTTP_MAX_HEADERS", "64", 8, 100,
                "most header fields in a connection's first request (431 beyond; h2o's own cap is 100)"),
    OD_CONF_INT(ingress_conf_t, header_timeout_ms, "OUTDIAL_HTTP_HEADER_TIMEOUT_MS", "10000", 100, 600000,
                "a new connection's first request head must arrive within this; else it is closed"),
    OD_CONF_INT(ingress_conf_t, request_timeout_ms, "OUTDIAL_HTTP_REQUEST_TIMEOUT_MS", "10000", 100, 600000,
                "from the start of a request to the end of its body (and an idle keep-alive connection); "
                "else the connection is closed"),
    OD_CONF_INT(ingress_conf_t, upload_timeout_ms, "OUTDIAL_HTTP_UPLOAD_TIMEOUT_MS", "300000", 1000, 3600000,
                "OUTDIAL_HTTP_REQUEST_TIMEOUT_MS for a connection whose key may upload (a 64 MiB CSV in 5 min "
                "needs 224 KB/s)"),
    OD_CONF_INT(ingress_conf_t, auth_negative_ttl_ms, "OUTDIAL_AUTH_NEGATIVE_TTL_MS", "60000", 0, 3600000,
                "a key PostgreSQL did not know is answered 401 from memory for this long (16384 keys kept)"),
    OD_CONF_INT(ingress_conf_t, auth_fail_max, "OUTDIAL_AUTH_FAIL_MAX", "10", 1, 1000000,
                "after this many distinct unknown keys from one address (IPv6: /64) in OUTDIAL_AUTH_FAIL_WINDOW_MS, "
                "keys from it not seen valid here are answered 401 from memory (16384 addresses kept)"),
    OD_CONF_INT(ingress_conf_t, auth_fail_window_ms, "OUTDIAL_AUTH_FAIL_WINDOW_MS", "60000", 1000, 3600000,
                "the window of OUTDIAL_AUTH_FAIL_MAX"),
    OD_CONF_INT(ingress_conf_t, auth_max_pending, "OUTDIAL_AUTH_MAX_PENDING", "256", 1, 100000,
                "most distinct keys being looked up in PostgreSQL at once; beyond, 503 overloaded"),
    OD_CONF_INT(ingress_conf_t, pg_max_queue, "OUTDIAL_PG_MAX_QUEUE", "256", 1, 100000,
                "most API queries in flight per PostgreSQL connection (pipelined), and POST /v1/calls waiting for "
                "their accept group per connection; beyond, 503 overloaded"),
    OD_CONF_BOOL(ingress_conf_t, webhook_allow_private, "OUTDIAL_WEBHOOK_ALLOW_PRIVATE", "0",
                 "accept webhook URLs that resolve to loopback, private or link-local addresses (local runs only)"),
    OD_CONF_SECRET(ingress_conf_t, secret_key, "OUTDIAL_SECRET_KEY", "",
                   "32-byte key (64 hex digits or base64) that encrypts the webhook secrets stored; required"),
};

int main(int argc, char **argv)
{
    static ingress_conf_t conf;
    static od_svc_t svc;
    int rc = od_svc_init(&svc, "outdial-ingress", argc, argv, usage, conf_table, OD_ARRAY_SIZE(conf_table), &conf,
                         &conf.common, 8u << 20);
    if (rc != 0)
        return rc < 0 ? 2 : 0;
    if (ingress_new(&svc, &conf) == NULL)
        return 1;
    return od_svc_run(&svc);
}
