//! End-to-end scenarios: the rendered chart run as local PostgreSQL servers (see the crate README).
//! Scenarios that need root, PostgreSQL or Citus print `skipped: <reason>` and pass when those are missing.

mod auth;
mod citus_cluster;
mod gitops;
mod postgres_only;
mod rendered;
mod scaling;
mod upgrade;
mod util;
