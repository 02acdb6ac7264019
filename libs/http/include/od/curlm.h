/*
 * libcurl's multi interface driven by a libuv loop: libcurl says which
 * sockets to watch (a uv_poll each) and when to wake it (one uv_timer); both
 * run curl_multi_socket_action, then every finished transfer is handed to
 * the `done` callback given at creation.
 *
 *   od_curlm_t *m = od_curlm_new(loop, on_done, arg);
 *   CURL *e = curl_easy_init(); ... curl_easy_setopt(e, CURLOPT_PRIVATE, mine);
 *   od_curlm_add(m, e);             // starts on the next loop turn
 *   ...on_done(arg, e, result)      // once per transfer; remove it then
 *   od_curlm_remove(m, e); curl_easy_cleanup(e);
 *
 * All on the loop thread. curl_global_init must have been called.
 */
#ifndef OD_CURLM_H
#define OD_CURLM_H

#include <curl/curl.h>
#include <uv.h>

typedef struct od_curlm od_curlm_t;

/** A transfer finished (`result` CURLE_OK or the error); the callee removes it from the multi. */
typedef void (*od_curlm_done_fn)(void *arg, CURL *easy, CURLcode result);

od_curlm_t *od_curlm_new(uv_loop_t *loop, od_curlm_done_fn done, void *arg);
/** Starts a transfer; 0, or -1 when libcurl refuses it. */
int od_curlm_add(od_curlm_t *m, CURL *easy);
/** Takes a transfer out (finished or not); the caller then cleans it up. */
void od_curlm_remove(od_curlm_t *m, CURL *easy);
/** Frees the multi; transfers must have been removed. Its handles close on the next loop turn. */
void od_curlm_close(od_curlm_t *m);

#endif
