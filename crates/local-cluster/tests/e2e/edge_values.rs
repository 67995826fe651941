//! Values at the edge of what the chart's validation accepts (tests/data/edge-values.yaml of chart-tests)
//! still form a working Citus cluster: role and database names with spaces, dots and capitals, a password
//! with characters the scripts escape, and max_connections at the floor the chart computes for 4 nodes (one less is refused).

use anyhow::ensure;
use serde_json::json;

use crate::util::Env;
use crate::util::{self, Login, COORDINATOR, COORDINATOR_SERVICE};

crate::scenarios!(Citus: edge_names_and_the_connection_floor_form_a_working_cluster);

const USER: &str = "App User.v2";
const DATABASE: &str = "Citus-DB_1.v2";
const PASSWORD: &str = "p:a\\ss w'o\"rd$#€ ";

fn edge_names_and_the_connection_floor_form_a_working_cluster(env: &Env) -> anyhow::Result<()> {
    let postgres = env.postgres()?;
    let mut cluster = util::cluster(postgres)?;
    let values = util::values(json!({
        "auth": {"username": USER, "database": DATABASE, "password": PASSWORD},
        // 4 nodes: 3 reserved slots, one connection from each node's maintenance daemon, one for the jobs,
        // and the 11 connections per worker a query over 32 shards on 3 workers opens.
        "postgresql": {
            "maxConnections": 19,
            "extraConfiguration": "log_line_prefix = '%m # [%p] '  # a '#' inside quotes\n",
        },
    }));
    let manifest = cluster.install(&values)?;
    cluster.wait_all_ready(util::READY)?;
    let socket = Login { host: "/var/run/postgresql", user: "postgres", password: None, database: DATABASE };
    let workers = util::psql(
        &cluster,
        COORDINATOR,
        &socket,
        "SELECT count(*) FROM pg_dist_node WHERE isactive AND groupid <> 0",
    )?;
    ensure!(workers == "3", "{workers} active workers registered");
    let login = Login { host: COORDINATOR_SERVICE, user: USER, password: Some(PASSWORD), database: DATABASE };
    let sql = "CREATE TABLE edge (id bigint PRIMARY KEY);\n\
               SELECT create_distributed_table('edge', 'id') \\g /dev/null\n\
               INSERT INTO edge SELECT generate_series(1, 1000);\n\
               SELECT current_user, current_database(), count(*) FROM edge;";
    let got = util::psql(&cluster, COORDINATOR, &login, sql)?;
    ensure!(got == format!("{USER}|{DATABASE}|1000"), "as the application user: {got}");
    cluster.helm_test(&manifest)?;
    Ok(())
}
