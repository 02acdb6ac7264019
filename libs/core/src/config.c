#include "od/config.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "od/core.h"

static int parse_bool(const char *v, int *out)
{
    static const char *const yes[] = {"1", "true", "yes", "on"}, *const no[] = {"0", "false", "no", "off"};
    for (size_t i = 0; i < OD_ARRAY_SIZE(yes); i++) {
        if (strcasecmp(v, yes[i]) == 0)
            return *out = 1, 0;
        if (strcasecmp(v, no[i]) == 0)
            return *out = 0, 0;
    }
    return -1;
}

int od_config_load(const od_conf_item_t *table, size_t n, void *conf, char *errstr, size_t errlen)
{
    for (size_t i = 0; i < n; i++) {
        const od_conf_item_t *it = &table[i];
        const char *v = getenv(it->name);
        if (v == NULL)
            v = it->defval;
        char *field = (char *)conf + it->offset;
        switch (it->type) {
        case OD_CONF_STR:
            *(char **)field = od_strdup(v != NULL ? v : "");
            break;
        case OD_CONF_INT: {
            char *end;
            errno = 0;
            long long x = strtoll(v != NULL ? v : "", &end, 10);
            if (v == NULL || *v == '\0' || *end != '\0' || errno != 0 || x < it->min || x > it->max) {
                snprintf(errstr, errlen, "%s: expected an integer in [%.0f, %.0f], got \"%s\"", it->name, it->min,
                         it->max, v ? v : "");
                return -1;
            }
            *(int64_t *)field = x;
            break;
        }
        case OD_CONF_DOUBLE: {
            char *end;
            errno = 0;
            double x = strtod(v != NULL ? v : "", &end);
            if (v == NULL || *v == '\0' || *end != '\0' || errno != 0 || !(x >= it->min && x <= it->max)) {
                snprintf(errstr, errlen, "%s: expected a number in [%g, %g], got \"%s\"", it->name, it->min, it->max,
                         v ? v : "");
                return -1;
            }
            *(double *)field = x;
            break;
        }
        case OD_CONF_BOOL:
            if (v == NULL || parse_bool(v, (int *)field) != 0) {
                snprintf(errstr, errlen, "%s: expected 1/0, true/false, yes/no or on/off, got \"%s\"", it->name,
                         v ? v : "");
                return -1;
            }
            break;
        }
    }
    return 0;
}

void od_config_free(const od_conf_item_t *table, size_t n, void *conf)
{
    for (size_t i = 0; i < n; i++) {
        if (table[i].type == OD_CONF_STR) {
            char **p = (char **)((char *)conf + table[i].offset);
            free(*p);
            *p = NULL;
        }
    }
}

void od_config_print(FILE *fp, const od_conf_item_t *table, size_t n)
{
    static const char *const types[] = {"string", "integer", "number", "boolean"};
    fprintf(fp, "Configuration (environment variables; none is reloadable: restart to apply):\n\n");
    for (size_t i = 0; i < n; i++) {
        const od_conf_item_t *it = &table[i];
        fprintf(fp, "  %s (%s, default: %s%s%s)\n      %s\n", it->name, types[it->type], it->defval ? "\"" : "",
                it->defval ? it->defval : "unset", it->defval ? "\"" : "", it->help);
    }
}

int od_config_args(int argc, char **argv, const char *usage, const od_conf_item_t *table, size_t n)
{
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            printf("%s\n\n", usage);
            od_config_print(stdout, table, n);
            return 1;
        }
        fprintf(stderr, "%s: unknown argument \"%s\" (try --help)\n", argv[0], argv[i]);
        return -1;
    }
    return 0;
}
