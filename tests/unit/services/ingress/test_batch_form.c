/*
 * od_batch_form_*: a batch upload's settings as POST /v1/batches reads them
 * (multipart fields, query string), checks them and makes them JSON.
 */
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "batch_form.h"
#include "od_test.h"

#define NOW_US 1795435200000000LL /* 2026-11-23T12:00:00Z */

static void part(od_batch_form_t *form, const char *name, const char *value, const char *filename)
{
    od_mp_part_t p = {.name = name, .name_len = strlen(name), .filename = filename,
                      .filename_len = filename ? strlen(filename) : 0, .data = value, .len = strlen(value)};
    CHECK(od_batch_form_part(form, &p) == 0);
}

static void test_settings(void)
{
    od_batch_form_t form = {0};
    od_batch_problem_t p;
    part(&form, "scenario", "appointment_reminder", NULL);
    part(&form, "start_at", "2026-11-23T14:00:00+02:00", NULL);
    part(&form, "caller_id", "+34612345670", NULL);
    part(&form, "pacing_per_min", "60", NULL);
    part(&form, "file", "phone\n+34612345670\n", "contacts.csv");
    CHECK(form.have_file && form.file_len == 19);
    CHECK(od_batch_form_check(&form, NOW_US, &p) == 0);
    json_t *j = od_batch_form_json(&form);
    CHECK_STR(json_string_value(json_object_get(j, "scenario")), "appointment_reminder");
    CHECK_STR(json_string_value(json_object_get(j, "start_at")), "2026-11-23T12:00:00.000Z");
    CHECK_STR(json_string_value(json_object_get(j, "caller_id")), "+34612345670");
    CHECK_STR(json_string_value(json_object_get(j, "file_name")), "contacts.csv");
    CHECK(json_integer_value(json_object_get(j, "pacing_per_min")) == 60);
    json_decref(j);
    od_batch_form_free(&form);

    od_batch_form_t dup = {0};
    part(&dup, "scenario", "a", NULL);
    od_mp_part_t again = {.name = "scenario", .name_len = 8, .data = "b", .len = 1};
    CHECK(od_batch_form_part(&dup, &again) == 1);
    CHECK_STR(dup.dup, "scenario");
    od_batch_form_free(&dup);
}

/* issue 18: a scenario, or a multipart filename, that is not UTF-8 made json_pack answer NULL and the ingress crash */
static void test_batches_settings_not_utf8(void)
{
    od_batch_form_t form = {0};
    od_mp_part_t scenario = {.name = "scenario", .name_len = 8, .data = "\xff\xfe", .len = 2};
    CHECK(od_batch_form_part(&form, &scenario) == 1);
    CHECK_STR(form.bad, "scenario");
    CHECK(form.scenario == NULL);
    od_batch_form_free(&form);

    od_batch_form_t named = {0};
    od_mp_part_t file = {.name = "file", .name_len = 4, .filename = "c\xff.csv", .filename_len = 6, .data = "phone\n",
                         .len = 6};
    CHECK(od_batch_form_part(&named, &file) == 1);
    CHECK_STR(named.bad, "file_name");
    CHECK(named.file_name == NULL);
    od_batch_form_free(&named);

    /* a field we do not read is ignored, whatever it holds */
    od_batch_form_t other = {0};
    od_mp_part_t extra = {.name = "note", .name_len = 4, .data = "\xff", .len = 1};
    CHECK(od_batch_form_part(&other, &extra) == 0);
    CHECK(other.bad == NULL);
    od_batch_form_free(&other);
}

/* file_name longer than 255 characters: 400 invalid_parameter */
static void test_file_name_too_long(void)
{
    od_batch_form_t form = {0};
    od_batch_problem_t p;
    char name[300];
    memset(name, 'a', 256);
    name[256] = '\0';
    part(&form, "scenario", "x", NULL);
    part(&form, "file", "phone\n", name);
    CHECK(od_batch_form_check(&form, NOW_US, &p) == -1);
    CHECK(p.status == 400);
    CHECK_STR(p.code, "invalid_parameter");
    CHECK_STR(p.field, "file_name");
    od_batch_form_free(&form);
}

int main(void)
{
    test_settings();
    test_batches_settings_not_utf8();
    test_file_name_too_long();
    return od_test_result("batch_form");
}
