/*
 * The scenarios of a project (docs/control.md, "Scenarios"): what the AI
 * agent says first (its disclosure) and how a callee opts out. Checked here,
 * answered by one od_scenario_api statement (proto/sql/012_scenarios.sql).
 * Reading needs sessions:read; creating and changing need admin.
 */
#include <stdlib.h>
#include <string.h>

#include "call_request.h"
#include "ingress_int.h"
#include "od/core.h"

static void scenario_api(ctx_t *ctx, const char *op, json_t *args)
{
    ingress__api_run(ctx, "scenario_api", op, args, NULL);
}

/* The body of POST (create = 1) or PATCH into args (ingress__scenario_body). 0, or -1 after answering. */
static int parse_body(ctx_t *ctx, h2o_req_t *req, int create, json_t *args)
{
    if (ingress__json_body_type(ctx, req) != 0)
        return json_decref(args), -1;
    ingress_errs_t e = INGRESS_ERRS_INIT;
    if (ingress__scenario_body(req->entity.base, req->entity.len, create, args, &e) != 0) {
        json_decref(args);
        return ingress__errs_reply(ctx, &e);
    }
    json_decref(e.list);
    return 0;
}

/* {"idn": the path's scenario}, or NULL after answering 404. */
static json_t *idn_args(ctx_t *ctx)
{
    h2o_iovec_t v = ctx->params.v[0];
    if (!od_scenario_idn_ok(v.base, v.len)) {
        ingress__reply_problem(ctx, 404, "not_found", "no such scenario in this project", NULL);
        ingress__ctx_free(ctx);
        return NULL;
    }
    return json_pack("{ss%}", "idn", v.base, v.len);
}

void ingress__list_scenarios(ctx_t *ctx, h2o_req_t *req)
{
    (void)req;
    scenario_api(ctx, "list", json_object());
}

void ingress__get_scenario(ctx_t *ctx, h2o_req_t *req)
{
    (void)req;
    json_t *args = idn_args(ctx);
    if (args != NULL)
        scenario_api(ctx, "get", args);
}

void ingress__create_scenario(ctx_t *ctx, h2o_req_t *req)
{
    json_t *args = json_object();
    if (parse_body(ctx, req, 1, args) == 0)
        scenario_api(ctx, "create", args);
}

void ingress__update_scenario(ctx_t *ctx, h2o_req_t *req)
{
    json_t *args = idn_args(ctx);
    if (args != NULL && parse_body(ctx, req, 0, args) == 0)
        scenario_api(ctx, "update", args);
}
