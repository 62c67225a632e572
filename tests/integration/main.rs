//! Integration tests against real servers (Redis 7.0, Valkey 8.1 or Valkey 9.1,
//! chosen by INVENTORY_SERVER), each started and stopped by the harness.

mod harness;

mod acl;
mod bounds;
mod clients;
mod cluster;
mod commands;
mod concurrency;
mod expiry;
mod exporter;
mod feed;
mod hostile;
mod keyspace;
mod persistence;
mod readme;
mod redispy;
mod replication;
mod resp3;
mod sale;
mod waiting;
