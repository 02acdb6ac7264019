/* outdialctl: the operator CLI. Private header shared by its files. */
#ifndef OD_CTL_H
#define OD_CTL_H

#include <libpq-fe.h>

/** Applies proto/sql/NNN_*.sql files of `dir` not yet recorded in schema_migrations, in order. */
int ctl_migrate(PGconn *conn, const char *dir);
/** Creates the three topics (prefix + calls.requested|dispatch|events) if missing. */
int ctl_topics_create(const char *brokers, const char *prefix, int partitions, int replication);

#endif
