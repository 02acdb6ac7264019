/*
 * The webhook endpoints of a project (docs/webhooks.md): checked here,
 * answered by one od_webhook_api statement (proto/sql/007_webhooks.sql).
 *
 * A URL is checked for its form, then, unless the operator allows private
 * addresses, where it goes: an IP literal at once, a name through an
 * asynchronous DNS lookup (uv_getaddrinfo, on libuv's thread pool) whose
 * every answer must be a public address. The outcome service checks again
 * at every send, on the address it actually connects to.
 */
#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <openssl/crypto.h>
#include <stdlib.h>
#include <string.h>

#include "ingress_int.h"
#include "od/core.h"
#include "od/log.h"
#include "od/webhook.h"

typedef struct wh_check {
    ctx_t *ctx;
    json_t *args; /* the operation's arguments, sent once the URL is judged */
    const char *op;
    uv_getaddrinfo_t gai;
} wh_check_t;

static void webhook_api(ctx_t *ctx, const char *op, json_t *args)
{
    ingress__api_run(ctx, "webhook_api", op, args, NULL);
}

static void reply_field(ctx_t *ctx, int status, const char *code, const char *field, const char *message)
{
    json_t *errs = json_pack("[{ss ss ss}]", "field", field, "code", code, "message", message);
    char *e = json_dumps(errs, JSON_COMPACT);
    ingress__reply_problem(ctx, status, code, message, e);
    free(e);
    json_decref(errs);
    ingress__ctx_free(ctx);
}

/*
 * The body of POST (create = 1) or PATCH into args (ingress__webhook_body).
 * 0, or -1 after answering.
 */
static int parse_body(ctx_t *ctx, h2o_req_t *req, int create, json_t *args, od_webhook_url_t *url)
{
    if (ingress__json_body_type(ctx, req) != 0)
        return json_decref(args), -1;
    ingress_errs_t e = INGRESS_ERRS_INIT;
    int rc = ingress__webhook_body(req->entity.base, req->entity.len, create, args, url, &e);
    if (rc == INGRESS_BODY_NOT_OBJECT) {
        json_decref(e.list);
        json_decref(args);
        ingress__reply_problem(ctx, 400, "invalid_json",
                               "the body must be a JSON object {\"url\", \"event_types\", \"description\", \"enabled\"}",
                               NULL);
        ingress__ctx_free(ctx);
        return -1;
    }
    if (rc != 0) {
        json_decref(args);
        return ingress__errs_reply(ctx, &e);
    }
    json_decref(e.list);
    return 0;
}

static void forbidden(ctx_t *ctx)
{
    reply_field(ctx, 422, "webhook_url_forbidden", "url",
                "url resolves to a loopback, private, link-local or reserved address; webhooks go to public "
                "addresses only");
}

static void on_resolved(uv_getaddrinfo_t *gai, int status, struct addrinfo *res)
{
    wh_check_t *c = gai->data;
    ctx_t *ctx = c->ctx;
    int bad = 0;
    for (struct addrinfo *a = res; a != NULL; a = a->ai_next)
        bad |= od_webhook_addr_forbidden(a->ai_addr);
    uv_freeaddrinfo(res);
    if (ingress__req(ctx) == NULL) { /* the client went away */
        json_decref(c->args);
        ingress__ctx_free(ctx);
    } else if (status != 0 || res == NULL) {
        json_decref(c->args);
        reply_field(ctx, 422, "webhook_url_unresolvable", "url", "url's host name does not resolve");
    } else if (bad) {
        json_decref(c->args);
        forbidden(ctx);
    } else {
        webhook_api(ctx, c->op, c->args);
    }
    free(c);
}

/* Runs op once the URL (if any) is judged to go to an allowed place. */
static void check_url_then(ctx_t *ctx, const od_webhook_url_t *url, const char *op, json_t *args)
{
    if (url->host[0] == '\0' || ctx->in->conf->webhook_allow_private) {
        webhook_api(ctx, op, args);
        return;
    }
    struct sockaddr_in6 a6 = {.sin6_family = AF_INET6};
    struct sockaddr_in a4 = {.sin_family = AF_INET};
    const char *h = url->host;
    size_t hl = strlen(h);
    const struct sockaddr *literal = inet_pton(AF_INET, h, &a4.sin_addr) == 1    ? (struct sockaddr *)&a4
                                     : inet_pton(AF_INET6, h, &a6.sin6_addr) == 1 ? (struct sockaddr *)&a6
                                                                                  : NULL;
    if (literal != NULL) {
        if (od_webhook_addr_forbidden(literal))
            return json_decref(args), forbidden(ctx);
        webhook_api(ctx, op, args);
        return;
    }
    /* RFC 6761: localhost names are loopback whatever a resolver says */
    if (strcmp(h, "localhost") == 0 || (hl > 10 && strcmp(h + hl - 10, ".localhost") == 0))
        return json_decref(args), forbidden(ctx);
    wh_check_t *c = od_calloc(1, sizeof(*c));
    c->ctx = ctx;
    c->args = args;
    c->op = op;
    c->gai.data = c;
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
    if (uv_getaddrinfo(ctx->in->svc->loop, &c->gai, on_resolved, h, NULL, &hints) != 0) {
        free(c);
        json_decref(args);
        reply_field(ctx, 422, "webhook_url_unresolvable", "url", "url's host name does not resolve");
    }
}

