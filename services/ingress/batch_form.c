/*
 * A batch upload as sent, read and checked in memory (batch_form.h).
 */
#include "batch_form.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "od/core.h"
#include "od/http.h"
#include "od/phone.h"
#include "od/rfc3339.h"
#include "od/utf8.h"
#include "od/window.h"

#define START_PAST_US (60LL * 1000000)
#define START_AHEAD_US (30LL * 86400 * 1000000)

/* A whole number from 1 to max as sent, else -1 */
static int64_t parse_count(const char *v, long long max)
{
    char *end;
    errno = 0;
    long long n = strtoll(v, &end, 10);
    return (*v == '\0' || *end != '\0' || errno != 0 || n < 1 || n > max) ? -1 : n;
}

/* A numeric setting into the form: pacing_per_min or spend_cap_micros (-1 when invalid). 0 if `name` is neither. */
static int number_setting(od_batch_form_t *form, const char *name, size_t name_len, const char *v)
{
    if (name_len == 14 && memcmp(name, "pacing_per_min", 14) == 0)
        form->pacing = parse_count(v, OD_BATCH_PACING_MAX);
    else if (name_len == 16 && memcmp(name, "spend_cap_micros", 16) == 0)
        form->spend_cap = parse_count(v, OD_BATCH_SPEND_CAP_MAX);
    else
        return 0;
    return 1;
}

/* The text settings of an upload, as form fields or query parameters (docs/batches.md) */
static const char *const text_settings[] = {"scenario", "start_at", "caller_id", "calling_windows",
                                            "retry_on", "retry_max_attempts", "retry_delay_s"};

static const char *const number_settings[] = {"pacing_per_min", "spend_cap_micros"};

/* The static name of a setting called name[0..len), or NULL for a field we do not read */
static const char *setting_name(const char *name, size_t len)
{
    for (size_t i = 0; i < OD_ARRAY_SIZE(text_settings) + OD_ARRAY_SIZE(number_settings); i++) {
        const char *s = i < OD_ARRAY_SIZE(text_settings) ? text_settings[i]
                                                         : number_settings[i - OD_ARRAY_SIZE(text_settings)];
        if (len == strlen(s) && memcmp(name, s, len) == 0)
            return s;
    }
    return NULL;
}

/* Where the text setting text_settings[i] is kept */
static char **text_setting(od_batch_form_t *form, size_t i)
{
    char **const slots[] = {&form->scenario, &form->start_at,  &form->caller_id,   &form->windows,
                            &form->retry_on, &form->retry_max, &form->retry_delay};
    return slots[i];
}

int od_batch_form_part(void *arg, const od_mp_part_t *p)
{
    od_batch_form_t *form = arg;
    if (p->name_len == 4 && memcmp(p->name, "file", 4) == 0) {
        if (form->have_file) {
            form->dup = "file";
            return 1;
        }
        form->have_file = 1;
        form->file = od_malloc(p->len + 1);
        memcpy(form->file, p->data, p->len);
        form->file[p->len] = '\0';
        form->file_len = p->len;
        if (p->filename != NULL) {
            if (od_utf8_check(p->filename, p->filename_len) != 0) {
                form->bad = "file_name";
                return 1;
            }
            form->file_name = od_strndup(p->filename, p->filename_len);
        }
        return 0;
    }
    if (od_utf8_check(p->data, p->len) != 0) {
        form->bad = setting_name(p->name, p->name_len); /* fields we do not read are ignored, whatever they hold */
        return form->bad != NULL;
    }
    char *v = od_strndup(p->data, p->len);
    int numeric = number_setting(form, p->name, p->name_len, v);
    free(v);
    if (numeric)
        return 0;
    for (size_t i = 0; i < OD_ARRAY_SIZE(text_settings); i++) {
        if (p->name_len != strlen(text_settings[i]) || memcmp(p->name, text_settings[i], p->name_len) != 0)
            continue;
        char **slot = text_setting(form, i);
        if (*slot != NULL) {
            form->dup = text_settings[i];
            return 1;
        }
        *slot = od_strndup(p->data, p->len);
        return 0;
    }
    return 0; /* unknown parts are ignored, as browsers send extra fields */
}

