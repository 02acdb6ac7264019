#include <librdkafka/rdkafka.h>
#include <stdio.h>
#include <string.h>

#include "ctl.h"

int ctl_topics_create(const char *brokers, const char *prefix, int partitions, int replication)
{
    static const char *const names[] = {"calls.requested", "calls.dispatch", "calls.events"};
    char err[512];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    if (rd_kafka_conf_set(conf, "bootstrap.servers", brokers, err, sizeof(err)) != RD_KAFKA_CONF_OK) {
        fprintf(stderr, "outdialctl: %s\n", err);
        rd_kafka_conf_destroy(conf);
        return -1;
    }
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof(err));
    if (rk == NULL) {
        fprintf(stderr, "outdialctl: %s\n", err);
        return -1;
    }
    rd_kafka_NewTopic_t *topics[3];
    char full[3][256];
    for (int i = 0; i < 3; i++) {
        snprintf(full[i], sizeof(full[i]), "%s%s", prefix, names[i]);
        topics[i] = rd_kafka_NewTopic_new(full[i], partitions, replication, err, sizeof(err));
    }
    rd_kafka_queue_t *q = rd_kafka_queue_new(rk);
    rd_kafka_AdminOptions_t *opts = rd_kafka_AdminOptions_new(rk, RD_KAFKA_ADMIN_OP_CREATETOPICS);
    rd_kafka_AdminOptions_set_request_timeout(opts, 30000, err, sizeof(err));
    rd_kafka_CreateTopics(rk, topics, 3, opts, q);
    rd_kafka_event_t *ev = rd_kafka_queue_poll(q, 60000);
    int rc = 0;
    if (ev == NULL || rd_kafka_event_error(ev)) {
        fprintf(stderr, "outdialctl: creating topics failed: %s\n",
                ev ? rd_kafka_event_error_string(ev) : "timed out");
        rc = -1;
    } else {
        size_t cnt;
        const rd_kafka_topic_result_t **res =
            rd_kafka_CreateTopics_result_topics(rd_kafka_event_CreateTopics_result(ev), &cnt);
        for (size_t i = 0; i < cnt; i++) {
            rd_kafka_resp_err_t e = rd_kafka_topic_result_error(res[i]);
            if (e == RD_KAFKA_RESP_ERR_NO_ERROR)
                fprintf(stderr, "outdialctl: created topic %s (%d partitions)\n", rd_kafka_topic_result_name(res[i]),
                        partitions);
            else if (e == RD_KAFKA_RESP_ERR_TOPIC_ALREADY_EXISTS)
                fprintf(stderr, "outdialctl: topic %s exists\n", rd_kafka_topic_result_name(res[i]));
            else {
                fprintf(stderr, "outdialctl: topic %s: %s\n", rd_kafka_topic_result_name(res[i]),
                        rd_kafka_topic_result_error_string(res[i]));
                rc = -1;
            }
        }
    }
    if (ev)
        rd_kafka_event_destroy(ev);
    rd_kafka_AdminOptions_destroy(opts);
    rd_kafka_queue_destroy(q);
    for (int i = 0; i < 3; i++)
        rd_kafka_NewTopic_destroy(topics[i]);
    rd_kafka_destroy(rk);
    return rc;
}
