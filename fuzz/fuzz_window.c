/*
 * libFuzzer target for od_window_parse (calling windows, od/window.h).
 * Properties checked beyond "no crash, no sanitizer report":
 *  - a refused input leaves no output and says why and where (the field
 *    starts with the name given), its message valid UTF-8 (it goes into
 *    the problem's JSON);
 *  - an accepted input's canonical form is accepted again and is its own
 *    canonical form (a fixed point).
 */
#include "od/window.h"

#include "od/utf8.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *out, err[256], field[128];
    err[0] = field[0] = '\0';
    if (od_window_parse((const char *)data, size, "w", &out, err, sizeof err, field, sizeof field) != 0) {
        if (out != NULL || err[0] == '\0' || field[0] != 'w' || od_utf8_check(err, strlen(err)) != 0)
            abort();
        return 0;
    }
    char *again;
    if (od_window_parse(out, strlen(out), "w", &again, err, sizeof err, field, sizeof field) != 0 ||
        strcmp(out, again) != 0)
        abort();
    free(again);
    free(out);
    return 0;
}