int od_batch_form_query(od_batch_form_t *form, h2o_req_t *req, const char **twice)
{
    int bad = 0;
    char *v;
    *twice = NULL;
    for (size_t i = 0; i < OD_ARRAY_SIZE(text_settings); i++)
        if ((v = od_http_query(req, text_settings[i], &bad)) != NULL) {
            if (*text_setting(form, i) != NULL)
                *twice = text_settings[i];
            else
                *text_setting(form, i) = od_strdup(v);
        }
    if ((v = od_http_query(req, "file_name", &bad)) != NULL) {
        if (form->file_name != NULL)
            *twice = "file_name";
        else
            form->file_name = od_strdup(v);
    }
    if ((v = od_http_query(req, "pacing_per_min", &bad)) != NULL) {
        if (form->pacing != 0)
            *twice = "pacing_per_min";
        number_setting(form, "pacing_per_min", 14, v);
    }
    if ((v = od_http_query(req, "spend_cap_micros", &bad)) != NULL) {
        if (form->spend_cap != 0)
            *twice = "spend_cap_micros";
        number_setting(form, "spend_cap_micros", 16, v);
    }
    return bad ? -1 : *twice != NULL ? -2 : 0;
}

static int problem(od_batch_problem_t *p, const char *code, const char *field, const char *detail)
{
    p->status = strcmp(code, "invalid_parameter") == 0 ? 400 : 422;
    p->code = code;
    snprintf(p->field, sizeof(p->field), "%s", field);
    snprintf(p->detail, sizeof(p->detail), "%s", detail);
    return -1;
}

int od_batch_form_check(od_batch_form_t *form, int64_t now_us, od_batch_problem_t *p)
{
    if (form->scenario == NULL || form->scenario[0] == '\0')
        return problem(p, "missing_field", "scenario", "scenario is required");
    if (form->file_name != NULL && ingress__utf8_chars(form->file_name, strlen(form->file_name)) > OD_BATCH_FILE_NAME_MAX)
        return problem(p, "invalid_parameter", "file_name", "file_name is longer than 255 characters");
    if (strlen(form->scenario) > 64)
        return problem(p, "unknown_scenario", "scenario", "the project has no scenario with this name");
    if (form->pacing < 0)
        return problem(p, "invalid_pacing", "pacing_per_min", "pacing_per_min must be an integer of at least 1");
    if (form->spend_cap < 0)
        return problem(p, "invalid_spend_cap", "spend_cap_micros",
                       "spend_cap_micros must be a whole number of micro-units from 1 to 10^15");
    od_retry_error_t rerr;
    if (od_retry_policy_parse(form->retry_on, form->retry_max, form->retry_delay, &form->retry, &rerr) != 0)
        return problem(p, rerr.code, rerr.field, rerr.detail);
    if (form->caller_id != NULL) {
        char e164[OD_PHONE_E164_SIZE];
        if (od_phone_parse_e164(form->caller_id, strlen(form->caller_id), e164, NULL) != 0)
            return problem(p, "caller_id_not_verified", "caller_id",
                           "caller_id must be one of the project's verified numbers");
        free(form->caller_id);
        form->caller_id = od_strdup(e164);
    }
    if (form->start_at != NULL) {
        int64_t us;
        char ts[OD_RFC3339_BUF_SIZE];
        if (od_rfc3339_parse(form->start_at, strlen(form->start_at), &us, NULL) != 0)
            return problem(p, "invalid_datetime", "start_at",
                           "start_at must be an RFC 3339 time, e.g. 2026-11-23T09:00:00Z");
        if (us < now_us - START_PAST_US)
            return problem(p, "start_at_in_past", "start_at", "start_at is more than 60 s in the past");
        if (us > now_us + START_AHEAD_US)
            return problem(p, "start_at_too_far", "start_at", "start_at is more than 30 days ahead");
        od_rfc3339_format(us, ts);
        free(form->start_at);
        form->start_at = od_strdup(ts);
    }
    if (form->windows != NULL) {
        char *canonical, err[256], field[64];
        if (od_window_parse(form->windows, strlen(form->windows), "calling_windows", &canonical, err, sizeof err,
                            field, sizeof field) != 0)
            return problem(p, "invalid_calling_windows", field, err);
        free(form->windows);
        form->windows = canonical;
    }
    return 0;
}

