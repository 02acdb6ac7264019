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

#define DISCLOSURE_MAX 500   /* characters */
#define REASON_MAX 500       /* characters */
#define OPT_OUT_SCRIPT_MAX 1000

static void scenario_api(ctx_t *ctx, const char *op, json_t *args)
{
    ingress__api_run(ctx, "scenario_api", op, args, NULL);
}

/* A text field of 1..max characters, without NUL, into args. */
static void text_field(ingress_errs_t *e, json_t *root, json_t *args, const char *name, size_t max,
                       const char *code, const char *message)
{
    json_t *v = json_object_get(root, name);
    if (v == NULL)
        return;
    if (!json_is_string(v) || json_string_length(v) == 0 ||
        memchr(json_string_value(v), '\0', json_string_length(v)) != NULL ||
        ingress__utf8_chars(json_string_value(v), json_string_length(v)) > max)
        ingress__err_add(e, name, code, message);
    else
        json_object_set(args, name, v);
}

/*
 * The body of POST (create = 1) or PATCH into args: idn (create only),
 * disclosure, disclosure_enabled, disclosure_off_reason, opt_out_script.
 * Turning the disclosure off without a reason is refused by the database,
 * which knows whether the scenario already has one. 0, or -1 after answering.
 */
static int parse_body(ctx_t *ctx, h2o_req_t *req, int create, json_t *args)
{
    static const char *const fields[] = {"idn", "disclosure", "disclosure_enabled", "disclosure_off_reason",
                                         "opt_out_script"};
    if (ingress__json_body_type(ctx, req) != 0)
        return json_decref(args), -1;
    json_error_t jerr;
    json_t *root = req->entity.len > 0 ? json_loadb(req->entity.base, req->entity.len, JSON_REJECT_DUPLICATES, &jerr)
                                       : NULL;
    ingress_errs_t e = INGRESS_ERRS_INIT;
    const char *key;
    json_t *v;
    if (!json_is_object(root)) {
        ingress__err_add(&e, "", "invalid_json",
                         "the body must be a JSON object {\"idn\", \"disclosure\", \"disclosure_enabled\", "
                         "\"disclosure_off_reason\", \"opt_out_script\"}");
        goto out;
    }
    json_object_foreach(root, key, v)
    {
        size_t i = create ? 0 : 1; /* idn names the scenario on creation only; PATCH has it in the path */
        while (i < OD_ARRAY_SIZE(fields) && strcmp(key, fields[i]) != 0)
            i++;
        if (i == OD_ARRAY_SIZE(fields))
            ingress__err_add(&e, key, "unknown_field",
                             create ? "this field is not part of a scenario"
                                    : "this field is not part of a scenario, or cannot be changed");
    }
    if (create) {
        v = json_object_get(root, "idn");
        if (!json_is_string(v) || !od_scenario_idn_ok(json_string_value(v), json_string_length(v)))
            ingress__err_add(&e, "idn", "invalid_scenario_idn",
                             "idn is required: 1 to 64 of a-z, 0-9, '_', '.', '-', starting with a letter or digit");
        else
            json_object_set(args, "idn", v);
    }
    text_field(&e, root, args, "disclosure", DISCLOSURE_MAX, "invalid_disclosure",
               "disclosure must be a text of 1 to 500 characters");
    text_field(&e, root, args, "disclosure_off_reason", REASON_MAX, "invalid_disclosure_off_reason",
               "disclosure_off_reason must be a text of 1 to 500 characters");
    text_field(&e, root, args, "opt_out_script", OPT_OUT_SCRIPT_MAX, "invalid_opt_out_script",
               "opt_out_script must be a text of 1 to 1000 characters");
    v = json_object_get(root, "disclosure_enabled");
    if (v != NULL && !json_is_boolean(v))
        ingress__err_add(&e, "disclosure_enabled", "invalid_type", "disclosure_enabled must be true or false");
    else if (v != NULL)
        json_object_set(args, "disclosure_enabled", v);
    if (json_is_true(v) && json_object_get(root, "disclosure_off_reason") != NULL)
        ingress__err_add(&e, "disclosure_off_reason", "invalid_disclosure_off_reason",
                         "disclosure_off_reason goes with disclosure_enabled false only");
    if (e.first == NULL && !create && json_object_size(root) == 0)
        ingress__err_add(&e, "", "invalid_json",
                         "nothing to change: give disclosure, disclosure_enabled, disclosure_off_reason or "
                         "opt_out_script");
out:
    json_decref(root);
    if (e.first != NULL) {
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