void ingress__list_webhooks(ctx_t *ctx, h2o_req_t *req)
{
    (void)req;
    webhook_api(ctx, "list", json_object());
}

int ingress__webhooks_init(ingress_t *in)
{
    const char *why = NULL;
    in->webhook_keys = od_calloc(1, sizeof(*in->webhook_keys));
    if (od_webhook_keys_init(in->webhook_keys, in->conf->secret_key, NULL, &why) != 0) {
        od_error("%s: the webhook secrets are stored encrypted with it (docs/webhooks.md, \"Secrets at rest\"; "
                 "deploy/local/run.sh makes a local one)",
                 why);
        return -1;
    }
    return 0;
}

/*
 * A new secret into args: "secret", sealed with OUTDIAL_SECRET_KEY (what
 * the row stores), and "secret_shown", the plain whsec_ value the answer
 * shows once (od_webhook_api, 023_webhook_limits.sql). 0, or -1.
 */
static int new_secret(ctx_t *ctx, json_t *args)
{
    char secret[OD_WEBHOOK_SECRET_LEN + 1], sealed[OD_WEBHOOK_SEALED_MAX];
    od_webhook_secret_new(secret);
    int rc = od_webhook_secret_seal(ctx->in->webhook_keys, secret, sealed);
    if (rc == 0) {
        json_object_set_new(args, "secret", json_string(sealed));
        json_object_set_new(args, "secret_shown", json_string(secret));
    }
    OPENSSL_cleanse(secret, sizeof(secret));
    return rc;
}

/* OpenSSL failed: nothing the client can change */
static void seal_failed(ctx_t *ctx)
{
    ingress__reply_problem(ctx, 503, "service_unavailable", "the webhook secret could not be encrypted; retry shortly",
                           NULL);
}

void ingress__create_webhook(ctx_t *ctx, h2o_req_t *req)
{
    json_t *args = json_object();
    od_webhook_url_t url;
    if (parse_body(ctx, req, 1, args, &url) != 0)
        return;
    if (new_secret(ctx, args) != 0)
        return json_decref(args), seal_failed(ctx);
    check_url_then(ctx, &url, "create", args);
}

/* {"id": the path's endpoint id}, or NULL after answering 404. */
static json_t *id_args(ctx_t *ctx)
{
    char id[37];
    if (ingress__path_id(ctx, "webhook", id) != 0)
        return NULL;
    return json_pack("{ss}", "id", id);
}

void ingress__get_webhook(ctx_t *ctx, h2o_req_t *req)
{
    (void)req;
    json_t *args = id_args(ctx);
    if (args != NULL)
        webhook_api(ctx, "get", args);
}

void ingress__update_webhook(ctx_t *ctx, h2o_req_t *req)
{
    od_webhook_url_t url;
    json_t *args = id_args(ctx);
    if (args == NULL || parse_body(ctx, req, 0, args, &url) != 0)
        return;
    check_url_then(ctx, &url, "update", args);
}

void ingress__delete_webhook(ctx_t *ctx, h2o_req_t *req)
{
    (void)req;
    json_t *args = id_args(ctx);
    if (args != NULL)
        webhook_api(ctx, "delete", args);
}

void ingress__rotate_webhook_secret(ctx_t *ctx, h2o_req_t *req)
{
    (void)req;
    json_t *args = id_args(ctx);
    if (args == NULL)
        return;
    if (new_secret(ctx, args) != 0)
        return json_decref(args), seal_failed(ctx);
    webhook_api(ctx, "rotate", args);
}

void ingress__webhook_deliveries(ctx_t *ctx, h2o_req_t *req)
{
    json_t *args = id_args(ctx);
    int bad = 0;
    char *v;
    if (args == NULL || ingress__page_params(ctx, req, args) != 0)
        return;
    if ((v = od_http_query(req, "status", &bad)) != NULL) {
        if (strcmp(v, "pending") != 0 && strcmp(v, "succeeded") != 0 && strcmp(v, "failed") != 0)
            return json_decref(args), ingress__bad_param(ctx, "status", "status must be pending, succeeded or failed");
        json_object_set_new(args, "status", json_string(v));
    }
    if (bad)
        return json_decref(args), ingress__bad_query(ctx);
    webhook_api(ctx, "deliveries", args);
}

void ingress__retry_webhook_delivery(ctx_t *ctx, h2o_req_t *req)
{
    (void)req;
    json_t *args = id_args(ctx);
    if (args == NULL)
        return;
    char did[37];
    if (ingress__path_id_at(ctx, 1, "delivery of this webhook", did) != 0)
        return json_decref(args);
    json_object_set_new(args, "delivery_id", json_string(did));
    webhook_api(ctx, "retry", args);
}