json_t *od_batch_form_json(const od_batch_form_t *form)
{
    json_t *s = json_pack("{ss so so so ss}", "scenario", form->scenario, "pacing_per_min",
                          form->pacing > 0 ? json_integer(form->pacing) : json_null(), "start_at",
                          form->start_at ? json_string(form->start_at) : json_null(), "caller_id",
                          form->caller_id ? json_string(form->caller_id) : json_null(), "file_name",
                          form->file_name ? form->file_name : "upload.csv");
    if (form->windows != NULL)
        json_object_set_new(s, "calling_windows", json_loads(form->windows, 0, NULL));
    if (form->spend_cap > 0)
        json_object_set_new(s, "spend_cap_micros", json_integer(form->spend_cap));
    const od_retry_policy_t *rp = &form->retry;
    json_object_set_new(s, "retry_on", rp->on >= 0 ? json_loads(od_retry_on_json(rp->on), 0, NULL) : json_null());
    json_object_set_new(s, "retry_max_attempts", rp->max_attempts > 0 ? json_integer(rp->max_attempts) : json_null());
    json_object_set_new(s, "retry_delay_s", rp->delay_s > 0 ? json_integer(rp->delay_s) : json_null());
    return s;
}

void od_batch_form_free(od_batch_form_t *form)
{
    free(form->file);
    free(form->file_name);
    free(form->scenario);
    free(form->caller_id);
    free(form->start_at);
    free(form->windows);
    free(form->retry_on);
    free(form->retry_max);
    free(form->retry_delay);
}

json_t *od_batch_patch_body(const char *body, size_t len, ingress_errs_t *e)
{
    json_error_t jerr;
    json_t *root = len > 0 ? json_loadb(body, len, JSON_REJECT_DUPLICATES, &jerr) : NULL;
    json_t *cap = json_object_get(root, "spend_cap_micros");
    const char *key;
    json_t *v;
    if (!json_is_object(root) || json_object_size(root) == 0) {
        ingress__err_add(e, "", "invalid_json", "the body must be a JSON object {\"spend_cap_micros\": n or null}");
    } else {
        json_object_foreach(root, key, v)
        {
            if (strcmp(key, "spend_cap_micros") != 0)
                ingress__err_add(e, key, "unknown_field", "only spend_cap_micros can be changed");
        }
        /* a whole number written 5.0 is one too (JSON Schema's `integer`) */
        double d = json_is_real(cap) ? json_real_value(cap) : 0;
        if (d >= 1 && d <= (double)OD_BATCH_SPEND_CAP_MAX && (double)(long long)d == d)
            json_object_set_new(root, "spend_cap_micros", (cap = json_integer((json_int_t)d)));
        if (cap != NULL && !json_is_null(cap) &&
            (!json_is_integer(cap) || json_integer_value(cap) < 1 || json_integer_value(cap) > OD_BATCH_SPEND_CAP_MAX))
            ingress__err_add(e, "spend_cap_micros", "invalid_spend_cap",
                             "spend_cap_micros must be a whole number of micro-units from 1 to 10^15, or null");
    }
    json_t *args = e->first == NULL ? json_pack("{sO*}", "spend_cap_micros", cap) : NULL;
    json_decref(root);
    return args;
}
