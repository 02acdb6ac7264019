/* A minimal test harness: CHECK records a failure and goes on; main returns od_test_result(). */
#ifndef OD_TEST_H
#define OD_TEST_H

#include <stdio.h>
#include <string.h>

static int od_test_failures, od_test_checks;

#define CHECK(cond)                                                                                                    \
    do {                                                                                                               \
        od_test_checks++;                                                                                              \
        if (!(cond)) {                                                                                                 \
            od_test_failures++;                                                                                        \
            fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond);                                   \
        }                                                                                                              \
    } while (0)

#define CHECK_STR(a, b)                                                                                                \
    do {                                                                                                               \
        const char *a_ = (a), *b_ = (b);                                                                               \
        od_test_checks++;                                                                                              \
        if (a_ == NULL || b_ == NULL || strcmp(a_, b_) != 0) {                                                         \
            od_test_failures++;                                                                                        \
            fprintf(stderr, "%s:%d: \"%s\" != \"%s\"\n", __FILE__, __LINE__, a_ ? a_ : "(null)", b_ ? b_ : "(null)"); \
        }                                                                                                              \
    } while (0)

static inline int od_test_result(const char *name)
{
    fprintf(stderr, "%s: %d checks, %d failed\n", name, od_test_checks, od_test_failures);
    return od_test_failures == 0 ? 0 : 1;
}

#endif
