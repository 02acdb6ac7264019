/*
 * Linked into every fuzz target (fuzz/CMakeLists.txt: -Wl,--wrap=...).
 *
 * jansson's constructors answer NULL instead of a value when a string is not
 * valid UTF-8 (json_string, json_stringn, json_pack's "s"), and a container
 * given that NULL drops it silently. Passing such a NULL on is the crash of
 * issue 18: `POST /v1/batches?scenario=%FF` made json_pack answer NULL and the
 * ingress dereferenced it. These wrappers make the code under test abort
 * where it passes the NULL on (or a member is refused), not only where it
 * happens to dereference it, so a target finds the whole class.
 */
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

int __real_json_object_set_new(json_t *object, const char *key, json_t *value);
int __real_json_object_set_new_nocheck(json_t *object, const char *key, json_t *value);
int __real_json_array_append_new(json_t *array, json_t *value);
int __real_json_array_insert_new(json_t *array, size_t index, json_t *value);

static void refused(const char *what, const char *key)
{
    fprintf(stderr, "json_strict: %s%s%s: a NULL value or a refused member was passed on\n", what,
            key ? " key " : "", key ? key : "");
    abort();
}

json_t *__wrap_json_pack(const char *fmt, ...)
{
    json_error_t err;
    va_list ap;
    va_start(ap, fmt);
    json_t *v = json_vpack_ex(&err, 0, fmt, ap);
    va_end(ap);
    if (v == NULL) {
        fprintf(stderr, "json_strict: json_pack(\"%s\") answered NULL: %s\n", fmt, err.text);
        abort();
    }
    return v;
}

int __wrap_json_object_set_new(json_t *object, const char *key, json_t *value)
{
    if (value == NULL || __real_json_object_set_new(object, key, value) != 0)
        refused("json_object_set_new", key);
    return 0;
}

int __wrap_json_object_set_new_nocheck(json_t *object, const char *key, json_t *value)
{
    if (value == NULL || __real_json_object_set_new_nocheck(object, key, value) != 0)
        refused("json_object_set_new_nocheck", key);
    return 0;
}

int __wrap_json_array_append_new(json_t *array, json_t *value)
{
    if (value == NULL || __real_json_array_append_new(array, value) != 0)
        refused("json_array_append_new", NULL);
    return 0;
}

int __wrap_json_array_insert_new(json_t *array, size_t index, json_t *value)
{
    if (value == NULL || __real_json_array_insert_new(array, index, value) != 0)
        refused("json_array_insert_new", NULL);
    return 0;
}
